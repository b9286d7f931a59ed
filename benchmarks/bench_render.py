"""Rendering speed against the FluidSynth command line, in one run.

20 MIDI files of 30 s (generated here): midimix (the SoundFont loaded once, a fresh synthesizer
on it per file) against `fluidsynth -ni -F out.wav -r RATE SF2 in.mid` once per file, same
SoundFont and rate; then the render with the full lo-fi chain, as a real-time factor.
Prints medians and ratios.

    .venv/bin/python benchmarks/bench_render.py [--files 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import symusic

from midimix.render import RenderConfig, find_soundfont, render_many

PIECE_SECONDS = 30.0
RATE_HZ = 44_100
TARGET_SPEEDUP = 2.0  # against the command line once per file
TARGET_REALTIME = 50.0  # render + full lo-fi chain


def make_piece(path: Path, seed: int) -> None:
    """30 s at 90 BPM: a chord per beat in the left hand, eighth-note melody in the right."""
    rnd = random.Random(seed)
    tpq, qpm = 480, 90.0
    score: Any = symusic.Score(tpq)  # symusic's stubs know no attributes
    score.tempos.append(symusic.Tempo(0, qpm))
    track: Any = symusic.Track("piano", program=0)
    for beat in range(int(PIECE_SECONDS * qpm / 60)):
        root = 48 + rnd.choice([0, 5, 7, 9])
        for pitch in (root, root + 4, root + 7):
            track.notes.append(symusic.Note(beat * tpq, tpq, pitch, rnd.randint(60, 80)))
        for half in range(2):
            pitch = 72 + rnd.choice([0, 2, 4, 7, 9, 12])
            track.notes.append(symusic.Note(beat * tpq + half * tpq // 2, tpq // 2, pitch, 90))
    score.tracks.append(track)
    score.dump_midi(str(path))


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_cli(midis: list[Path], out_dir: Path, soundfont: Path, extra: list[str]) -> None:
    for midi in midis:
        out = out_dir / f"{midi.stem}.wav"
        command = ["fluidsynth", "-ni", *extra, "-F", str(out), "-r", str(RATE_HZ)]
        subprocess.run([*command, str(soundfont), str(midi)], check=True, capture_output=True)


def run_midimix(midis: list[Path], out_dir: Path, config: RenderConfig) -> None:
    shutil.rmtree(out_dir, ignore_errors=True)  # no resume: every round renders everything
    summary = render_many(midis, out_dir, config, progress=False)
    if summary.failed or summary.done != len(midis):
        raise SystemExit(summary.text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("fluidsynth") is None:
        raise SystemExit("the fluidsynth command is needed: apt-get install fluidsynth")
    soundfont = find_soundfont()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        midis = [root / f"piece{i:02d}.mid" for i in range(args.files)]
        for i, path in enumerate(midis):
            make_piece(path, seed=i)
        (root / "cli").mkdir()
        clean = RenderConfig(sample_rate_hz=RATE_HZ)
        lofi = RenderConfig(sample_rate_hz=RATE_HZ, genre_weights={"lofi": 1.0}, drums="off")
        # The machine has 2 cores: render_many spreads files over worker processes.
        clean2 = RenderConfig(sample_rate_hz=RATE_HZ, workers=2)
        lofi2 = RenderConfig(
            sample_rate_hz=RATE_HZ, genre_weights={"lofi": 1.0}, drums="off", workers=2
        )
        runs: dict[str, Callable[[], object]] = {
            "fluidsynth CLI (defaults)": lambda: run_cli(midis, root / "cli", soundfont, []),
            "fluidsynth CLI (-R 0 -C 0)": lambda: run_cli(
                midis, root / "cli", soundfont, ["-R", "0", "-C", "0"]
            ),
            "midimix clean": lambda: run_midimix(midis, root / "clean", clean),
            "midimix + lo-fi chain": lambda: run_midimix(midis, root / "lofi", lofi),
            "midimix clean, 2 workers": lambda: run_midimix(midis, root / "clean2", clean2),
            "midimix + lo-fi, 2 workers": lambda: run_midimix(midis, root / "lofi2", lofi2),
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):  # interleaved, so machine load hits all alike
            for name, fn in runs.items():
                times[name].append(timed(fn))
    audio_seconds = args.files * PIECE_SECONDS
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(
        f"{args.files} files x {PIECE_SECONDS:.0f} s at {RATE_HZ} Hz, SoundFont {soundfont}, "
        f"median of {args.rounds} rounds"
    )
    for name, seconds in medians.items():
        print(f"  {name:<28} {seconds:7.2f} s   {audio_seconds / seconds:6.1f}x real time")
    cli = medians["fluidsynth CLI (defaults)"]
    cli_dry = medians["fluidsynth CLI (-R 0 -C 0)"]
    ours = medians["midimix clean"]
    realtime = audio_seconds / medians["midimix + lo-fi chain"]
    print(
        f"speed-up, clean render vs CLI defaults: {cli / ours:.2f}x "
        f"(target >= {TARGET_SPEEDUP:g}x); vs CLI without reverb/chorus: {cli_dry / ours:.2f}x"
    )
    print(f"render + full lo-fi chain: {realtime:.1f}x real time (target >= {TARGET_REALTIME:g}x)")
    ours2 = medians["midimix clean, 2 workers"]
    realtime2 = audio_seconds / medians["midimix + lo-fi, 2 workers"]
    print(
        f"with 2 workers (both cores): {cli / ours2:.2f}x the CLI defaults, "
        f"{cli_dry / ours2:.2f}x the CLI without reverb/chorus; render + lo-fi chain "
        f"{realtime2:.1f}x real time"
    )


if __name__ == "__main__":
    main()
