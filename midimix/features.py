"""Musical features of one MIDI piece, each a number with a one-line definition, and the
feature table of a set of pieces.

The definitions (also in docs/evaluate.md) are in `FEATURE_DEFINITIONS`; `extract_features`
returns them in that order. "Pitched notes" are the notes of non-drum tracks; a "beat" is a
quarter note (the MIDI file's ticks per quarter); times in seconds follow the tempo map.
A piece without pitched notes gets 0 for the pitch, harmony and polyphony features.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from midimix.config import MIDI_SUFFIXES
from midimix.errors import InputError, ItemError
from midimix.midifile import check_score, load_score

Score = Any  # symusic.Score: its type stubs know no attributes

PITCH_CLASS_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)  # natural minor is the same set as its relative major
HARMONIC_MINOR_SCALE = (0, 2, 3, 5, 7, 8, 11)
TRIADS = ((0, 4, 7), (0, 3, 7), (0, 3, 6), (0, 4, 8))  # major, minor, diminished, augmented
SEVENTHS = (  # maj7, dominant 7, m7, m7b5, dim7, minor-major 7 (6 chords are inversions)
    (0, 4, 7, 11),
    (0, 4, 7, 10),
    (0, 3, 7, 10),
    (0, 3, 6, 10),
    (0, 3, 6, 9),
    (0, 3, 7, 11),
)
ADDED_NINTHS = ((0, 2, 4, 7), (0, 2, 3, 7), (0, 2, 4, 10))  # add9, m(add9), 9 without 5th
SWING_WINDOW = (0.4, 0.8)  # where an off-beat onset counts as the second of a swung pair
ON_BEAT_TOLERANCE = 0.08  # of a beat: an onset this close to the beat is on it
GROOVE_STEPS_PER_BEAT = 4  # onset grid of groove consistency: sixteenths

FEATURE_DEFINITIONS: dict[str, str] = {
    "pitch_range": "highest minus lowest pitch of the pitched notes, in semitones",
    "pitch_mean": "mean MIDI pitch of the pitched notes",
    "pitch_std": "standard deviation of the pitched notes' MIDI pitches",
    **{
        f"pitch_class_{name}": f"share of pitched notes whose pitch class is {name}"
        for name in PITCH_CLASS_NAMES
    },
    "pitch_class_entropy": "Shannon entropy (bits, 0..3.58) of the 12-bin pitch-class histogram",
    "scale_consistency": "largest share of pitched notes inside one major or harmonic-minor "
    "scale (24 scales tried; natural minor equals its relative major)",
    "polyphony": "mean number of pitched notes sounding, over the time when at least one sounds",
    "note_density": "pitched notes per second, from the first onset to the last note end",
    "note_length_beats": "mean duration of the pitched notes, in beats",
    "ioi_mean_beats": "mean inter-onset interval between distinct onset times (all notes), in "
    "beats",
    "ioi_std_beats": "standard deviation of those inter-onset intervals, in beats",
    "groove_consistency": "1 minus the mean Hamming distance between the sixteenth-grid onset "
    "patterns of consecutive bars (1 = every bar has the same rhythm)",
    "swing_ratio": "median long/short ratio of eighth pairs: in beats with an on-beat onset and "
    "exactly one more onset at 0.4-0.8 of the beat, f/(1-f); 1 = straight, 2 = 2:1 swing, "
    "1 when no beat qualifies",
    "swing_ratio_16th": "the same ratio for sixteenth pairs inside each half beat",
    "chord_rate": "share of distinct pitched onsets at which 3 or more pitch classes sound",
    "chord_triad": "share of those chords that are triads (major, minor, dim, aug)",
    "chord_seventh": "share that are four-note seventh chords (maj7, 7, m7, m7b5, dim7, mM7)",
    "chord_extended": "share with a ninth or more: 5+ pitch classes holding a seventh chord, "
    "or add9 / 9-without-fifth sets",
    "chord_other": "share of the remaining chords (clusters, incomplete or unusual sets)",
    "tempo_qpm": "time-weighted mean tempo, in quarter notes per minute",
    "velocity_mean": "mean velocity (1-127) of the pitched notes",
    "velocity_std": "standard deviation of the pitched notes' velocities",
    "drum_fraction": "share of all notes that are on drum tracks (0 = no drums)",
}
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURE_DEFINITIONS)


def _notes(score: Score) -> tuple[np.ndarray, np.ndarray]:
    """(pitched, drums): arrays of rows (start_tick, end_tick, pitch, velocity), by start."""
    parts: dict[bool, list[np.ndarray]] = {False: [], True: []}
    for track in score.tracks:
        arr = track.notes.numpy()
        if len(arr["time"]) == 0:
            continue
        start = arr["time"].astype(np.int64)
        rows = np.stack(
            [
                start,
                start + np.maximum(arr["duration"].astype(np.int64), 1),
                arr["pitch"].astype(np.int64),
                arr["velocity"].astype(np.int64),
            ],
            axis=1,
        )
        parts[bool(track.is_drum)].append(rows)
    out = []
    for drum in (False, True):
        rows = np.concatenate(parts[drum]) if parts[drum] else np.zeros((0, 4), np.int64)
        out.append(rows[np.argsort(rows[:, 0], kind="stable")])
    return out[0], out[1]


def pitch_class_histogram(pitches: np.ndarray) -> np.ndarray:
    """Share of notes per pitch class (12 values summing to 1; zeros for no notes)."""
    counts = np.bincount(pitches % 12, minlength=12).astype(float)
    return counts / counts.sum() if counts.sum() else counts


def entropy_bits(histogram: np.ndarray) -> float:
    p = histogram[histogram > 0]
    return float(-(p * np.log2(p)).sum()) if len(p) else 0.0


def scale_consistency(histogram: np.ndarray) -> float:
    best = 0.0
    for scale in (MAJOR_SCALE, HARMONIC_MINOR_SCALE):
        for root in range(12):
            best = max(best, float(histogram[[(root + s) % 12 for s in scale]].sum()))
    return best


def polyphony(notes: np.ndarray) -> float:
    """Total note time over the time covered by at least one note (exact, by a sweep)."""
    if not len(notes):
        return 0.0
    covered, end = 0, None
    start = None
    for s, e in notes[:, :2]:
        if end is None or s > end:
            if end is not None and start is not None:
                covered += end - start
            start, end = s, e
        else:
            end = max(end, e)
    if start is not None and end is not None:
        covered += end - start
    return float((notes[:, 1] - notes[:, 0]).sum() / covered)


def _matches(pcs: frozenset[int], templates: tuple[tuple[int, ...], ...]) -> bool:
    shapes = {frozenset(t) for t in templates}
    return any(frozenset((p - root) % 12 for p in pcs) in shapes for root in pcs)


def chord_quality(pcs: frozenset[int]) -> str:
    """'triad', 'seventh', 'extended' or 'other' for a set of 3+ pitch classes."""
    if len(pcs) == 3:
        return "triad" if _matches(pcs, TRIADS) else "other"
    if len(pcs) == 4:
        if _matches(pcs, SEVENTHS):
            return "seventh"
        return "extended" if _matches(pcs, ADDED_NINTHS) else "other"
    for root in pcs:
        shifted = {(p - root) % 12 for p in pcs}
        if any(set(t) <= shifted for t in SEVENTHS):
            return "extended"
    return "other"


def chord_histogram(notes: np.ndarray) -> dict[str, float]:
    """Chord rate and the share of each chord quality over the distinct pitched onsets."""
    out = {"chord_rate": 0.0, "chord_triad": 0.0, "chord_seventh": 0.0}
    out |= {"chord_extended": 0.0, "chord_other": 0.0}
    onsets = np.unique(notes[:, 0]) if len(notes) else np.zeros(0, np.int64)
    qualities = []
    # a sweep over the onsets: notes join when they start and leave when they end, so the
    # sounding pitch classes cost O(n log n) in all, not a scan of every note per onset
    by_start = notes[np.argsort(notes[:, 0], kind="stable")]
    ending: list[tuple[int, int]] = []  # heap of (end, pitch class) of the sounding notes
    counts = [0] * 12
    joined = 0
    for t in onsets.tolist():
        while joined < len(by_start) and by_start[joined, 0] <= t:
            end, pc = int(by_start[joined, 1]), int(by_start[joined, 2]) % 12
            heapq.heappush(ending, (end, pc))
            counts[pc] += 1
            joined += 1
        while ending and ending[0][0] <= t:
            counts[heapq.heappop(ending)[1]] -= 1
        pcs = frozenset(pc for pc in range(12) if counts[pc])
        if len(pcs) >= 3:
            qualities.append(chord_quality(pcs))
    if qualities:
        out["chord_rate"] = len(qualities) / len(onsets)
        for quality in ("triad", "seventh", "extended", "other"):
            out[f"chord_{quality}"] = qualities.count(quality) / len(qualities)
    return out


def swing_ratio(onsets_beats: np.ndarray, unit_beats: float = 1.0) -> float:
    """Median f/(1-f) over units (beats, or half beats for sixteenths) that hold an on-unit
    onset and exactly one other onset, at fraction f in SWING_WINDOW of the unit."""
    units = np.unique(onsets_beats) / unit_beats
    index = np.floor(units + ON_BEAT_TOLERANCE).astype(np.int64)
    frac = units - index
    ratios = []
    for unit in np.unique(index):
        f = frac[index == unit]
        on = np.abs(f) < ON_BEAT_TOLERANCE
        off = f[~on]
        if on.any() and len(off) == 1 and SWING_WINDOW[0] <= off[0] <= SWING_WINDOW[1]:
            ratios.append(off[0] / (1.0 - off[0]))
    return float(np.median(ratios)) if ratios else 1.0


def groove_consistency(onsets_beats: np.ndarray, beats_per_bar: float) -> float:
    """1 - mean Hamming distance (as a share of grid steps) between consecutive bars."""
    steps = max(1, round(beats_per_bar * GROOVE_STEPS_PER_BEAT))
    grid = np.round(onsets_beats * GROOVE_STEPS_PER_BEAT).astype(np.int64)
    bars = grid // steps
    n_bars = int(bars.max()) + 1 if len(grid) else 0
    if n_bars < 2:
        return 1.0
    pattern = np.zeros((n_bars, steps), dtype=bool)
    pattern[bars, grid % steps] = True
    return float(1.0 - (pattern[1:] != pattern[:-1]).mean())


def _tempo_qpm(score: Score, end_tick: int) -> float:
    tempos = sorted((int(t.time), float(t.qpm)) for t in score.tempos)
    if not tempos:
        return 120.0  # the MIDI default
    total, weighted = 0, 0.0
    for (t0, qpm), (t1, _) in zip(
        tempos, [*tempos[1:], (max(end_tick, tempos[-1][0]), 0.0)], strict=True
    ):
        span = max(0, min(t1, end_tick) - t0)
        total += span
        weighted += span * qpm
    return weighted / total if total else tempos[0][1]


def _seconds_span(score: Score) -> float:
    """From the first onset to the last note end, in seconds, through the tempo map."""
    timed = score.to("second")
    starts, ends = [], []
    for track in timed.tracks:
        arr = track.notes.numpy()
        if len(arr["time"]):
            starts.append(float(arr["time"].min()))
            ends.append(float((arr["time"] + arr["duration"]).max()))
    return max(ends) - min(starts) if starts else 0.0


def _beats_per_bar(score: Score) -> float:
    if not len(score.time_signatures):
        return 4.0
    ts = score.time_signatures[0]
    return float(ts.numerator) * 4.0 / float(ts.denominator)


def extract_features(midi: Path | Score) -> dict[str, float]:
    """The features of `FEATURE_DEFINITIONS` for one piece (a path or a symusic Score)."""
    score = midi if not isinstance(midi, (str, Path)) else load_score(Path(midi))
    if "Tick" not in str(score.ttype):  # seconds or quarters: features count ticks
        score = score.to("tick")
    name = str(midi) if isinstance(midi, (str, Path)) else "the score"
    check_score(score, name)  # a score made in memory has not been through load_score
    pitched, drums = _notes(score)
    if not len(pitched) and not len(drums):
        raise ItemError(f"{name} holds no notes; a piece needs notes to be measured")
    tpq = float(score.tpq)
    every = np.concatenate([pitched, drums])
    onsets_beats = np.unique(every[:, 0]) / tpq
    end_tick = int(every[:, 1].max())
    pitches, velocities = pitched[:, 2], pitched[:, 3]
    histogram = pitch_class_histogram(pitches)
    seconds = _seconds_span(score)
    ioi = np.diff(onsets_beats)
    out: dict[str, float] = {
        "pitch_range": float(np.ptp(pitches)) if len(pitches) else 0.0,
        "pitch_mean": float(pitches.mean()) if len(pitches) else 0.0,
        "pitch_std": float(pitches.std()) if len(pitches) else 0.0,
    }
    out |= {f"pitch_class_{n}": float(v) for n, v in zip(PITCH_CLASS_NAMES, histogram, strict=True)}
    out |= {
        "pitch_class_entropy": entropy_bits(histogram),
        "scale_consistency": scale_consistency(histogram),
        "polyphony": polyphony(pitched),
        "note_density": len(pitched) / seconds if seconds > 0 else 0.0,
        "note_length_beats": float((pitched[:, 1] - pitched[:, 0]).mean() / tpq)
        if len(pitched)
        else 0.0,
        "ioi_mean_beats": float(ioi.mean()) if len(ioi) else 0.0,
        "ioi_std_beats": float(ioi.std()) if len(ioi) else 0.0,
        "groove_consistency": groove_consistency(onsets_beats, _beats_per_bar(score)),
        "swing_ratio": swing_ratio(onsets_beats, 1.0),
        "swing_ratio_16th": swing_ratio(onsets_beats, 0.5),
    }
    out |= chord_histogram(pitched)
    out |= {
        "tempo_qpm": _tempo_qpm(score, end_tick),
        "velocity_mean": float(velocities.mean()) if len(velocities) else 0.0,
        "velocity_std": float(velocities.std()) if len(velocities) else 0.0,
        "drum_fraction": len(drums) / len(every),
    }
    bad = [k for k, v in out.items() if not math.isfinite(v)]
    if bad:
        raise ItemError(f"{name}: features {bad} are not finite; the file has odd timing")
    return {k: out[k] for k in FEATURE_NAMES}


def feature_table(name: str, paths: Sequence[Path]) -> tuple[list[Path], np.ndarray, list[str]]:
    """(paths measured, features (pieces, FEATURE_NAMES), reasons for the skipped files) of the
    set `name`. A file that cannot be measured is skipped with its reason; a set with no
    measurable piece is an InputError."""
    if not paths:
        raise InputError(
            f"set {name!r} has no MIDI files ({'/'.join(MIDI_SUFFIXES)}); give a folder with some"
        )
    kept, rows, skipped = [], [], []
    for path in paths:
        try:
            features = extract_features(path)
        except ItemError as error:
            skipped.append(str(error))
            continue
        kept.append(Path(path))
        rows.append([features[k] for k in FEATURE_NAMES])
    if not rows:
        raise InputError(
            f"set {name!r}: none of its {len(paths)} files could be measured; first reason: "
            f"{skipped[0]}"
        )
    return kept, np.asarray(rows, dtype=float), skipped
