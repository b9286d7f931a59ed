"""Cold start to finished audio with the embedded default model.

    python benchmarks/bench_cold_start.py [--runs 5] [--seconds 30]

Each run is a fresh `python -m midimix.generate --genre-mix lofi=0.7,classical=0.3 --seconds S`
process (imports, model load, sampling, FluidSynth render and the lo-fi chain included), timed
from start to exit. Target: a 30-second mixed piece in at most 6 s, median of 5. The peer is
the interpreter itself: `python -c "import torch, transformers"`, the floor any such command
pays before doing work; the ratio says how much of the time is midimix's own work.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--seconds", type=float, default=30.0)
    args = p.parse_args()
    imports = [sys.executable, "-c", "import torch, transformers.models.gpt2"]
    totals, floors = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            generate = [sys.executable, "-m", "midimix.generate", "--genre-mix"]
            generate += ["lofi=0.7,classical=0.3", "--seconds", f"{args.seconds:g}"]
            generate += ["--seed", str(run), "--out-dir", str(Path(tmp) / f"run{run}")]
            floors.append(timed(imports, Path(tmp)))
            totals.append(timed(generate, Path(tmp)))
            print(f"run {run}: {totals[-1]:.2f} s (imports alone {floors[-1]:.2f} s)")
    total, floor = statistics.median(totals), statistics.median(floors)
    print(f"cold start to audio, {args.seconds:g} s piece: median {total:.2f} s (target <= 6 s)")
    print(f"torch + transformers import alone: median {floor:.2f} s; ratio {total / floor:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
