"""Peak memory of transcribing one long input (target: an hour under 1 GiB).

    python benchmarks/bench_long_transcribe.py [--minutes 60] [--peer]

Renders four pieces of the offline corpus (data/corpus, or the pieces given with --midi) with
`midimix render`, repeats them into one mono 22,050 Hz WAV of --minutes, and runs
`midimix transcribe` on it as a single clip in a fresh process; prints that process's peak
resident memory, its wall time and the notes written. With --peer, basic-pitch's own
`predict` runs on the same file in a fresh process too (the peer holds every window and
every activation at once).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
PEER = """
import sys, logging
logging.disable(logging.WARNING)
from basic_pitch import ICASSP_2022_MODEL_PATH
from basic_pitch.inference import predict
_, _, notes = predict(sys.argv[1], ICASSP_2022_MODEL_PATH)
print(len(notes))
"""


def peak_of(command: list[str]) -> tuple[float, float, str]:
    """(peak resident MiB, wall s, stdout) of a fresh process (run alone: the children's
    peak is the largest child's)."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    wall = time.perf_counter() - start
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, wall, done.stdout


def long_input(folder: Path, midi: list[Path], minutes: float) -> Path:
    pieces = []
    for path in midi:
        out = folder / f"{path.stem}.wav"
        subprocess.run([sys.executable, "-m", "midimix", "render", str(path), "-o", str(out),
                        "--sample-rate-hz", "22050"], check=True, capture_output=True)  # fmt: skip
        audio, _ = sf.read(str(out), dtype="float32", always_2d=True)
        pieces.append(audio.mean(axis=1))
    need = int(minutes * 60 * 22050)
    joined = np.concatenate(pieces * (need // sum(map(len, pieces)) + 1))[:need]
    clip = folder / "clips" / "long" / "hour.wav"
    clip.parent.mkdir(parents=True)
    sf.write(str(clip), joined, 22050, subtype="FLOAT")
    return clip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--midi", type=Path, nargs="*", default=None)
    p.add_argument("--peer", action="store_true", help="also basic-pitch's predict")
    args = p.parse_args()
    midi = args.midi or [
        *sorted((ROOT / "data" / "corpus" / "classical").glob("*.mid"))[:2],
        *sorted((ROOT / "data" / "corpus" / "lofi").glob("*.mid"))[:2],
    ]
    if not midi:
        sys.exit("error: no MIDI pieces: build data/corpus (midimix corpus) or give --midi")
    with tempfile.TemporaryDirectory() as tmp:
        clip = long_input(Path(tmp), midi, args.minutes)
        command = [sys.executable, "-m", "midimix", "transcribe", "--clips-dir",
                   str(clip.parent.parent), "--midi-dir", str(Path(tmp) / "midi"),
                   "--no-progress"]  # fmt: skip
        peak, wall, _ = peak_of(command)
        record = json.loads((Path(tmp) / "midi" / "manifest.jsonl").read_text().splitlines()[-1])
        print(f"midimix transcribe, {args.minutes:g} min as one clip: peak {peak:.0f} MiB, "
              f"{wall:.0f} s ({args.minutes * 60 / wall:.0f}x real time), "
              f"{record.get('notes')} notes, status {record['status']}")  # fmt: skip
        if args.peer:
            peer_peak, peer_wall, out = peak_of([sys.executable, "-c", PEER, str(clip)])
            print(f"basic-pitch predict: peak {peer_peak:.0f} MiB, {peer_wall:.0f} s, "
                  f"{out.strip()} notes; midimix/peer memory {peak / peer_peak:.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
