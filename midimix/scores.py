"""Scores before they are tokenized: track handling, duplicate notes and augmented copies.

Every MIDI file goes through `prepare_score` (drums dropped or kept, pitched tracks merged
into one part or kept apart, doubled notes removed) before it is encoded; training pieces
also get augmented copies (`augment_plan` says which, `augment` makes one). Pure functions
over symusic tick-time scores; loading and checking a file is `midimix.midifile`'s job.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from symusic.core import ScoreTick, TrackTick  # what symusic.Score(...) returns

MIN_PITCH, MAX_PITCH = 21, 108  # the piano range: transposition keeps notes inside it


def prepare_score(score: ScoreTick, tracks: str = "merge", drums: str = "drop") -> ScoreTick:
    """Drop or keep drums, merge pitched tracks into one part (program 0) or keep them."""
    from symusic.core import ScoreTick, TrackTick, TrackTickList  # noqa: F811 (runtime)

    kept = [t for t in score.tracks if drums == "keep" or not t.is_drum]
    if tracks == "programs":
        out = score.copy()
        out.tracks = TrackTickList([t.copy() for t in kept])
        for track in out.tracks:
            dedupe_notes(track)
        return out
    out = ScoreTick(score.ticks_per_quarter)
    out.tempos = score.tempos.copy()
    out.time_signatures = score.time_signatures.copy()
    out.key_signatures = score.key_signatures.copy()
    for is_drum in (False, True):
        parts = [t for t in kept if t.is_drum == is_drum and len(t.notes) > 0]
        if parts:
            merged = TrackTick("drums" if is_drum else "part", 0, is_drum)
            for part in parts:
                merged.notes.extend(part.notes)
            dedupe_notes(merged)
            out.tracks.append(merged)
    return out


def dedupe_notes(track: TrackTick) -> None:
    """Sort notes by (onset, pitch) and keep the longest of notes with the same onset and
    pitch (merged voices often double a note), in place."""
    import numpy as np
    from symusic.core import NoteTickList

    if len(track.notes) == 0:
        return
    soa = track.notes.numpy()
    order = np.lexsort((-soa["duration"].astype(np.int64), soa["pitch"], soa["time"]))
    time, pitch = soa["time"][order], soa["pitch"][order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (time[1:] != time[:-1]) | (pitch[1:] != pitch[:-1])
    keep = order[first]
    columns = [np.ascontiguousarray(soa[key][keep]) for key in ("time", "duration", "pitch")]
    velocity = np.ascontiguousarray(soa["velocity"][keep])
    # the stub lacks @staticmethod, hence the ignore
    track.notes = NoteTickList.from_numpy(*columns, velocity)  # type: ignore[call-arg]


def pitch_bounds(score: ScoreTick) -> tuple[int, int] | None:
    """(lowest, highest) pitch of the pitched notes, None when there are none."""
    pitches = [n.pitch for t in score.tracks if not t.is_drum for n in t.notes]
    return (min(pitches), max(pitches)) if pitches else None


def score_beats(score: ScoreTick) -> float:
    """Length in quarter-note beats, up to the end of the last note."""
    return score.end() / score.ticks_per_quarter if score.ticks_per_quarter else 0.0


# ---------------------------------------------------------------------------- augmentation


def transpositions(bounds: tuple[int, int] | None, max_semitones: int) -> list[int]:
    """Shifts in -N..N (not 0) that keep every note inside the piano range 21-108."""
    if bounds is None:
        return []
    low, high = bounds
    return [
        s
        for s in range(-max_semitones, max_semitones + 1)
        if s != 0 and low + s >= MIN_PITCH and high + s <= MAX_PITCH
    ]


def augment(
    score: ScoreTick, semitones: int, tempo_scale: float, velocity_offset: int
) -> ScoreTick:
    """A transposed copy (drums untouched) with scaled tempos and shifted velocities."""
    out = score.copy()
    for track in out.tracks:
        if semitones and not track.is_drum:
            track.shift_pitch(semitones, inplace=True)
        if velocity_offset:
            for note in track.notes:
                note.velocity = min(127, max(1, note.velocity + velocity_offset))
    if tempo_scale != 1.0:
        for tempo in out.tempos:
            tempo.qpm = tempo.qpm * tempo_scale
    return out


def transpose_in_range(score: ScoreTick, semitones: int) -> ScoreTick:
    """A copy with its pitched notes moved by `semitones`; a note the shift would take outside
    the piano range goes an octave back in (drums untouched)."""
    out = score.copy()
    for track in out.tracks:
        if semitones and not track.is_drum:
            for note in track.notes:
                pitch = note.pitch + semitones
                while pitch > MAX_PITCH:
                    pitch -= 12
                while pitch < MIN_PITCH:
                    pitch += 12
                note.pitch = pitch
    return out


def with_tempo(score: ScoreTick, qpm: float) -> ScoreTick:
    """A copy whose only tempo is `qpm` from the start."""
    from symusic.core import TempoTick

    out = score.copy()
    out.tempos.clear()
    out.tempos.append(TempoTick(0, qpm))
    return out


def augment_plan(
    item_id: str,
    bounds: tuple[int, int] | None,
    *,
    transpose_semitones: int,
    tempo_jitter: float,
    velocity_jitter: int,
    seed: int,
) -> list[dict[str, Any]]:
    """The augmented copies of one piece, each {"name", "transpose", "tempo_scale",
    "velocity_offset"}: one per transposition that stays in the piano range (or a single
    untransposed one when only jitter is asked); deterministic from (seed, item id)."""
    shifts = transpositions(bounds, transpose_semitones)
    jitter = tempo_jitter > 0 or velocity_jitter > 0
    if not shifts and jitter and bounds is not None:
        shifts = [0]  # jitter alone still makes one copy
    rng = random.Random(f"{seed}:{item_id}")
    plan = []
    for shift in shifts:
        scale = 1.0 + rng.uniform(-tempo_jitter, tempo_jitter)
        offset = rng.randint(-velocity_jitter, velocity_jitter)
        plan.append(
            {
                "name": f"t{shift:+d}" if shift else "j",
                "transpose": shift,
                "tempo_scale": round(scale, 4),
                "velocity_offset": offset,
            }
        )
    return plan
