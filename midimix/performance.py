"""What the token grid drops, fitted per genre and played back: timing between grid steps
(swing, laid-back hits, how a chord's notes spread) and dynamics between velocity bins.

The tokenizer rounds every onset to its grid (16ths by default) and every velocity to one of
a few bins, so a model can only write straight, evenly-struck notes. A genre's own pieces are
not like that: the rule-made lo-fi swings its second sixteenths and lays its bass back from
the chords; transcribed recordings drift around the beat. `fit` measures, on a genre's
training pieces, each note's offset from the grid step it rounds to and its velocity against
the bin it rounds to:

- groove: per position in the beat, the quantiles over pieces of a piece's median offset
  (one piece swings 0.56, another 0.64: a generated piece draws one place in that spread and
  keeps it, so its swing is steady);
- spreads: per number of notes on one grid onset, onsets as they were played: each note's
  offset from the piece's groove, lowest pitch first (bass late, chord together...);
- lengths: per note length on the grid, the quantiles of the played lengths that round to it;
- velocities: per velocity bin, the quantiles of the velocities that round to it.

Offsets and lengths further from the genre's usual than 3 robust standard deviations are
rhythms the grid cannot write (a triplet), not playing, and are left out (`robust_range`).

`perform` applies them to a decoded piece, bar by bar at that bar's genre weights: the groove,
length and velocity quantiles of the genres are blended at one drawn quantile (so half lo-fi
swings half as much), and each onset's spread comes from one genre drawn by the weights. Notes keep
their grid onset within half a step, so the notes per onset and duplicates counted on the grid
do not change. Fitted at tokenize time from the training split only (`performance.json` in
the token folder) and stored by training in the model folder's midimix.json.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from midimix.errors import InputError
from midimix.midifile import bar_start_ticks

META_KEY = "performance"  # its key in a model folder's midimix.json
FILE_NAME = "performance.json"  # its file in a token folder
QUANTILES = np.linspace(0.0, 1.0, 21)  # every 5th percentile
SPREADS_PER_SIZE = 200  # onsets kept per number of notes: enough to vary, small to store
MAX_SPREAD_SIZE = 16  # larger onsets reuse the spreads of this size
# beats: an offset this small is never a written rhythm (off a 16th grid the nearest written
# ones, triplet sixteenths and 64ths, lie 0.06-0.08 beat away), so it is always playing
NOTATION_FLOOR = 0.02
PLAY_TPQ = 480  # the decoded score's ticks per quarter are the grid's: offsets need finer ones

Score = Any  # symusic.Score: its type stubs know no attributes


@dataclass
class GenrePerformance:
    steps_per_beat: int  # the grid the offsets are measured from
    pieces: int
    notes: int
    # [position in the beat][quantile]: a piece's median offset from its grid step, in beats
    groove: list[list[float]]
    # "n": onsets of n notes, each n offsets in beats from the piece's groove, lowest pitch first
    spreads: dict[str, list[list[float]]]
    # "v": the quantiles of the played velocities that round to bin velocity v
    velocities: dict[str, list[float]]
    # "n": the quantiles of the played durations (beats) that round to n grid steps
    durations: dict[str, list[float]] = field(default_factory=dict)


# ------------------------------------------------------------------------------------- fit


def _rows(score: Score) -> np.ndarray:
    """(start tick, pitch, velocity, duration tick) of the pitched notes, by start then pitch."""
    parts = []
    for track in score.tracks:
        if track.is_drum:
            continue
        arr = track.notes.numpy()
        if len(arr["time"]):
            columns = [arr["time"], arr["pitch"], arr["velocity"], arr["duration"]]
            parts.append(np.stack(columns, axis=1))
    if not parts:
        return np.zeros((0, 4), np.int64)
    rows = np.concatenate(parts).astype(np.int64)
    return rows[np.lexsort((rows[:, 1], rows[:, 0]))]


def denominators(score: Score, ticks: np.ndarray) -> np.ndarray:
    """The time signature denominator in force at each tick (4 before the first). The
    tokenizer's grid steps divide the signature's beat, so a 6/8 bar's grid is twice as fine
    per quarter note as a 4/4 bar's: timing is fitted and played in x/4 bars only."""
    sigs = sorted((int(t.time), int(t.denominator)) for t in score.time_signatures)
    if not sigs:
        return np.full(len(ticks), 4, dtype=np.int64)
    times = np.array([t for t, _ in sigs])
    values = np.array([4] + [d for _, d in sigs])
    return values[np.searchsorted(times, ticks, side="right")]


@dataclass
class PieceTiming:
    """One piece against the grid: its groove, its onsets' spreads around it, and each
    note's velocity and duration beside the bins they round to."""

    groove: dict[int, float]  # position in the beat -> median offset, beats
    spreads: list[list[float]]
    velocity_pairs: list[tuple[int, int]]  # (bin velocity, played velocity)
    duration_pairs: list[tuple[int, float]]  # (grid steps, played duration in beats)


def piece_timing(score: Score, steps_per_beat: int, bins: Sequence[int]) -> PieceTiming:
    """One piece's notes (in its x/4 bars) against the grid steps, lengths and velocity bins
    they round to."""
    rows = _rows(score)
    tpq = int(score.ticks_per_quarter)
    rows = rows[denominators(score, rows[:, 0]) == 4]
    if not len(rows):
        return PieceTiming({}, [], [], [])
    beats = rows[:, 0] / tpq
    step = np.round(beats * steps_per_beat).astype(np.int64)
    offset = beats - step / steps_per_beat
    position = step % steps_per_beat
    groove = {int(p): float(np.median(offset[position == p])) for p in np.unique(position)}
    spreads = []
    for s in np.unique(step):
        at = np.flatnonzero(step == s)  # rows are sorted by pitch inside one tick, not a step
        at = at[np.argsort(rows[at, 1], kind="stable")]
        base = groove[int(s % steps_per_beat)]
        spreads.append([round(float(offset[i] - base), 4) for i in at])
    edges = np.asarray(bins, dtype=float)
    nearest = edges[np.abs(rows[:, 2][:, None] - edges[None, :]).argmin(axis=1)]
    velocities = [(int(b), int(v)) for b, v in zip(nearest, rows[:, 2], strict=True)]
    length = rows[:, 3] / tpq
    steps = np.maximum(np.round(length * steps_per_beat), 1).astype(np.int64)
    durations = [(int(n), round(float(d), 5)) for n, d in zip(steps, length, strict=True)]
    return PieceTiming(groove, spreads, velocities, durations)


def robust_range(values: Sequence[float]) -> tuple[float, float]:
    """The median plus or minus 3 robust standard deviations (1.4826 MAD), and at least
    NOTATION_FLOOR. Wider deviations are not how a genre plays its grid but rhythms the grid
    cannot write (a classical triplet lands a third of a step off, and lasts a third of a
    beat), and are not replayed at random; a genre played exactly as written (MAD 0) keeps
    its exact values and the small ones."""
    if not len(values):
        return (0.0, 0.0)
    array = np.asarray(values, dtype=float)
    center = float(np.median(array))
    half = max(3.0 * 1.4826 * float(np.median(np.abs(array - center))), NOTATION_FLOOR)
    return (center - half - 1e-9, center + half + 1e-9)


def _inside(values: Iterable[float], bounds: tuple[float, float]) -> bool:
    return all(bounds[0] <= v <= bounds[1] for v in values)


def fit(
    pieces: Iterable[PieceTiming], steps_per_beat: int, seed: int = 0
) -> GenrePerformance | None:
    """One genre's performance from its pieces' timings (None when they hold no notes)."""
    grooves: dict[int, list[float]] = {p: [] for p in range(steps_per_beat)}
    spreads: dict[int, list[list[float]]] = {}
    played: dict[int, list[int]] = {}
    lengths: dict[int, list[float]] = {}
    count = notes = 0
    for piece in pieces:
        if not piece.velocity_pairs:
            continue
        count += 1
        notes += len(piece.velocity_pairs)
        for position, value in piece.groove.items():
            grooves[position].append(value)
        for spread in piece.spreads:
            spreads.setdefault(min(len(spread), MAX_SPREAD_SIZE), []).append(spread)
        for bin_velocity, velocity in piece.velocity_pairs:
            played.setdefault(bin_velocity, []).append(velocity)
        for steps, beats in piece.duration_pairs:
            lengths.setdefault(steps, []).append(beats)
    if not count:
        return None
    bounds = robust_range([v for group in spreads.values() for s in group for v in s])
    rng = random.Random(seed)
    kept = {}
    for n, group in sorted(spreads.items()):
        usable = [s[:n] for s in group if _inside(s, bounds)]
        if usable:
            kept[str(n)] = rng.sample(usable, min(len(usable), SPREADS_PER_SIZE))

    def quantiles(values: Sequence[float], digits: int) -> list[float]:
        return [round(float(v), digits) for v in np.quantile(values, QUANTILES)]

    def groove(values: list[float]) -> list[float]:
        bounds = robust_range(values)
        return quantiles([v for v in values if _inside([v], bounds)] or [0.0], 5)

    def played_lengths(steps: int, beats: list[float]) -> list[float]:
        grid = steps / steps_per_beat  # the rhythm written; the deviation is the playing
        bounds = robust_range([b - grid for b in beats])
        return quantiles([b for b in beats if _inside([b - grid], bounds)], 4)

    return GenrePerformance(
        steps_per_beat=steps_per_beat,
        pieces=count,
        notes=notes,
        groove=[groove(grooves[p]) for p in range(steps_per_beat)],
        spreads=kept,
        velocities={str(b): quantiles(v, 2) for b, v in sorted(played.items())},
        durations={str(n): played_lengths(n, v) for n, v in sorted(lengths.items())},
    )


def fit_genres(
    scores: Mapping[str, Iterable[Score]], steps_per_beat: int, bins: Sequence[int]
) -> dict[str, GenrePerformance]:
    """{genre: performance} from each genre's training scores (as the tokenizer prepares
    them: tracks merged, drums dropped); genres without notes are left out."""
    out = {}
    for genre, pieces in sorted(scores.items()):
        timings = (piece_timing(score, steps_per_beat, bins) for score in pieces)
        fitted = fit(timings, steps_per_beat)
        if fitted is not None:
            out[genre] = fitted
    return out


def to_dict(performance: Mapping[str, GenrePerformance]) -> dict[str, Any]:
    return {genre: asdict(p) for genre, p in performance.items()}


def from_dict(data: Any, source: str = META_KEY) -> dict[str, GenrePerformance]:
    try:
        return {str(g): GenrePerformance(**values) for g, values in data.items()}
    except (ValueError, TypeError, AttributeError) as error:
        raise InputError(f"{source} is not a readable set of genre performances: {error}") from None


def from_meta(meta: Any) -> dict[str, GenrePerformance]:
    """The performances in a model folder's record ({} for a model without them)."""
    data = meta.get(META_KEY) if isinstance(meta, dict) else None
    return {} if data is None else from_dict(data, f"midimix.json: {META_KEY}")


# ------------------------------------------------------------------------------------ play


def _at(quantiles: Sequence[float] | np.ndarray, u: float) -> float:
    """The value at quantile u (0..1) of a stored quantile list, linearly between entries."""
    return float(np.interp(u, QUANTILES, quantiles))


class _Nearest:
    """A stored table's quantiles under the key nearest to a value (None for an empty table),
    each value looked up once: a piece asks for the same few bins and lengths again and again."""

    def __init__(self, table: Mapping[str, list[float]]) -> None:
        self.keys = np.array([float(k) for k in table])
        self.rows = [np.asarray(q, dtype=float) for q in table.values()]
        self.found: dict[float, np.ndarray | None] = {}

    def __call__(self, key: float) -> np.ndarray | None:
        if key not in self.found:
            nearest = int(np.abs(self.keys - key).argmin()) if len(self.keys) else None
            self.found[key] = None if nearest is None else self.rows[nearest]
        return self.found[key]


def perform(
    score: Score,
    performances: Mapping[str, GenrePerformance],
    weights_per_bar: Sequence[Mapping[str, float]],
    seed: int,
) -> Score:
    """A copy of a decoded score played with its genres' timing and dynamics (module doc).

    `weights_per_bar` are the genre weights of each bar (the last holds for any later bar);
    genres without a stored performance play as written. Same seed, same performance."""
    rng = np.random.default_rng(seed)
    out = score.resample(tpq=max(PLAY_TPQ, int(score.ticks_per_quarter)))
    known = [g for g in performances if any(row.get(g, 0) > 0 for row in weights_per_bar)]
    if not known or not weights_per_bar:
        return out
    steps = performances[known[0]].steps_per_beat
    if any(performances[g].steps_per_beat != steps for g in known):
        raise InputError("the genres' performances were measured on different grids")
    tpq = int(out.ticks_per_quarter)
    starts = bar_start_ticks(out, int(out.end()) * 2 // tpq + 2)  # bars are a quarter or more
    groove_u = rng.uniform()  # one place in each genre's groove spread for the whole piece

    def bar_of(tick: int) -> int:
        return max(0, bisect.bisect_right(starts, tick) - 1)

    def weights_at(bar: int) -> np.ndarray:
        """The bar's weights over the genres that have a performance, summing to 1."""
        row = weights_per_bar[min(bar, len(weights_per_bar) - 1)]
        w = np.array([max(row.get(g, 0.0), 0.0) for g in known])
        return w / w.sum() if w.sum() > 0 else w

    def play_velocity(note: Any, w: np.ndarray) -> None:
        velocity = _blend(velocity_tables, w, int(note.velocity), rng)
        if velocity is not None:
            note.velocity = int(min(127, max(1, round(velocity))))

    half_step = tpq // steps // 2 - 1  # a note never leaves its grid step
    velocity_tables = [_Nearest(performances[g].velocities) for g in known]
    duration_tables = [_Nearest(performances[g].durations) for g in known]
    for track in out.tracks:
        if track.is_drum or not len(track.notes):
            continue
        by_onset: dict[int, list[Any]] = {}
        for note in track.notes:
            by_onset.setdefault(int(note.time), []).append(note)
        ticks = np.array(sorted(by_onset), dtype=np.int64)
        on_quarters = (denominators(out, ticks) == 4).tolist()
        quarter_grid = dict(zip(ticks.tolist(), on_quarters, strict=True))
        for tick, group in by_onset.items():
            bar = bar_of(tick)
            w = weights_at(bar)
            if w.sum() <= 0:
                continue
            if not quarter_grid[tick]:  # a finer or coarser grid: dynamics only
                for note in group:
                    play_velocity(note, w)
                continue
            position = round((tick - starts[bar]) / tpq * steps) % steps
            groove = sum(wi * _at(performances[g].groove[position], groove_u)
                         for g, wi in zip(known, w, strict=True))  # fmt: skip
            source = performances[known[int(rng.choice(len(known), p=w))]]
            group.sort(key=lambda n: int(n.pitch))
            for note, extra in zip(group, _spread(source, len(group), rng), strict=True):
                shift = max(-half_step, min(round((groove + extra) * tpq), half_step))
                note.time = max(0, int(note.time) + shift)
                play_velocity(note, w)
                steps_long = max(1, round(int(note.duration) / tpq * steps))
                beats = _blend(duration_tables, w, steps_long, rng)
                if beats is not None:
                    note.duration = max(1, round(beats * tpq))
        track.notes.sort()
    return out


def _blend(
    tables: Sequence[_Nearest],
    weights: np.ndarray,
    key: float,
    rng: np.random.Generator,
) -> float | None:
    """A played value for a note whose grid value is `key` (a velocity bin, a duration in
    steps): each genre's quantiles of that key at one drawn quantile, weighted by the genres'
    weights (None when no genre stores any)."""
    u = rng.uniform()
    total = value = 0.0
    for table, weight in zip(tables, weights, strict=True):
        quantiles = table(key)
        if quantiles is not None and weight > 0:
            total += weight
            value += weight * _at(quantiles, u)
    return value / total if total > 0 else None


def _spread(genre: GenrePerformance, n: int, rng: np.random.Generator) -> list[float]:
    """Offsets for an onset of n notes (lowest pitch first): a stored onset of that size;
    past the largest stored size, its notes' median for the rest; none stored: together."""
    size = min(n, MAX_SPREAD_SIZE)
    sizes = sorted(int(s) for s in genre.spreads)
    if not sizes:
        return [0.0] * n
    if str(size) not in genre.spreads:
        size = max((s for s in sizes if s <= size), default=sizes[0])
    options = genre.spreads[str(size)]
    chosen = list(options[int(rng.integers(len(options)))])[:n]
    fill = float(np.median(chosen)) if chosen else 0.0
    return chosen + [fill] * (n - len(chosen))


def describe(genre: GenrePerformance) -> str:
    """One line: the median groove per position (in % of a beat) and the velocity spread."""
    groove = ", ".join(f"{100 * q[len(q) // 2]:+.1f}" for q in genre.groove)
    spread = [q[-2] - q[1] for q in genre.velocities.values()]  # 95th minus 5th percentile
    width = f"{sum(spread) / len(spread):.0f}" if spread else "0"
    return (
        f"{genre.pieces} pieces, median offset per position {groove} % of a beat, "
        f"velocity 5-95% spread {width} within a bin"
    )
