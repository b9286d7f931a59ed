"""Fit a model's calibration map again from a sweep it already ran at raw weights, without
generating its pieces again (when the fitting method changes):

    python scripts/refit_calibration.py --model runs/mine/best --sweep out/sweep/report.json

The sweep must be one made with `midimix evaluate sweep --fit-calibration` on that model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from midimix import calibration


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="the model folder to store it in")
    p.add_argument("--sweep", type=Path, required=True, help="the fitting sweep's report.json")
    args = p.parse_args(argv)
    sweep = json.loads(args.sweep.read_text())["sweep"]
    if not sweep.get("fitted_calibration"):
        p.error(f"{args.sweep} was sampled through a map, not at raw weights: refit from the "
                "sweep made with --fit-calibration")  # fmt: skip
    for fitted in calibration.fit_sweep(sweep):
        calibration.store(args.model, fitted)
        print(f"{fitted.method} ({fitted.fitted}): asked {fitted.genre} "
              + ", ".join(f"{w:g} -> {fitted.sampling_weight(w):.3f}"
                          for w in calibration.MIXED_WEIGHTS)
              + f"; stored in {args.model / calibration.META_FILE}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
