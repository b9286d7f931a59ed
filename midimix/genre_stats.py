"""What each genre's training data holds, read from its token sequences: tempo, time
signatures, notes per onset, duplicate notes.

Generation keeps its pieces inside these figures (no more notes on one onset than the genres'
99th percentile, tempos inside their 5th-95th percentile range, time signatures the genres
use), and the evaluation compares generated pieces with them. They are computed from the
token sequences, the music exactly as the model saw it (tracks merged, tempos on the
tokenizer's grid), once at training time, and stored in the model folder's midimix.json.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from midimix.errors import InputError
from midimix.keys import key_shares

META_FILE = "midimix.json"  # a model folder's record (midimix.model), where the stats live
META_KEY = "genre_stats"
MOVE_TYPES = ("Bar", "Position", "TimeShift")  # tokens after which notes start at a new onset
NOTE_PREFIX = "Pitch"  # Pitch_60; PitchDrum too (drums are dropped by the default tokenizer)
TEMPO_PERCENTILES = (5.0, 95.0)  # the range a genre's pieces are kept in
TEMPO_TOLERANCE = 0.02  # a tempo bin this close outside a mix's range still counts as inside
MIN_TIME_SIG_SHARE = 0.02  # rarer time signatures count as noise of the source files


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default) without importing numpy."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class PieceFacts:
    """One piece, read from its base tokens."""

    tempos_bpm: list[float] = field(default_factory=list)
    time_signatures: list[str] = field(default_factory=list)
    notes_per_onset: list[int] = field(default_factory=list)
    notes: int = 0
    duplicates: int = 0  # notes whose pitch already started at the same onset
    pitch_classes: list[int] = field(default_factory=lambda: [0] * 12)  # notes per class


def piece_facts(tokens: Iterable[str]) -> PieceFacts:
    """Walk REMI-style base tokens: Bar and Position move the onset; Pitch starts a note."""
    facts = PieceFacts()
    onset: list[int] = []

    def close() -> None:
        if onset:
            facts.notes_per_onset.append(len(onset))
            facts.duplicates += len(onset) - len(set(onset))
            onset.clear()

    for token in tokens:
        kind, _, value = token.partition("_")
        if kind in MOVE_TYPES:
            close()
        elif kind.startswith(NOTE_PREFIX) and value.lstrip("-").isdigit():
            onset.append(int(value))
            facts.notes += 1
            if kind == NOTE_PREFIX:  # drums have no key
                facts.pitch_classes[int(value) % 12] += 1
        elif kind == "Tempo":
            facts.tempos_bpm.append(float(value))
        elif kind == "TimeSig":
            facts.time_signatures.append(value)
    close()
    return facts


@dataclass
class GenreStats:
    pieces: int
    notes: int
    duplicate_share: float  # duplicates / notes
    notes_per_onset_p99: float
    notes_per_onset_max: int
    tempo_bpm_p5: float | None  # of each piece's first tempo; None: no tempo tokens
    tempo_bpm_p50: float | None
    tempo_bpm_p95: float | None
    time_signatures: dict[str, float]  # share of pieces whose first signature it is
    # share of the pieces (before augmentation) in each key, "C major", "A minor"...; empty for
    # a model trained before keys were stored
    keys: dict[str, float] = field(default_factory=dict)
    # share of the pieces whose first tempo is each value ("76.15": 0.3...); empty for a model
    # trained before they were stored
    tempo_shares: dict[str, float] = field(default_factory=dict)

    @property
    def onset_cap(self) -> int:
        """Most notes generation may start on one onset: the 99th percentile, at least 1."""
        return max(1, math.ceil(self.notes_per_onset_p99))


def genre_stats(
    pieces: Iterable[PieceFacts], originals: Iterable[PieceFacts] | None = None
) -> GenreStats:
    """The statistics of one genre's pieces; its keys from `originals` when given (the pieces
    without their transposed copies, which would spread the keys over their neighbours)."""
    pieces = list(pieces)
    keyed = pieces if originals is None else list(originals)
    firsts = [p.tempos_bpm[0] for p in pieces if p.tempos_bpm]
    onsets = [n for p in pieces for n in p.notes_per_onset]
    notes = sum(p.notes for p in pieces)
    sigs = Counter(p.time_signatures[0] for p in pieces if p.time_signatures)
    total = sum(sigs.values())
    return GenreStats(
        pieces=len(pieces),
        notes=notes,
        duplicate_share=sum(p.duplicates for p in pieces) / notes if notes else 0.0,
        notes_per_onset_p99=percentile(onsets, 99.0) if onsets else 1.0,
        notes_per_onset_max=max(onsets, default=0),
        tempo_bpm_p5=percentile(firsts, TEMPO_PERCENTILES[0]) if firsts else None,
        tempo_bpm_p50=percentile(firsts, 50.0) if firsts else None,
        tempo_bpm_p95=percentile(firsts, TEMPO_PERCENTILES[1]) if firsts else None,
        time_signatures={
            sig: round(n / total, 4) for sig, n in sigs.most_common() if n / total >= 0.001
        },
        keys=key_shares([p.pitch_classes for p in keyed]),
        tempo_shares={
            f"{bpm:g}": round(n / len(firsts), 4) for bpm, n in sorted(Counter(firsts).items())
        },
    )


def compute_stats(
    sequences: Iterable[tuple[str, Sequence[int]]],
    base_tokens: Sequence[Sequence[str]],
    originals: Iterable[tuple[str, Sequence[int]]] | None = None,
) -> dict[str, GenreStats]:
    """{genre: stats} from (genre, ids) sequences; `base_tokens[id]` lists the base tokens
    behind an id (one without BPE, several with it). The keys come from `originals` when
    given: the same pieces without their augmented copies."""

    def facts(rows: Iterable[tuple[str, Sequence[int]]]) -> dict[str, list[PieceFacts]]:
        by_genre: dict[str, list[PieceFacts]] = {}
        for genre, ids in rows:
            tokens = (tok for i in ids if 0 <= i < len(base_tokens) for tok in base_tokens[i])
            by_genre.setdefault(genre, []).append(piece_facts(tokens))
        return by_genre

    by_genre = facts(sequences)
    keyed = None if originals is None else facts(originals)
    return {
        genre: genre_stats(pieces, None if keyed is None else keyed.get(genre, []))
        for genre, pieces in sorted(by_genre.items())
    }


def stats_to_dict(stats: Mapping[str, GenreStats]) -> dict[str, Any]:
    """JSON-ready, as stored under "genre_stats" in a model folder's midimix.json."""
    return {genre: asdict(s) for genre, s in stats.items()}


def stats_from_dict(data: Any, source: str = "genre_stats") -> dict[str, GenreStats]:
    try:
        return {str(genre): GenreStats(**values) for genre, values in data.items()}
    except (ValueError, TypeError, AttributeError) as error:
        raise InputError(f"{source} is not a readable set of genre statistics: {error}") from None


def load_stats(model_dir: Path) -> dict[str, GenreStats] | None:
    """The stats stored in a model folder's midimix.json; None for a model trained before
    they were stored."""
    path = Path(model_dir) / META_FILE
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return stats_from_meta(meta, str(path))


def stats_from_meta(meta: Any, source: str = META_FILE) -> dict[str, GenreStats] | None:
    """The stats in a model folder's record (midimix.json), already read."""
    data = meta.get(META_KEY) if isinstance(meta, dict) else None
    return None if data is None else stats_from_dict(data, f"{source}: {META_KEY}")


# ------------------------------------------------------------------------- limits of a mix


def mix_onset_cap(stats: Mapping[str, GenreStats], weights: Mapping[str, float]) -> int:
    """The largest 99th percentile among the genres present in the mix."""
    present = [stats[g].onset_cap for g, w in weights.items() if w > 0 and g in stats]
    return max(present, default=max((s.onset_cap for s in stats.values()), default=1))


def _weighted_mean(
    stats: Mapping[str, GenreStats], weights: Mapping[str, float], name: str
) -> float | None:
    """The weights' mean of one statistic over the genres in the mix that have it."""
    known = {
        g: w
        for g, w in weights.items()
        if w > 0 and g in stats and getattr(stats[g], name) is not None
    }
    total = sum(known.values())
    if not total:
        return None
    return sum(w * getattr(stats[g], name) for g, w in known.items()) / total


def mix_tempo_range(
    stats: Mapping[str, GenreStats], weights: Mapping[str, float]
) -> tuple[float, float]:
    """Tempo range of a mix: each bound the weighted mean of the genres' bounds, so a single
    genre keeps its own 5th-95th percentile range and a mix lies between the genres."""
    low = _weighted_mean(stats, weights, "tempo_bpm_p5")
    high = _weighted_mean(stats, weights, "tempo_bpm_p95")
    return (0.0, math.inf) if low is None or high is None else (low, high)


def tempo_in_range(bpm: float, low: float, high: float) -> bool:
    """Whether a tempo bin counts as inside a range (tempo tokens sit on a coarse grid)."""
    return low * (1 - TEMPO_TOLERANCE) <= bpm <= high * (1 + TEMPO_TOLERANCE)


def draw_mix_tempo(
    stats: Mapping[str, GenreStats], weights: Mapping[str, float], rng: random.Random
) -> float | None:
    """A tempo for a piece whose model stated none: drawn from the genres' first tempos
    (each genre's shares times its weight) inside the mix's range; the mix's median tempo when
    the genres store no shares or none lies inside (None without tempo statistics)."""
    low, high = mix_tempo_range(stats, weights)
    shares: dict[float, float] = {}
    for genre, weight in weights.items():
        if weight > 0 and genre in stats:
            for bpm, share in stats[genre].tempo_shares.items():
                if tempo_in_range(float(bpm), low, high):
                    shares[float(bpm)] = shares.get(float(bpm), 0.0) + weight * share
    if not shares:
        return mix_median_tempo(stats, weights)
    return rng.choices(list(shares), weights=list(shares.values()))[0]


def mix_median_tempo(stats: Mapping[str, GenreStats], weights: Mapping[str, float]) -> float | None:
    """The weighted mean of the genres' median tempos (None when no genre has tempos)."""
    return _weighted_mean(stats, weights, "tempo_bpm_p50")


def mix_time_signatures(stats: Mapping[str, GenreStats], weights: Mapping[str, float]) -> set[str]:
    """Time signatures whose weighted share in the mix reaches MIN_TIME_SIG_SHARE."""
    known = {g: w for g, w in weights.items() if g in stats and w > 0}
    total = sum(known.values()) or 1.0
    shares: dict[str, float] = {}
    for genre, weight in known.items():
        for sig, share in stats[genre].time_signatures.items():
            shares[sig] = shares.get(sig, 0.0) + weight / total * share
    return {sig for sig, share in shares.items() if share >= MIN_TIME_SIG_SHARE}


# ------------------------------------------------------------------------- a generated piece


def midi_facts(path: Path, steps_per_beat: int | None = None) -> PieceFacts:
    """The same facts read from a MIDI file (all tracks merged, as the tokenizer merges them):
    the check that generated pieces hold what the genres hold. With `steps_per_beat`, notes
    count as one onset when they round to one grid step (a played piece spreads a chord over
    a few ticks; the grid is where the model wrote it; a step divides the time signature's
    beat, as the tokenizer's do); without, when they start on one tick."""
    from midimix.midifile import load_score
    from midimix.performance import denominators

    score = load_score(path)
    tpq = int(score.ticks_per_quarter)
    facts = PieceFacts(
        tempos_bpm=[float(t.qpm) for t in score.tempos],
        time_signatures=[f"{s.numerator}/{s.denominator}" for s in score.time_signatures],
    )
    onsets: dict[float, list[int]] = {}
    for track in score.tracks:
        if track.is_drum:
            continue
        times = track.notes.numpy()["time"].astype("int64")
        per_quarter = (
            None if steps_per_beat is None else denominators(score, times) * steps_per_beat / 4
        )
        for k, note in enumerate(track.notes):
            onset = float(note.time)
            if per_quarter is not None:  # the grid point, in quarters: unique across grids
                onset = round(onset * per_quarter[k] / tpq) / per_quarter[k]
            onsets.setdefault(onset, []).append(int(note.pitch))
    for onset in sorted(onsets):
        pitches = onsets[onset]
        facts.notes_per_onset.append(len(pitches))
        facts.notes += len(pitches)
        facts.duplicates += len(pitches) - len(set(pitches))
        for pitch in pitches:
            facts.pitch_classes[pitch % 12] += 1
    return facts
