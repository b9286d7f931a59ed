"""`--help` of every stage: the command line must answer at once.

    python benchmarks/bench_help.py [--runs 5]

Each stage's `python -m midimix.<stage> --help` runs in a fresh process, `--runs` times; the
median is printed beside the floor any such command pays, a bare `python -c pass`, and their
ratio. Target: every stage at most 0.5 s (median of 5).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from midimix.cli import STAGES  # every stage of the `midimix` command

TARGET_SECONDS = 0.5


def median_seconds(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    floor = median_seconds([sys.executable, "-c", "pass"], args.runs)
    print(f"python -c pass: {floor:.3f} s (median of {args.runs})")
    slow = 0
    for stage in STAGES:
        seconds = median_seconds([sys.executable, "-m", "midimix", stage, "--help"], args.runs)
        met = seconds <= TARGET_SECONDS
        slow += not met
        print(
            f"midimix {stage:<10} --help: {seconds:.3f} s, {seconds / floor:4.1f}x the bare "
            f"interpreter, {'ok' if met else 'over'} the {TARGET_SECONDS} s target"
        )
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
