"""Benchmark of `prepare` against a straightforward librosa loop, in the same run.

1. Throughput on 10 minutes of stereo 44.1 kHz mp3 (ten 60 s files made with ffmpeg from
   generated tones): midimix with 2 workers vs a loop of `librosa.load(sr=22050, mono=True)`
   + slicing + `soundfile.write`. Targets: >= 1.5x the loop, >= 100x real time.
2. Peak memory (ru_maxrss of a fresh subprocess) while preparing one 3-hour stereo 44.1 kHz
   file (wav, generated in blocks). Target: < 1 GiB.

    .venv/bin/python benchmarks/bench_prepare.py [--repeats 3] [--hours 3] [--work-dir bench-out]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

FILE_SECONDS = 60
FILES = 10  # 10 minutes in all
SOURCE_RATE_HZ = 44100
CLIP_SECONDS = 30
TARGET_RATE_HZ = 22050


def music_like(seconds: float, rate_hz: int, seed: int) -> np.ndarray:
    """Stereo chords of sines that change every second, plus a little noise."""
    rng = np.random.default_rng(seed)
    frames = round(seconds * rate_hz)
    t = np.arange(frames) / rate_hz
    out = np.zeros(frames, dtype=np.float64)
    for second in range(int(np.ceil(seconds))):
        span = slice(second * rate_hz, (second + 1) * rate_hz)
        for midi in rng.integers(48, 84, 3):
            out[span] += 0.2 * np.sin(2 * np.pi * 440 * 2 ** ((midi - 69) / 12) * t[span])
    out += 0.01 * rng.standard_normal(frames)
    return np.stack([out, np.roll(out, 100)], axis=1).astype(np.float32)


def make_mp3s(folder: Path) -> list[Path]:
    genre = folder / "lofi"
    genre.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(FILES):
        mp3 = genre / f"tone{k:02d}.mp3"
        if not mp3.exists():
            wav = folder / f"tone{k:02d}.wav"
            sf.write(str(wav), music_like(FILE_SECONDS, SOURCE_RATE_HZ, k), SOURCE_RATE_HZ)
            command = ["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-b:a", "192k", str(mp3)]
            subprocess.run(command, check=True)
            wav.unlink()
        paths.append(mp3)
    return paths


def run_midimix(raw: Path, out: Path, workers: int = 2) -> float:
    from midimix.prepare import PrepareConfig, prepare

    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    summary = prepare(raw, out, PrepareConfig(workers=workers, progress=False))
    seconds = time.perf_counter() - start
    if summary.failed or summary.done != FILES:
        raise SystemExit(f"midimix prepare failed: {summary.text()}")
    return seconds


def run_librosa_loop(paths: list[Path], out: Path) -> float:
    """The peer: what one would write first with librosa."""
    import librosa

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    clip = CLIP_SECONDS * TARGET_RATE_HZ
    start = time.perf_counter()
    for path in paths:
        y, _ = librosa.load(path, sr=TARGET_RATE_HZ, mono=True)
        for index, begin in enumerate(range(0, len(y), clip)):
            piece = y[begin : begin + clip]
            piece = np.pad(piece, (0, clip - len(piece)))
            sf.write(str(out / f"{path.stem}_{index:04d}.wav"), piece, TARGET_RATE_HZ)
    return time.perf_counter() - start


def make_long_wav(path: Path, hours: float) -> None:
    """A long stereo file written block by block (never whole in memory)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    block = music_like(60, SOURCE_RATE_HZ, 0)
    minutes = round(hours * 60)
    with sf.SoundFile(str(path), "w", SOURCE_RATE_HZ, 2, subtype="PCM_16") as handle:
        for _ in range(minutes):
            handle.write(block)


PEAK_SCRIPT = """
import resource, sys, time
from pathlib import Path
from midimix.prepare import PrepareConfig, prepare
start = time.perf_counter()
summary = prepare(Path(sys.argv[1]), Path(sys.argv[2]), PrepareConfig(progress=False))
seconds = time.perf_counter() - start
clips = sum(len(r["clips"]) for r in summary.records)
hwm_kib = next(
    int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")
)
maxrss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(maxrss_kib, hwm_kib, seconds, clips, summary.failed)
"""


def peak_memory(raw: Path, out: Path) -> tuple[float, float, float, int]:
    """(ru_maxrss MiB, VmHWM MiB, seconds, clips) of prepare on `raw` in a fresh process.

    Linux carries a parent's ru_maxrss over fork + exec into the child, so this runs before
    the benchmark imports anything large; VmHWM (the child's own high-water mark) confirms."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-c", PEAK_SCRIPT, str(raw), str(out)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    maxrss_kib, hwm_kib, seconds, clips, failed = done.stdout.split()
    if int(failed):
        raise SystemExit("midimix prepare failed on the long file")
    return int(maxrss_kib) / 1024, int(hwm_kib) / 1024, float(seconds), int(clips)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hours", type=float, default=3.0, help="long file; 0 skips it")
    parser.add_argument("--work-dir", type=Path, default=Path("bench-out/prepare"))
    args = parser.parse_args()
    work = args.work_dir
    if args.hours > 0:  # first, while this process is small (see peak_memory)
        long_raw = work / "long"
        make_long_wav(long_raw / "lofi" / "long.wav", args.hours)
        maxrss_mib, hwm_mib, seconds, clips = peak_memory(long_raw, work / "clips-long")
        decoded_mib = args.hours * 3600 * SOURCE_RATE_HZ * 2 * 4 / 2**20
        print(f"{args.hours:g} h stereo 44.1 kHz wav -> {clips} clips in {seconds:.1f} s:")
        print(f"  peak memory, ru_maxrss     : {maxrss_mib:6.0f} MiB (target < 1024 MiB)")
        print(f"  peak memory, VmHWM         : {hwm_mib:6.0f} MiB")
        print(f"  the file decoded whole as float32 would take {decoded_mib:,.0f} MiB")

    raw = work / "raw"
    paths = make_mp3s(raw)
    audio_seconds = FILES * FILE_SECONDS
    run_midimix(raw, work / "warm")  # imports and page cache, not timed
    ours, single, peer = [], [], []
    for _ in range(args.repeats):  # interleaved, so machine load hits all alike
        ours.append(run_midimix(raw, work / "clips-midimix"))
        single.append(run_midimix(raw, work / "clips-midimix", workers=1))
        peer.append(run_librosa_loop(paths, work / "clips-librosa"))
    ours_s, single_s, peer_s = map(statistics.median, (ours, single, peer))
    rows = [
        ("midimix prepare, 2 workers", ours_s),
        ("midimix prepare, 1 worker", single_s),
        ("librosa.load loop", peer_s),
    ]
    print(f"10 min stereo 44.1 kHz mp3 ({FILES} files), median of {args.repeats}:")
    for name, seconds in rows:
        print(f"  {name:<27}: {seconds:6.2f} s  {audio_seconds / seconds:5.0f}x real time")
    print(f"  throughput ratio, 2 workers: {peer_s / ours_s:6.2f}x the loop (target >= 1.5x)")
    print(f"  throughput ratio, 1 worker : {peer_s / single_s:6.2f}x the loop")


if __name__ == "__main__":
    main()
