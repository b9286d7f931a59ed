"""Copy a trained run into the package as the embedded default model, measure it with the
evaluation sweep, and write its model card.

    .venv/bin/python scripts/package_default_model.py --run-dir data/default-build/run \
        --corpus data/corpus --report-dir data/default-build/report
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

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_MODEL = ROOT / "midimix" / "default_model"
FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json")
FILES += ("midimix.json",)
MAX_MODEL_BYTES = 25 * 1024 * 1024


def copy_model(best: Path) -> None:
    missing = [name for name in FILES if not (best / name).exists()]
    if missing:
        sys.exit(f"error: {best} lacks {', '.join(missing)}: train the model first")
    size = (best / "model.safetensors").stat().st_size
    if size > MAX_MODEL_BYTES:
        sys.exit(f"error: model.safetensors is {size / 2**20:.1f} MiB, over the 25 MiB limit")
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


def recognised(report: dict[str, Any], label: str, genre: str) -> float:
    """Share of the pieces of one sweep point that the classifier gives to `genre`."""
    per_piece = report["generated"][label]["per_piece"]
    return sum(1 for p in per_piece if p[genre] > 0.5) / max(1, len(per_piece))


def card_text(meta: dict[str, Any], report: dict[str, Any], extra: dict[str, Any]) -> str:
    cfg, model = meta["train_config"], meta["model_config"]
    per_genre = ", ".join(f"{g} {v:.3f}" for g, v in meta["val_loss_per_genre"].items())
    sweep = report.get("sweep", {})
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
        "- Tokenizer: miditok REMI with `Genre_<g>`, `Genre_any`, BOS/EOS/PAD tokens; drums "
        "dropped (the renderer adds lo-fi drums by the mix weight); transposition by up to "
        "2 semitones on the training split.",
        "",
        "## Model and training",
        "",
        f"- {meta['num_parameters']:,} parameters: {model['n_layer']} layers, {model['n_embd']} "
        f"dimensions, {model['n_head']} heads, context {model['context_length']} tokens; "
        f"model.safetensors {extra['model_mib']:.1f} MiB.",
        f"- {meta['step']} steps of batch {cfg['batch_size']} x {meta['max_seq_len']} tokens, "
        f"AdamW lr {cfg['lr']:g}, warm-up {cfg['warmup_steps']}, cosine decay; Genre_any "
        f"share {cfg['any_prob']:g}.",
        f"- Hardware: {extra['hardware']}; training wall time {extra['train_time']}.",
        "",
        "## Scores",
        "",
        f"- Validation loss (nats/token): {meta['val_loss']:.3f} ({per_genre}); unigram "
        f"baseline {meta['unigram_val_loss']:.3f}.",
        f"- Genre sensitivity (share of validation sequences whose true genre token gives the "
        f"lowest loss): {meta['genre_sensitivity']:.3f}.",
    ]
    clf = report.get("classifier", {})
    if clf:
        lines.append(
            f"- Genre classifier of the evaluation (features of real pieces): cross-validated "
            f"accuracy {fmt(clf.get('cv_accuracy'))}."
        )
    for method, points in sweep.get("methods", {}).items():
        curve = ", ".join(
            f"w={p['weight']:g}: {p['mean']:.2f} [{p['ci95'][0]:.2f}, {p['ci95'][1]:.2f}]"
            for p in points
        )
        lines.append(
            f"- Sweep, `{method}` mix, {sweep.get('pieces')} pieces of {extra['bars']} bars "
            f"per lo-fi weight: mean P(lofi) (95% CI) {curve}; rises: "
            f"{sweep.get('rises', {}).get(method)}."
        )
    for method in sweep.get("methods", {}):
        lofi = recognised(report, f"{method} w=1", "lofi")
        classical = recognised(report, f"{method} w=0", "classical")
        lines.append(
            f"- `{method}`: lo-fi-only pieces recognised as lo-fi {lofi:.0%}, classical-only "
            f"pieces recognised as classical {classical:.0%} (P(genre) > 0.5)."
        )
    lines += [
        "",
        "The classifier and the sweep compare against the corpus with its drum tracks removed,",
        "as the model sees it (the tokenizer drops drums; the renderer adds lo-fi drums to the",
        "audio). The full evaluation report (plots, every figure) is written by the build into",
        "`data/default-build/report/`.",
        "",
        "## Limits",
        "",
        f"- Trained for minutes ({extra['hardware']}): phrases wander after a few bars.",
        "- The lo-fi half is rule-made, so the model's lo-fi is the rules' lo-fi.",
        "- One merged piano-roll part: no separate melody, bass or drum tracks in the MIDI.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--report-dir", type=Path, required=True)
    p.add_argument("--pieces", type=int, default=20, help="pieces per weight in the sweep")
    p.add_argument("--bars", type=int, default=8)
    p.add_argument("--methods", default="logits,embedding")
    p.add_argument("--train-time", default=None, help="wall time of training, for the card")
    p.add_argument("--hardware", default=None, help="what it was trained on, for the card")
    p.add_argument("--card-only", action="store_true", help="rewrite the card from the report")
    args = p.parse_args()

    if not args.card_only:
        measure(args)
    write_card(args)
    print(f"default model and MODEL_CARD.md written to {PACKAGE_MODEL}")
    return 0


def measure(args: argparse.Namespace) -> None:
    """Copy the model into the package, run the sweep, ship the corpus classifier."""
    copy_model(args.run_dir / "best")
    cmd = [sys.executable, "-m", "midimix.evaluate", "sweep", "--model", str(PACKAGE_MODEL)]
    reference = pitched_reference(args.corpus, args.report_dir.parent / "reference")
    for genre, folder in reference.items():
        cmd += ["--reference", f"{genre}={folder}"]
    cmd += ["--pieces", str(args.pieces), "--bars", str(args.bars), "--methods", args.methods]
    # first the calibration map, fitted at raw weights (seed 0) and stored in the model folder;
    # then the card's sweep, with the map, on other pieces (seed 1)
    fit = ["--weights", "0,0.125,0.25,0.375,0.5,0.625,0.75,0.875,1", "--fit-calibration"]
    subprocess.run([*cmd, *fit, "--out-dir", str(args.report_dir / "calibration")], check=True)
    subprocess.run([*cmd, "--seed", "1", "--out-dir", str(args.report_dir)], check=True)
    # The classifier trained on the corpus ships too (plain JSON), so tests and users can ask
    # where a piece sits between the genres without rebuilding the corpus.
    shutil.copy2(args.report_dir / "classifier.json", PACKAGE_MODEL / "genre_classifier.json")


def write_card(args: argparse.Namespace) -> None:
    report = json.loads((args.report_dir / "report.json").read_text())
    meta = json.loads((PACKAGE_MODEL / "midimix.json").read_text())
    seconds = training_seconds(args.run_dir.parent / "build.log")
    extra = {
        "classical_pieces": sum(1 for _ in (args.corpus / "classical").glob("*.mid")),
        "lofi_pieces": sum(1 for _ in (args.corpus / "lofi").glob("*.mid")),
        "model_mib": (PACKAGE_MODEL / "model.safetensors").stat().st_size / 2**20,
        "hardware": args.hardware or f"{platform.machine()} CPU, 2 cores (shared)",
        "train_time": args.train_time or (f"{seconds / 60:.0f} min" if seconds else "see log"),
        "bars": args.bars,
    }
    (PACKAGE_MODEL / "MODEL_CARD.md").write_text(card_text(meta, report, extra))


if __name__ == "__main__":
    sys.exit(main())
