"""Mix sweep: does the music follow the mix? Pieces at lo-fi weights 0, 0.25, ..., 1 are
judged by a genre classifier trained on reference MIDI; sweep.png plots P(lo-fi) against the
weight with 95% confidence intervals.

    python examples/mix_sweep.py --reference lofi=data/midi/lofi \\
        --reference classical=data/midi/classical --model data/runs/model/best
"""

from __future__ import annotations

import argparse
from pathlib import Path

from midimix.evaluate import EvaluateConfig
from midimix.sweep import SweepConfig, sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", type=Path, default=None, help="a checkpoint folder (default: the embedded one)"
    )
    parser.add_argument(
        "--reference", action="append", required=True, metavar="GENRE=DIR",
        help="MIDI files of one genre, to train the classifier; once per genre",
    )  # fmt: skip
    parser.add_argument("--out-dir", type=Path, default=Path("out/sweep"))
    parser.add_argument("--pieces", type=int, default=20, help="pieces per weight")
    parser.add_argument(
        "--tiny", action="store_true", help="2 pieces at weights 0 and 1, 2 bars each"
    )
    args = parser.parse_args()

    from midimix.generate import DEFAULT_MODEL_DIR

    model = args.model or DEFAULT_MODEL_DIR
    reference = {}
    for pair in args.reference:
        genre, _, folder = pair.partition("=")
        reference[genre] = sorted(Path(folder).rglob("*.mid"))

    config = SweepConfig(genre="lofi", against="classical", pieces=args.pieces)
    if args.tiny:  # enough to draw the plot, not to trust it
        config = SweepConfig(
            genre="lofi",
            against="classical",
            pieces=2,
            weights=(0.0, 1.0),
            bars=2,
            evaluate=EvaluateConfig(cv_folds=2, piano_rolls_per_set=0),
        )
    report = sweep(model, reference, args.out_dir, config)

    # One point per weight: the mean P(lo-fi) of its pieces and its 95% interval.
    for point in report["sweep"]["methods"]["logits"]:
        low, high = point["ci95"]
        weight, mean = point["weight"], point["mean"]
        print(f"lofi weight {weight:.2f}: P(lofi) {mean:.2f} [{low:.2f}, {high:.2f}]")
    print(f"rises: {report['sweep']['rises']['logits']}; plot: {args.out_dir / 'sweep.png'}")


if __name__ == "__main__":
    main()
