"""Two transcriptions started at once from a cold numba cache, several times in a row.

    python benchmarks/bench_jit_cache.py [--rounds 10]

librosa's numba functions cache compiled code; several processes compiling at once once left
a cache file in the environment's site-packages that segfaulted later. midimix now keeps the
cache per user (`midimix.jit_cache`). Each round empties a fresh cache folder and starts two
`midimix transcribe --drums` runs together; every run must exit 0 and the cache must be
written under the user's folder. Each round compiles from cold (1-3 min on 2 cores), which is
why this is a script and not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE_HZ = 22_050


def one_round(folder: Path) -> tuple[bool, float]:
    clips = folder / "clips" / "lofi"
    clips.mkdir(parents=True)
    t = np.arange(3 * SAMPLE_RATE_HZ) / SAMPLE_RATE_HZ
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 2 * t) > 0)
    sf.write(clips / "a.wav", tone.astype(np.float32), SAMPLE_RATE_HZ)
    cache = folder / "xdg"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(cache)
    start = time.perf_counter()
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "midimix.transcribe",
                "--clips-dir",
                str(folder / "clips"),
                "--midi-dir",
                str(folder / f"midi{k}"),
                "--drums",
                "--no-progress",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for k in range(2)
    ]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    codes = [run.returncode for run in runs]
    cached = any((cache / "midimix" / "numba").rglob("*.nbi"))
    ok = cached and all(code == 0 for code in codes)
    if not ok:
        print(f"exit codes {codes} (negative: killed by that signal), cache written: {cached}")
        for k, out in enumerate(outputs):
            fatal = out.find("Fatal Python error")  # faulthandler's report (PYTHONFAULTHANDLER=1)
            print(
                f"--- run {k} output:\n{out[fatal : fatal + 4000] if fatal >= 0 else out[-2000:]}"
            )
    return ok, time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=10)
    args = p.parse_args()
    failures = 0
    for n in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            ok, seconds = one_round(Path(tmp))
        failures += not ok
        print(f"round {n + 1}: {'ok' if ok else 'FAILED'} ({seconds:.0f} s)")
    print(f"{args.rounds - failures} of {args.rounds} rounds without a crash")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
