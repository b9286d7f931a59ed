"""Warm studio request: a 16-bar mixed piece with audio, through the page's own functions.

The studio is built once and one request warms it (imports, the synthesizer, the model's
tokenizer and classifier); then REQUESTS requests of a 16-bar lo-fi 70 / classical 30 piece
with its lo-fi audio, piano roll and P(genre), one seed each, are timed from the call to the
playable audio file. Prints each request, its split (sampling + MIDI, audio, piano roll and
score) and the median against the issue's target.

    .venv/bin/python benchmarks/bench_studio.py [--requests 5] [--bars 16]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from midimix.studio import StudioConfig
from midimix.studio.app import Studio
from midimix.studio.engine import EMBEDDED, StudioRequest

TARGET_SECONDS = 2.0  # median warm request, 16 bars with audio, 2-core CPU


def timed_renderer(spent: list[float]) -> Any:
    """render_piece, adding its time to `spent`."""
    from midimix.render import render_piece

    def render(
        midi_path: Path, weights: dict[str, float], seed: int, after_synthesis: Any = None
    ) -> Path:
        start = time.perf_counter()
        path = render_piece(midi_path, weights, seed, after_synthesis=after_synthesis)
        spent.append(time.perf_counter() - start)
        return path

    return render


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--bars", type=int, default=16)
    args = parser.parse_args()
    audio_seconds: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        studio = Studio(
            StudioConfig(runs_dir=Path(tmp) / "none", out_dir=Path(tmp)),
            render_audio=timed_renderer(audio_seconds),
        )
        mix = {"lofi": 0.7, "classical": 0.3}
        start = time.perf_counter()
        studio.generate(EMBEDDED, StudioRequest(weights=mix, bars=2, seed=99))
        cold = time.perf_counter() - start
        print(f"first request (cold: imports, synthesizer, model): {cold:.2f} s")
        times = []
        for seed in range(args.requests):
            audio_seconds.clear()
            result = studio.generate(
                EMBEDDED, StudioRequest(weights=mix, bars=args.bars, seed=seed)
            )
            total = result.seconds
            audio = sum(audio_seconds)
            times.append(total)
            piece = result.piece
            print(
                f"seed {seed}: {total:.2f} s ({piece.bars} bars, {piece.notes} notes, "
                f"{piece.seconds:.1f} s of music; audio {audio:.2f} s, rest {total - audio:.2f} s)"
            )
    median = statistics.median(times)
    verdict = "meets" if median <= TARGET_SECONDS else "misses"
    print(
        f"warm studio request, {args.bars} bars mixed with audio: median {median:.2f} s over "
        f"{len(times)} ({verdict} the {TARGET_SECONDS:g} s target; "
        f"ratio {median / TARGET_SECONDS:.2f})"
    )


if __name__ == "__main__":
    main()
