"""Fit the calibration map of a trained run, measure it against the embedded default model on
every figure (benchmarks/compare_models.py), and only if it is better on every one, copy it
into the package and write its model card.

    .venv/bin/python scripts/package_default_model.py --run-dir data/default-build/run \
        --corpus data/corpus --work data/default-build
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from midimix import calibration, performance
from midimix.tokenizer import same_vocabulary

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_MODEL = ROOT / "midimix" / "default_model"
FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json")
FILES += ("midimix.json",)
MAX_MODEL_BYTES = 50 * 1000 * 1000
# The calibration sweep's weights, every 1/16: a strong model's P(genre) can climb from 0.1 to
# 0.8 within 0.25 of weight, where a grid of eighths left the inverse map two points to use.
FIT_WEIGHTS = ",".join(f"{k / 16:g}" for k in range(17))


def copy_model(best: Path) -> None:
    missing = [name for name in FILES if not (best / name).exists()]
    if missing:
        sys.exit(f"error: {best} lacks {', '.join(missing)}: train the model first")
    size = (best / "model.safetensors").stat().st_size
    if size > MAX_MODEL_BYTES:
        sys.exit(f"error: model.safetensors is {size / 2**20:.1f} MiB, over the 50 MB limit")
    tmp = PACKAGE_MODEL.with_name(".default_model.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name in FILES:
        shutil.copy2(best / name, tmp / name)
    for keep in ("MODEL_CARD.md", "genre_classifier.json"):
        if (PACKAGE_MODEL / keep).exists():
            shutil.copy2(PACKAGE_MODEL / keep, tmp / keep)
    shutil.rmtree(PACKAGE_MODEL, ignore_errors=True)
    tmp.rename(PACKAGE_MODEL)


def pitched_reference(corpus: Path, out_dir: Path) -> dict[str, Path]:
    """The corpus as the model sees it: drum tracks removed (the tokenizer drops them; the
    renderer adds lo-fi drums to the audio). Judging the model's pitched output against
    references with drums would measure the drum setting, not the genre."""
    from symusic import Score

    folders = {}
    for genre_dir in sorted(p for p in corpus.iterdir() if p.is_dir()):
        target = out_dir / genre_dir.name
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted(genre_dir.glob("*.mid")):
            out = target / path.name
            if not out.exists():
                score = Score(str(path))
                score.tracks = [t for t in score.tracks if not t.is_drum]
                score.dump_midi(str(out))
        folders[genre_dir.name] = target
    return folders


def training_seconds(log: Path) -> float | None:
    """Wall time of the training: the sum of the `train: ... in N s` lines of the build log
    (one per resumed call of scripts/build_default_model.sh)."""
    if not log.exists():
        return None
    found = re.findall(r"^train: .* in (\d+) s", log.read_text(), flags=re.MULTILINE)
    return float(sum(map(int, found))) if found else None


def fmt(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else str(value)


def pct(value: float) -> str:
    return f"{value:.0%}"


def own_nll(figures: dict[str, Any]) -> float:
    """A model's NLL per note in its own vocabulary (compare_models keeps it apart from the
    shared-content figure when two vocabularies were compared)."""
    return float(figures.get("nll_per_note_own", figures["nll_per_note"]))


def card_text(meta: dict[str, Any], compare: dict[str, Any], report: dict[str, Any],
              extra: dict[str, Any]) -> str:  # fmt: skip
    cfg, model = meta["train_config"], meta["model_config"]
    new, old = compare["figures"]["new"], compare["figures"]["old"]
    per_genre = ", ".join(f"{g} {v:.3f}" for g, v in meta["val_loss_per_genre"].items())
    sweep = report["sweep"]
    curve = ", ".join(
        f"{p['mean']:.2f} [{p['ci95'][0]:.2f}, {p['ci95'][1]:.2f}]"
        for p in sweep["methods"]["logits"]
    )
    weights = ", ".join(f"{p['weight']:g}" for p in sweep["methods"]["logits"])
    stats_lines = []
    for genre, s in meta.get("genre_stats", {}).items():
        sigs = ", ".join(f"{k} {v:.0%}" for k, v in sorted(s["time_signatures"].items(),
                                                            key=lambda kv: -kv[1])[:4])  # fmt: skip
        stats_lines.append(
            f"- {genre}: {s['pieces']:,} training sequences, tempo {s['tempo_bpm_p5']:g}-"
            f"{s['tempo_bpm_p95']:g} BPM (5th-95th percentile), {sigs}, notes per onset 99th "
            f"percentile {s['notes_per_onset_p99']:g}."
        )
    played_lines = [
        f"- {genre}, as played (`midimix.performance`, from the training pieces): "
        f"{performance.describe(p)}."
        for genre, p in performance.from_meta(meta).items()
    ]
    cal_lines = []
    for c in calibration.from_meta(meta):
        asked = ", ".join(f"{w:g} at {c.sampling_weight(w):.3f}" for w in calibration.MIXED_WEIGHTS)
        how = ("a logistic curve fitted through" if c.fitted == "logistic"
               else "the line through (made non-decreasing)")  # fmt: skip
        cal_lines.append(
            f"- {c.genre} against {c.against}, `{c.method}` mix: {how} the mean P({c.genre}) "
            f"of the fitting sweep (seed 0, raw weights; the sweep above uses other pieces, "
            f"seed {sweep['config']['seed']}); asked {c.genre} weights sample at: {asked}."
        )
    lines = [
        "# midimix default model",
        "",
        "A small genre-conditioned GPT-2 (transformers `GPT2LMHeadModel`, safetensors) that",
        "generates piano-roll MIDI in two genres, `lofi` and `classical`, and mixes of them.",
        "It is what `python -m midimix.generate --genre-mix` uses when no `--model` is given.",
        "Rebuild it with `bash scripts/build_default_model.sh`.",
        "",
        "## Data",
        "",
        f"- Classical: {extra['classical_pieces']} segments of 8-16 bars (about 30 s) cut from "
        "the scores in the music21 package's corpus (Bach, Beethoven, Mozart, Haydn, Monteverdi"
        " and others; Palestrina's files are left out because their encoding carries a rights "
        "reservation). The works are in the public domain; music21 is BSD-3-Clause and its "
        "corpus licence notes that some encodings carry their own terms (see docs/corpus.md).",
        f"- Lo-fi: {extra['lofi_pieces']} pieces **made by midimix's own rules** "
        "(`midimix/corpus/lofi.py`: 60-90 BPM, swung sixteenths, extended chords, loop "
        "progressions, voice-led electric piano, bass on roots and fifths, boom-bap drums). "
        "They are not recordings of real lo-fi music; a model trained on your own collection "
        "will sound more like it.",
        "- Tokenizer: miditok REMI with `Genre_<g>`, `Genre_any`, BOS/EOS/PAD tokens, no BPE "
        '(see README, "Choices measured"); drums dropped (the renderer adds lo-fi drums by '
        "the mix weight); transposition by up to 2 semitones on the training split.",
        "",
        "## Model and training",
        "",
        f"- {meta['num_parameters']:,} parameters: {model['n_layer']} layers, {model['n_embd']} "
        f"dimensions, {model['n_head']} heads, context {meta['max_seq_len']} tokens (trained "
        f"and sampled; {model['context_length']} positions); "
        f"model.safetensors {extra['model_mib']:.1f} MiB.",
        f"- {meta['step']} steps of batch {cfg['batch_size']} x {meta['max_seq_len']} tokens "
        f"({meta['step'] * cfg['batch_size'] * meta['max_seq_len'] / 1e6:.1f} M tokens), AdamW "
        f"lr {cfg['lr']:g}, warm-up {cfg['warmup_steps']}, cosine decay, dropout "
        f"{cfg['dropout'] if cfg['dropout'] is not None else 'preset'}; Genre_any share "
        f"{cfg['any_prob']:g}.",
        f"- Hardware: {extra['hardware']}; training wall time {extra['train_time']}.",
        "",
        "## Scores",
        "",
        f"- Validation loss (nats/token): {meta['val_loss']:.3f} ({per_genre}); unigram "
        f"baseline {meta['unigram_val_loss']:.3f}; per note {own_nll(new):.2f} nats.",
        f"- Genre sensitivity (share of validation sequences whose true genre token gives the "
        f"lowest loss): {meta['genre_sensitivity']:.3f}.",
        f"- Genre classifier of the evaluation (features of the drum-free corpus): "
        f"cross-validated accuracy {fmt(report['classifier'].get('cv_accuracy'))}.",
        f"- Sweep with the calibration map, `logits` mix, {sweep['config']['pieces']} pieces "
        f"of {sweep['config']['bars']} bars per weight (seed {sweep['config']['seed']}): mean "
        "P(lofi) (95% CI) at "
        f"w = {weights}: {curve}; calibration error (mean |P - w| at w = 0.25, 0.5, 0.75) "
        f"{new['calibration_error']:.3f}; rises: "
        f"{new['rises']}.",
        f"- Lo-fi-only pieces recognised as lo-fi {pct(new['recognised_lofi'])}, "
        f"classical-only as classical {pct(new['recognised_classical'])} (P(genre) > 0.5).",
        f"- `benchmarks/bench_fidelity.py` ({new['fidelity_pieces']} pieces of 8 bars over 33 "
        "settings): "
        f"{new['duplicate_notes']} duplicate notes; single-genre tempo inside the genre's "
        f"training range: lo-fi {pct(new['tempo_in_range_lofi'])}, classical "
        f"{pct(new['tempo_in_range_classical'])}; feature distance to held-out pieces against "
        f"two halves of them: lo-fi {new['fidelity_ratio_lofi']:.1f}x, classical "
        f"{new['fidelity_ratio_classical']:.1f}x.",
        "",
        "## Against the model it replaced",
        "",
        "Both measured by `benchmarks/compare_models.py` (same pieces, seeds and code):",
        "",
        extra["compare_table"],
        "",
        f"The model it replaced: {own_nll(old):.2f} nats per "
        f"note in its own vocabulary; {extra['old_summary']}.",
        *(["", extra["comparison_note"]] if extra["comparison_note"] else []),
        "",
        "## Genre statistics, performance and calibration map (midimix.json)",
        "",
        *stats_lines,
        *played_lines,
        *cal_lines,
        "",
        "The classifier and the sweep compare against the corpus with its drum tracks removed,",
        "as the model sees it (the tokenizer drops drums; the renderer adds lo-fi drums to the",
        "audio). The build writes every report (plots, all figures) under `data/default-build/`.",
        "",
        "## Limits",
        "",
        f"- Trained on {extra['hardware']} for {extra['train_time']}: phrases wander after a "
        "few bars.",
        "- The lo-fi half is rule-made, so the model's lo-fi is the rules' lo-fi.",
        "- One merged piano-roll part: no separate melody, bass or drum tracks in the MIDI.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True, help="folder for the reports")
    p.add_argument("--pieces", type=int, default=20, help="pieces per weight, calibration sweep")
    # 20 pieces a weight moved the calibration error by up to 0.03 from seed to seed, enough
    # to flip the comparison either way (MODEL_CARD.md); 40 decided the shipped model
    p.add_argument("--held-out-pieces", type=int, default=40, help="pieces per weight, compare")
    p.add_argument("--train-time", default=None, help="wall time of training, for the card")
    p.add_argument("--hardware", default=None, help="what it was trained on, for the card")
    p.add_argument("--force", action="store_true", help="ship even if worse on some figure")
    p.add_argument("--seed", type=int, default=1, help="the held-out sweep's seed (not 0)")
    p.add_argument("--comparison-note", default="", help="a paragraph for the card: other runs")
    p.add_argument("--old-tokens-dir", type=Path, default=None,
                   help="a token data set of the embedded model's vocabulary, same pieces; "
                        "needed when the new model's vocabulary differs")  # fmt: skip
    args = p.parse_args()
    best = args.run_dir / "best"
    tokens = args.work / "tokens"
    old_tokens = args.old_tokens_dir or tokens
    if not same_vocabulary(PACKAGE_MODEL, old_tokens):
        sys.exit(f"error: {old_tokens} was tokenized with another vocabulary than the embedded "
                 "model's: give --old-tokens-dir, a token data set of the same pieces made with "
                 "the embedded model's settings (`midimix tokenize`)")  # fmt: skip
    reference = pitched_reference(args.corpus, args.work / "reference")
    refs = [
        arg for genre, folder in reference.items() for arg in ("--reference", f"{genre}={folder}")
    ]
    if "calibration" not in json.loads((best / "midimix.json").read_text()):
        # the calibration map, fitted at raw weights (seed 0) and stored in the run's folder
        subprocess.run([sys.executable, "-m", "midimix.evaluate", "sweep", "--model", str(best),
                        *refs, "--pieces", str(args.pieces), "--fit-calibration", "--no-progress",
                        "--weights", FIT_WEIGHTS,
                        "--out-dir", str(args.work / "calibration")], check=True)  # fmt: skip
    compare_dir = args.work / f"compare-seed{args.seed}-pieces{args.held_out_pieces}"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "compare_models.py"),
                    "--old", str(PACKAGE_MODEL), "--new", str(best),
                    "--tokens-dir", str(old_tokens), "--new-tokens-dir", str(tokens),
                    "--reference-dir", str(args.work / "reference"), "--out-dir", str(compare_dir),
                    "--pieces", str(args.held_out_pieces), "--seed", str(args.seed)],
                   check=True)  # fmt: skip
    compare = json.loads((compare_dir / "compare.json").read_text())
    if compare["worse"] and not args.force:
        print(f"kept the embedded model: the new one is worse on {', '.join(compare['worse'])} "
              f"({compare_dir / 'compare.md'})")  # fmt: skip
        return 0
    copy_model(best)
    # The classifier trained on the corpus ships too (plain JSON), so tests and users can ask
    # where a piece sits between the genres without rebuilding the corpus.
    shutil.copy2(compare_dir / "new" / "sweep" / "classifier.json",
                 PACKAGE_MODEL / "genre_classifier.json")  # fmt: skip
    write_card(args, compare, compare_dir)
    plot_sweeps(json.loads((args.work / "calibration" / "report.json").read_text()),
                json.loads((compare_dir / "new" / "sweep" / "report.json").read_text()),
                ROOT / "docs" / "default_model_sweep.png")  # fmt: skip
    print(f"default model and MODEL_CARD.md written to {PACKAGE_MODEL}")
    return 0


def plot_sweeps(raw: dict[str, Any], calibrated: dict[str, Any], out: Path) -> None:
    """docs/default_model_sweep.png: mean P(lofi) against the asked weight, raw (the
    calibration's own sweep) and with the map (the held-out sweep), 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=100)
    ax.plot([0, 1], [0, 1], color="0.7", linestyle="--", label="where it is asked")
    for label, report in (("raw weights (seed 0)", raw), ("with the calibration map", calibrated)):
        points = report["sweep"]["methods"]["logits"]
        w = [p["weight"] for p in points]
        seed = report["sweep"]["config"]["seed"]
        line = ax.plot(w, [p["mean"] for p in points], marker="o",
                       label=label if "raw" in label else f"{label} (seed {seed})")  # fmt: skip
        ax.fill_between(w, [p["ci95"][0] for p in points], [p["ci95"][1] for p in points],
                        color=line[0].get_color(), alpha=0.15)  # fmt: skip
    title = "embedded default model: raw and calibrated mix"
    ax.set(xlabel="asked lo-fi weight", ylabel="mean P(lofi), evaluation classifier",
           xlim=(0, 1), ylim=(0, 1), title=title)  # fmt: skip
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def write_card(args: argparse.Namespace, compare: dict[str, Any], compare_dir: Path) -> None:
    report = json.loads((compare_dir / "new" / "sweep" / "report.json").read_text())
    meta = json.loads((PACKAGE_MODEL / "midimix.json").read_text())
    seconds = training_seconds(args.work / "build.log")
    table = (compare_dir / "compare.md").read_text().strip().splitlines()
    extra = {
        "classical_pieces": sum(1 for _ in (args.corpus / "classical").glob("*.mid")),
        "lofi_pieces": sum(1 for _ in (args.corpus / "lofi").glob("*.mid")),
        "model_mib": (PACKAGE_MODEL / "model.safetensors").stat().st_size / 2**20,
        "hardware": args.hardware or f"{platform.machine()} CPU, 2 cores (shared)",
        "train_time": args.train_time or (f"{seconds / 60:.0f} min" if seconds else "see log"),
        "compare_table": "\n".join(line for line in table if line.startswith("|")),
        "comparison_note": args.comparison_note,
        "old_summary": "worse on " + ", ".join(compare["worse"])
        if compare["worse"]
        else "the new model is better or equal on every line",
    }
    (PACKAGE_MODEL / "MODEL_CARD.md").write_text(card_text(meta, compare, report, extra))


if __name__ == "__main__":
    sys.exit(main())
