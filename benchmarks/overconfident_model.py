"""A model whose raw mix collapses onto one genre, made on the CPU in minutes, and the
calibrated mix measured on it.

A weighted product of two genres' distributions follows the more confident genre. The model
trained 46 times longer on a GPU showed it (P(lofi) 0.01, 0.12, 0.69, 0.99, 1.00 at lo-fi
weights 0 to 1: the rule-made lo-fi is far more predictable than the classical). No GPU is
needed for a model that collapses: here one genre is learnt from far fewer pieces than the
other (by default 40 lo-fi pieces against 300 classical segments of the offline corpus), with
many passes and no dropout, so the model is sure of one genre and unsure of the other. Then:

1. the raw sweep (17 lo-fi weights, seed 0), from which the calibration map is fitted and
   stored in the model's folder (`midimix evaluate sweep --fit-calibration`; fitted again from
   the stored sweep on every run, so a change of the fitting method needs no new pieces);
2. the held-out sweep with the map (5 weights, --seed, 6 by default): calibration error, 0.5
   crossing and the single genres' recognition, against the targets (0.08, 0.4-0.6, 90%).

    .venv/bin/python benchmarks/overconfident_model.py [--work bench-out/overconfident]
        [--lofi 40 --classical 300 --steps 800 --seed 6]

Every step is skipped when its output is there (delete --work to start again). Needs the
offline corpus in data/corpus (`midimix corpus`). Figures: docs/generate.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from compare_models import ROOT, WEIGHTS, recognised, run  # the default model's comparison

from midimix import calibration

sys.path.insert(0, str(ROOT / "scripts"))
# the default model's packaging: its calibration grid and its drum-free reference pieces
from package_default_model import FIT_WEIGHTS, pitched_reference  # noqa: E402


def slice_corpus(corpus: Path, out: Path, pieces: dict[str, int]) -> None:
    """The first pieces[genre] pieces of each genre folder, linked (not copied) under `out`."""
    for genre, count in pieces.items():
        target = out / genre
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted((corpus / genre).glob("*.mid"))[:count]:
            link = target / path.name
            if not link.exists():
                link.symlink_to(path.resolve())


def sweep(model: Path, out: Path, reference: Path, seed: int, weights: str, pieces: int,
          fit: bool) -> dict[str, Any]:  # fmt: skip
    if not (out / "report.json").exists():
        refs = [a for g in ("classical", "lofi") for a in ("--reference", f"{g}={reference / g}")]
        run([sys.executable, "-m", "midimix.evaluate", "sweep", "--model", str(model), *refs,
             "--out-dir", str(out), "--seed", str(seed), "--weights", weights,
             "--pieces", str(pieces), "--no-progress",
             *(["--fit-calibration"] if fit else [])])  # fmt: skip
    return json.loads((out / "report.json").read_text())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, default=ROOT / "data" / "corpus")
    p.add_argument("--work", type=Path, default=ROOT / "bench-out" / "overconfident")
    p.add_argument(
        "--lofi", type=int, default=40, help="lo-fi pieces (few: a genre the model is unsure of)"
    )
    p.add_argument("--classical", type=int, default=300, help="classical segments")
    p.add_argument("--steps", type=int, default=800, help="training steps of 16 x 128 tokens")
    p.add_argument("--threads", type=int, default=0, help="training threads; 0: all cores")
    p.add_argument("--pieces", type=int, default=20, help="pieces per weight, raw sweep")
    p.add_argument("--held-out-pieces", type=int, default=40, help="pieces per weight")
    p.add_argument("--seed", type=int, default=6, help="the held-out sweep's seed (not 0)")
    args = p.parse_args()
    start = time.perf_counter()
    work = args.work
    slice_corpus(args.corpus, work / "corpus", {"lofi": args.lofi, "classical": args.classical})
    run([sys.executable, "-m", "midimix.tokenize", str(work / "corpus"), "--out",
         str(work / "tokens"), "--workers", "2", "--no-progress"])  # fmt: skip
    run_dir = work / "run"
    if not (run_dir / "best" / "model.safetensors").exists():
        # the CPU preset on short chunks, no dropout, many passes over a few lo-fi pieces
        run([sys.executable, "-m", "midimix.train", "--tokens-dir", str(work / "tokens"),
             "--run-dir", str(run_dir), "--preset", "small", "--max-seq-len", "128",
             "--max-steps", str(args.steps), "--batch-size", "16", "--lr", "2e-3",
             "--warmup-steps", "100", "--dropout", "0", "--threads", str(args.threads),
             "--eval-every", str(args.steps), "--no-progress"])  # fmt: skip
    model = run_dir / "best"
    meta = json.loads((model / "midimix.json").read_text())
    # the classifier learns the genres from the slice as the model saw it: without the drum
    # tracks (the tokenizer drops them; the rule-made lo-fi has one)
    reference = work / "reference"
    pitched_reference(work / "corpus", reference)
    raw = sweep(model, work / "raw", reference, 0, FIT_WEIGHTS, args.pieces, fit=True)
    for fitted in calibration.fit_sweep(raw["sweep"]):
        calibration.store(model, fitted)
    held = sweep(model, work / f"calibrated-seed{args.seed}", reference, args.seed, WEIGHTS,
                 args.held_out_pieces, fit=False)  # fmt: skip
    raw_points = raw["sweep"]["methods"]["logits"]
    points = held["sweep"]["methods"]["logits"]
    figures = {
        "val_loss_per_genre": meta["val_loss_per_genre"],
        "raw_p_lofi": {p["weight"]: round(p["mean"], 3) for p in raw_points},
        # read again from the points: a stored raw sweep may predate the figure's definition
        "raw_calibration_error": calibration.calibration_error(
            [(p["weight"], p["mean"]) for p in raw_points]
        ),
        "raw_crossing": raw["sweep"]["crossing_0_5"]["logits"],
        "p_lofi": {p["weight"]: round(p["mean"], 3) for p in points},
        "calibration_error": held["sweep"]["calibration_error"]["logits"],
        "crossing": held["sweep"]["crossing_0_5"]["logits"],
        "recognised_lofi": recognised(held, 1.0, "lofi"),
        "recognised_classical": recognised(held, 0.0, "classical"),
        "seconds": round(time.perf_counter() - start, 1),
    }
    (work / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    loss = ", ".join(f"{g} {v:.3f}" for g, v in meta["val_loss_per_genre"].items())
    print(f"over-confident model: validation loss per token {loss}")
    print("  raw P(lofi) at w = " + ", ".join(f"{w:g}: {v:.2f}" for w, v in
                                            figures["raw_p_lofi"].items()))  # fmt: skip
    print(f"  raw: calibration error {figures['raw_calibration_error']:.3f}, "
          f"0.5 crossing {figures['raw_crossing']}")  # fmt: skip
    print(f"  with the map, held-out seed {args.seed}: P(lofi) " + ", ".join(
        f"{v:.2f}" for v in figures["p_lofi"].values()))  # fmt: skip
    print(f"  calibration error {figures['calibration_error']:.3f} (target 0.08), 0.5 crossing "
          f"{figures['crossing']} (target 0.4-0.6), lo-fi-only recognised "
          f"{figures['recognised_lofi']:.0%}, classical-only {figures['recognised_classical']:.0%}"
          " (target 90%)")  # fmt: skip
    print(f"  {figures['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
