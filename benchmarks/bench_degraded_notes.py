"""Transcribed notes against the known notes, per degradation: midimix's defaults and
basic-pitch's own, on the same audio.

    python benchmarks/bench_degraded_notes.py [--lofi 4] [--chorales 4] [--cache DIR]

The pieces and degradations are the tempo set's (`tempo_set.py`: rule-made lo-fi with drums,
Bach chorales; clean, the lo-fi chain at 0.5 and 1.0, MP3 at 128 kb/s, noise at 15 dB SNR).
Each clip runs basic-pitch's model once per window layout; the notes of midimix's defaults
(aligned windows, its thresholds) and of basic-pitch's defaults (its windows, onset 0.5,
frame 0.3, 127.7 ms, melodia) are scored with mir_eval against the piece's pitched notes in
its first 30 s: onset F1 and note recall (onset within 50 ms, pitch within a quarter tone),
and F1 with offsets (mir_eval's default 20% offset tolerance). Drum notes are not in the
reference, so a transcribed drum hit counts against precision.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import mir_eval
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tempo_set as ts  # noqa: E402

from midimix.transcribe import (  # noqa: E402
    TranscribeConfig,
    activations_to_notes,
    load_model,
    run_model,
)

BASIC_PITCH = TranscribeConfig(
    onset_threshold=0.5, frame_threshold=0.3, min_note_ms=127.7, melodia=True,
    window_layout="basic-pitch",
)  # fmt: skip
MIDIMIX = TranscribeConfig()


def known_notes(piece: ts.TempoPiece) -> tuple[np.ndarray, np.ndarray]:
    seconds = piece.score.to("second")
    rows = [
        (float(n.time), float(n.time + n.duration), int(n.pitch))
        for track in seconds.tracks
        if not track.is_drum
        for n in track.notes
        if n.time < ts.CLIP_SECONDS
    ]
    intervals = np.array([[s, max(e, s + 1e-3)] for s, e, _ in rows])
    return intervals, np.array([440.0 * 2 ** ((p - 69) / 12) for _, _, p in rows])


def scores(reference: tuple[np.ndarray, np.ndarray], notes: list[Any]) -> dict[str, float]:
    if not notes:
        return {"onset_f1": 0.0, "recall": 0.0, "offset_f1": 0.0}
    est = np.array([[s, max(e, s + 1e-3)] for s, e, _, _ in notes])
    est_hz = np.array([440.0 * 2 ** ((p - 69) / 12) for _, _, p, _ in notes])
    tr = mir_eval.transcription
    _, recall, f1, _ = tr.precision_recall_f1_overlap(*reference, est, est_hz, offset_ratio=None)
    _, _, off_f1, _ = tr.precision_recall_f1_overlap(*reference, est, est_hz)
    return {"onset_f1": f1, "recall": recall, "offset_f1": off_f1}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lofi", type=int, default=4)
    p.add_argument("--chorales", type=int, default=4)
    p.add_argument("--cache", type=Path, default=Path("/tmp/midimix-tempo-set"))
    args = p.parse_args()
    pieces = ts.build_pieces(
        n_lofi=args.lofi, n_nodrums=0, n_fast=0, n_chorales=args.chorales, n_jazz=0
    )
    session = load_model()
    print(f"{len(pieces)} pieces ({args.lofi} lo-fi with drums, {args.chorales} chorales)")
    print("condition | midimix onset F1 / recall / F1 with offsets | basic-pitch defaults")
    for condition in ts.CONDITIONS:
        rows: dict[str, list[dict[str, float]]] = {"midimix": [], "basic-pitch": []}
        for piece in pieces:
            audio = ts.load_audio(piece, condition, args.cache)
            reference = known_notes(piece)
            aligned = run_model(audio, session, layout="aligned")
            theirs = run_model(audio, session, layout="basic-pitch")
            rows["midimix"].append(scores(reference, activations_to_notes(aligned, MIDIMIX)))
            rows["basic-pitch"].append(scores(reference, activations_to_notes(theirs, BASIC_PITCH)))
        cells = []
        for name in ("midimix", "basic-pitch"):
            mean = {k: statistics.mean(r[k] for r in rows[name]) for k in rows[name][0]}
            cells.append(f"{mean['onset_f1']:.3f} / {mean['recall']:.3f} / {mean['offset_f1']:.3f}")
        print(f"{condition:9} | {cells[0]} | {cells[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
