"""Hand-made MIDI for the evaluation tests: exact notes, so features have known values, and
two clearly different synthetic genres (straight diatonic piano vs swung seventh chords)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from symusic import Note, Score, Tempo, TimeSignature, Track

TPQ = 480

Score_ = Any  # symusic.Score: its type stubs know no attributes
NoteSpec = tuple[float, float, int, int]  # (start beats, length beats, pitch, velocity)


def make_score(
    notes: Sequence[NoteSpec], qpm: float = 120.0, drums: Sequence[NoteSpec] = ()
) -> Score_:
    score: Score_ = Score(TPQ)
    score.tempos.append(Tempo(0, qpm))
    score.time_signatures.append(TimeSignature(0, 4, 4))
    for is_drum, specs in ((False, notes), (True, drums)):
        if not specs:
            continue
        track: Any = Track("drums" if is_drum else "piano", 0, is_drum)
        for start, length, pitch, velocity in specs:
            track.notes.append(Note(round(start * TPQ), round(length * TPQ), pitch, velocity))
        score.tracks.append(track)
    return score


def write(score: Score_, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    score.dump_midi(str(path))
    return path


# the toy genres of the pipeline and example tests: (lowest pitch, note length in ticks),
# lo-fi low and slow, classical high and quick
LINE_GENRES = {"lofi": (48, TPQ), "classical": (72, TPQ // 4)}


def scale_line(genre: str, seed: int, bars: int) -> Score_:
    """A scale-like line: lo-fi quarter notes from C3, classical sixteenths from C5."""
    low, step = LINE_GENRES[genre]
    score: Score_ = Score(TPQ)
    track: Any = Track("", 0, False)  # name, program (piano), is_drum
    for i, tick in enumerate(range(0, bars * 4 * TPQ, step)):
        track.notes.append(Note(tick, step, low + (i * 5 + seed) % 12, 90))
    score.tracks.append(track)
    return score


def straight_piece(seed: int) -> Score_:
    """'Classical': diatonic triads in half notes under a straight eighth-note scale melody,
    no drums, 100-130 BPM, loud and even."""
    rng = np.random.default_rng(seed)
    root = int(rng.integers(0, 12))
    scale = [root + s for s in (0, 2, 4, 5, 7, 9, 11)]
    notes: list[NoteSpec] = []
    for bar in range(8):
        degree = int(rng.integers(0, 7))
        for half in (0, 2):
            triad = [scale[(degree + k) % 7] + 48 + 12 * ((degree + k) // 7) for k in (0, 2, 4)]
            notes += [(bar * 4 + half, 2.0, p, 80) for p in triad]
        for step in range(8):
            pitch = 72 + scale[int(rng.integers(0, 7))] - root
            notes.append((bar * 4 + step * 0.5, 0.5, pitch, int(rng.integers(78, 90))))
    return make_score(notes, qpm=float(rng.uniform(100, 130)))


def swung_piece(seed: int) -> Score_:
    """'Lo-fi': one maj7/m7 chord per bar held long, a 2:1 swung eighth melody, soft and
    varied velocities, drums on every beat, 70-85 BPM."""
    rng = np.random.default_rng(seed)
    notes: list[NoteSpec] = []
    drums: list[NoteSpec] = []
    for bar in range(8):
        root = 48 + int(rng.integers(0, 12))
        shape = (0, 4, 7, 11) if rng.random() < 0.5 else (0, 3, 7, 10)
        notes += [(bar * 4, 4.0, root + s, int(rng.integers(45, 70))) for s in shape]
        for beat in range(4):
            t = bar * 4 + beat
            for offset, length in ((0.0, 2 / 3), (2 / 3, 1 / 3)):
                pitch = root + 24 + shape[int(rng.integers(0, 4))]
                notes.append((t + offset, length, pitch, int(rng.integers(40, 75))))
            drums.append((t, 0.25, 36 if beat % 2 == 0 else 38, 70))
    return make_score(notes, qpm=float(rng.uniform(70, 85)), drums=drums)


def genre_sets(root: Path, count: int, start_seed: int = 0) -> dict[str, list[Path]]:
    """{'classical': [...], 'lofi': [...]}: `count` files of each synthetic genre."""
    return {
        "classical": [
            write(straight_piece(start_seed + i), root / "classical" / f"c{i:03d}.mid")
            for i in range(count)
        ],
        "lofi": [
            write(swung_piece(start_seed + i), root / "lofi" / f"l{i:03d}.mid")
            for i in range(count)
        ],
    }
