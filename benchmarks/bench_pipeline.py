"""The whole pipeline on N minutes of audio per genre, timed per stage.

    python benchmarks/bench_pipeline.py --minutes 10 --work-dir /tmp/bench-pipeline
    python benchmarks/bench_pipeline.py --minutes 10 --max-steps 30   # a shorter training

The audio is rendered (fluidsynth CLI, General MIDI piano, 44.1 kHz stereo) from MIDI the
project makes itself: midimix.corpus's rule-made lo-fi pieces and music21 classical score
segments, about 30 s each. The pipeline then runs with the CPU preset ("small"); the table
gives the wall time of every stage and names the slowest.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

import soundfile as sf

from midimix.corpus import CorpusConfig, build_corpus
from midimix.pipeline import STAGE_NAMES, PipelineConfig, run
from midimix.render import find_soundfont


def render_minutes(midi_dir: Path, audio_dir: Path, minutes: float, soundfont: Path) -> float:
    """Render MIDI files (in name order) until `minutes` of audio; returns the seconds made."""
    audio_dir.mkdir(parents=True, exist_ok=True)
    total_s = 0.0
    for midi in sorted(midi_dir.glob("*.mid")):
        if total_s >= minutes * 60:
            break
        wav = audio_dir / f"{midi.stem}.wav"
        if not wav.exists():
            command = ["fluidsynth", "-ni", "-q", "-F", str(wav), "-r", "44100", str(soundfont)]
            subprocess.run([*command, str(midi)], check=True, capture_output=True)
        total_s += sf.info(wav).duration
    return total_s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="audio per genre")
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/bench-pipeline"))
    p.add_argument("--preset", default="small")
    p.add_argument("--max-steps", type=int, default=0, help="0: the training stage's epochs")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()

    work = args.work_dir
    pieces = round(args.minutes * 2) + 4  # about 30 s a piece, a few spare
    start = time.perf_counter()
    corpus = CorpusConfig(lofi=pieces, classical=pieces, workers=args.workers, progress=False)
    build_corpus(work / "corpus", corpus)
    soundfont = find_soundfont()
    made = {
        g: render_minutes(work / "corpus" / g, work / "audio" / g, args.minutes, soundfont)
        for g in ("lofi", "classical")
    }
    print(
        f"input: {', '.join(f'{g} {s / 60:.1f} min' for g, s in made.items())} of audio "
        f"(made in {time.perf_counter() - start:.0f} s)"
    )

    config = PipelineConfig(
        data_dir=work / "data",
        preset=args.preset,
        max_steps=args.max_steps,
        workers=args.workers,
        progress=False,
    )
    started = time.perf_counter()
    result = run({g: work / "audio" / g for g in made}, config)
    total_s = time.perf_counter() - started
    print(result.text())
    print("\n| stage | seconds |\n| --- | ---: |")
    for stage in STAGE_NAMES:
        if stage in result.seconds:
            print(f"| {stage} | {result.seconds[stage]:.1f} |")
    print(f"| total | {total_s:.1f} |")
    slowest = max(result.seconds, key=lambda s: result.seconds[s])
    print(f"slowest stage: {slowest} ({result.seconds[slowest] / total_s:.0%} of the run)")


if __name__ == "__main__":
    main()
