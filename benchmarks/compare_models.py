"""Old model against new, on every figure of the default model's targets, in one run.

    python benchmarks/compare_models.py --new data/default-build/run/best \
        --tokens-dir data/default-build/tokens --reference-dir data/default-build/reference

For each model: the calibrated sweep (`midimix evaluate sweep`, seed 1 or --seed: pieces the
calibration map was not fitted on) gives P(lofi) per weight, the calibration error, the rise and the
recognition of single-genre pieces, and the validation NLL per note on the token data set's
validation split; `benchmarks/bench_fidelity.py` gives duplicates, tempo in range and the
feature distance to held-out pieces; the folder gives the size. The new model should be
shipped only if it is better on every line (ties count as not worse where both meet the
target). Each model is measured on a token data set of its own vocabulary (--new-tokens-dir
when the new model's differs; both split the same pieces). Models of two vocabularies, one
grid refining the other, are set against each other on the NLL per note of the content both
can write (`midimix.shared_content`: the finer model's figure is an upper bound); each model's
own NLL per note is kept beside it. Writes compare.json and compare.md under --out-dir; a
model's figures are reused from there when its report is already written (delete the folder
to measure again).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

from midimix.tokenizer import same_vocabulary

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = "0,0.25,0.5,0.75,1"


def run(command: list[str]) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)


def recognised(report: dict[str, Any], weight: float, genre: str) -> float:
    """Share of the pieces of one sweep point that the classifier gives to `genre`."""
    per_piece = report["generated"][f"logits w={weight:g}"]["per_piece"]
    return sum(1 for p in per_piece if p[genre] > 0.5) / max(1, len(per_piece))


def measure(model: Path, name: str, tokens_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    out = args.out_dir / name
    sweep_report = out / "sweep" / "report.json"
    if not sweep_report.exists():
        references = []
        for genre_dir in sorted(p for p in args.reference_dir.iterdir() if p.is_dir()):
            references += ["--reference", f"{genre_dir.name}={genre_dir}"]
        run([sys.executable, "-m", "midimix.evaluate", "sweep", "--model", str(model),
             *references, "--out-dir", str(out / "sweep"), "--seed", str(args.seed),
             "--weights", WEIGHTS, "--pieces", str(args.pieces),
             "--tokens-dir", str(tokens_dir), "--no-progress"])  # fmt: skip
    fidelity_json = out / "fidelity.json"
    if not fidelity_json.exists():
        run([sys.executable, "benchmarks/bench_fidelity.py", "--model", str(model),
             "--reference-dir", str(args.reference_dir),
             "--splits", str(tokens_dir / "splits.json"), "--bars", "8",
             "--json", str(fidelity_json)])  # fmt: skip
    report = json.loads(sweep_report.read_text())
    fidelity = json.loads(fidelity_json.read_text())
    sweep = report["sweep"]
    points = sweep["methods"]["logits"]
    nll = report["model"]["nll"]
    notes = sum(v["notes"] for v in nll.values())
    per_note = sum(v["per_note"] * v["notes"] for v in nll.values()) / notes
    figures: dict[str, Any] = {
        "nll_per_note": per_note,
        "nll_per_token": {g: v["per_token"] for g, v in nll.items()},
        "p_lofi": [p["mean"] for p in points],
        "calibration_error": sweep["calibration_error"]["logits"],
        "rises": sweep["rises"]["logits"],
        "recognised_lofi": recognised(report, points[-1]["weight"], "lofi"),
        "recognised_classical": recognised(report, points[0]["weight"], "classical"),
        "duplicate_notes": fidelity["duplicate_notes"],
        "fidelity_pieces": fidelity["pieces"],
        "bytes": (model / "model.safetensors").stat().st_size,
    }
    for genre, share in fidelity["single_genre_tempo_in_range"].items():
        figures[f"tempo_in_range_{genre}"] = share
        f = fidelity["fidelity"][genre]
        figures[f"fidelity_ratio_{genre}"] = f["generated_vs_held_out"] / f["half_vs_half"]
    return figures


def shared_nll(models: dict[str, Path], tokens: dict[str, Path], out: Path) -> dict[str, Any]:
    """NLL per note of both models on the content both vocabularies write (validation pieces
    of the finer one's token data set), with each model's vocabulary; written to out."""
    if out.exists():
        return json.loads(out.read_text())
    from midimix.model import load_checkpoint
    from midimix.shared_content import content, fine_content_nll, finer_first
    from midimix.tokenize import load_sequences
    from midimix.validation import genre_losses

    if json.loads((tokens["old"] / "splits.json").read_text()) != json.loads(
        (tokens["new"] / "splits.json").read_text()
    ):
        raise SystemExit("the two token data sets hold other validation pieces")
    loaded = {name: load_checkpoint(path) for name, path in models.items()}
    fine_name, coarse_name = finer_first(loaded["old"][1], loaded["new"][1], ("old", "new"))
    fine_model, fine, fine_meta = loaded[fine_name]
    coarse_model, coarse, coarse_meta = loaded[coarse_name]
    shared = [(g, content(fine, coarse, ids)) for g, ids in
              load_sequences(tokens[fine_name], "validation")]  # fmt: skip
    notes = [coarse.note_count(ids) for _, ids in shared]
    print(f"shared content: {len(shared)} validation pieces, {sum(notes)} notes", flush=True)
    nll, _ = genre_losses(coarse_model, coarse, shared, coarse_meta["max_seq_len"])
    per_piece = {coarse_name: [float(nll[s, coarse.genres.index(g)])
                               for s, (g, _) in enumerate(shared)]}  # fmt: skip
    bound, rejected = fine_content_nll(fine_model, fine, coarse, shared, fine_meta["max_seq_len"])
    per_piece[fine_name] = bound
    # a piece none of whose draws rounded back has no bound: left out for both models
    kept = [s for s, b in enumerate(bound) if math.isfinite(b)]
    result: dict[str, Any] = {"finer": fine_name, "pieces": len(kept),
                              "left_out": len(shared) - len(kept),
                              "draws_not_rounding_back": rejected}  # fmt: skip
    for name, values in per_piece.items():
        result[name] = {"per_note": sum(values[s] for s in kept) / sum(notes[s] for s in kept)}
        for genre in coarse.genres:
            rows = [s for s in kept if shared[s][0] == genre]
            result[name][genre] = sum(values[s] for s in rows) / sum(notes[s] for s in rows)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


# (figure, better when, target)
LINES: list[tuple[str, str, str]] = [
    ("nll_per_note", "lower", "<= 0.75x old"),
    ("recognised_lofi", "higher", ">= 0.97"),
    ("recognised_classical", "higher", ">= 0.97"),
    ("tempo_in_range_lofi", "higher", ">= 0.95"),
    ("tempo_in_range_classical", "higher", ">= 0.95"),
    ("fidelity_ratio_lofi", "lower", "<= 1.5"),
    ("fidelity_ratio_classical", "lower", "<= 1.5"),
    ("calibration_error", "lower", "<= 0.08"),
    ("rises", "higher", "true"),
    ("duplicate_notes", "lower", "0"),
    ("bytes", "lower", "<= 50 MB"),
]


def verdict(old: Any, new: Any, better: str) -> str:
    if new == old:
        return "same"
    up = new > old
    return "better" if up == (better == "higher") else "worse"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", type=Path, default=ROOT / "midimix" / "default_model")
    p.add_argument("--new", type=Path, required=True)
    p.add_argument("--tokens-dir", type=Path, required=True)
    p.add_argument("--new-tokens-dir", type=Path, default=None,
                   help="the new model's token data set, when its vocabulary differs")  # fmt: skip
    p.add_argument("--reference-dir", type=Path, required=True, help="<genre>/*.mid, drum-free")
    p.add_argument("--out-dir", type=Path, default=ROOT / "bench-out" / "compare")
    p.add_argument("--pieces", type=int, default=20, help="sweep pieces per weight")
    p.add_argument("--seed", type=int, default=1, help="sweep seed: not the calibration's 0")
    p.add_argument("--only", choices=("old", "new"), default=None, help="measure one model")
    args = p.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    models = {"old": args.old, "new": args.new}
    tokens = {"old": args.tokens_dir, "new": args.new_tokens_dir or args.tokens_dir}
    if args.only:
        measure(models[args.only], args.only, tokens[args.only], args)
        return 0
    figures = {name: measure(path, name, tokens[name], args) for name, path in models.items()}
    if not same_vocabulary(tokens["old"], tokens["new"]):  # NLL on the content both write
        shared = shared_nll(models, tokens, args.out_dir / "shared_nll.json")
        for name in models:
            figures[name]["nll_per_note_own"] = figures[name]["nll_per_note"]
            figures[name]["nll_per_note"] = shared[name]["per_note"]
    rows = ["| figure | old | new | target | new is |", "|---|---|---|---|---|"]
    worse = []
    for key, better, target in LINES:
        old, new = figures["old"].get(key), figures["new"].get(key)
        v = verdict(old, new, better)
        if v == "worse":
            worse.append(key)
        shown = [f"{x:.3g}" if isinstance(x, float) else str(x) for x in (old, new)]
        label = key
        if key == "nll_per_note" and "nll_per_note_own" in figures["new"]:
            label = "nll_per_note (content both vocabularies write; finer: upper bound)"
        rows.append(f"| {label} | {shown[0]} | {shown[1]} | {target} | {v} |")
    if "nll_per_note_own" in figures["new"]:
        own = [f"{figures[n]['nll_per_note_own']:.3g}" for n in models]
        rows.append(f"| nll_per_note (each in its own vocabulary) | {own[0]} | {own[1]} | | |")
    p_rows = [f"| P(lofi) at w={WEIGHTS} | "
              + " | ".join(", ".join(f"{x:.2f}" for x in figures[n]["p_lofi"]) for n in models)
              + " | rises | |"]  # fmt: skip
    table = "\n".join(rows + p_rows)
    summary = "ship the new model" if not worse else f"keep the old model: worse on {worse}"
    (args.out_dir / "compare.json").write_text(
        json.dumps({"figures": figures, "worse": worse}, indent=2) + "\n"
    )
    (args.out_dir / "compare.md").write_text(f"{table}\n\n{summary}\n")
    print(table)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
