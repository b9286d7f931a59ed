"""Old model against new, on every figure of the default model's targets, in one run.

    python benchmarks/compare_models.py --new data/default-build/run/best \
        --tokens-dir data/default-build/tokens --reference-dir data/default-build/reference

For each model: the calibrated sweep (`midimix evaluate sweep`, seed 1 or --seed: pieces the
calibration map was not fitted on) gives P(lofi) per weight, the calibration error, the rise and the
recognition of single-genre pieces, and the validation NLL per note on the token data set's
validation split; `benchmarks/bench_fidelity.py` gives duplicates, tempo in range and the
feature distance to held-out pieces; the folder gives the size. The new model should be
shipped only if it is better on every line (ties count as not worse where both meet the
target). Both models must tokenize as the token data set does: NLL per note of two
vocabularies measures different things, and the sweep refuses another vocabulary's tokens.
Writes compare.json and compare.md under --out-dir; a model's figures are reused
from there when its report is already written (delete the folder to measure again).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = "0,0.25,0.5,0.75,1"


def run(command: list[str]) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)


def recognised(report: dict[str, Any], weight: float, genre: str) -> float:
    """Share of the pieces of one sweep point that the classifier gives to `genre`."""
    per_piece = report["generated"][f"logits w={weight:g}"]["per_piece"]
    return sum(1 for p in per_piece if p[genre] > 0.5) / max(1, len(per_piece))


def measure(model: Path, name: str, args: argparse.Namespace) -> dict[str, Any]:
    out = args.out_dir / name
    sweep_report = out / "sweep" / "report.json"
    if not sweep_report.exists():
        references = []
        for genre_dir in sorted(p for p in args.reference_dir.iterdir() if p.is_dir()):
            references += ["--reference", f"{genre_dir.name}={genre_dir}"]
        run([sys.executable, "-m", "midimix.evaluate", "sweep", "--model", str(model),
             *references, "--out-dir", str(out / "sweep"), "--seed", str(args.seed),
             "--weights", WEIGHTS, "--pieces", str(args.pieces),
             "--tokens-dir", str(args.tokens_dir), "--no-progress"])  # fmt: skip
    fidelity_json = out / "fidelity.json"
    if not fidelity_json.exists():
        run([sys.executable, "benchmarks/bench_fidelity.py", "--model", str(model),
             "--reference-dir", str(args.reference_dir),
             "--splits", str(args.tokens_dir / "splits.json"), "--bars", "8",
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
    p.add_argument("--reference-dir", type=Path, required=True, help="<genre>/*.mid, drum-free")
    p.add_argument("--out-dir", type=Path, default=ROOT / "bench-out" / "compare")
    p.add_argument("--pieces", type=int, default=20, help="sweep pieces per weight")
    p.add_argument("--seed", type=int, default=1, help="sweep seed: not the calibration's 0")
    p.add_argument("--only", choices=("old", "new"), default=None, help="measure one model")
    args = p.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    models = {"old": args.old, "new": args.new}
    if args.only:
        measure(models[args.only], args.only, args)
        return 0
    figures = {name: measure(path, name, args) for name, path in models.items()}
    rows = ["| figure | old | new | target | new is |", "|---|---|---|---|---|"]
    worse = []
    for key, better, target in LINES:
        old, new = figures["old"].get(key), figures["new"].get(key)
        v = verdict(old, new, better)
        if v == "worse":
            worse.append(key)
        shown = [f"{x:.3g}" if isinstance(x, float) else str(x) for x in (old, new)]
        rows.append(f"| {key} | {shown[0]} | {shown[1]} | {target} | {v} |")
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
