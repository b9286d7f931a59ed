"""Does a single-genre set hold what its genre holds? The fidelity block of `midimix evaluate`.

For a generated set of one genre (in `evaluate`: a set labelled with a reference genre's name,
`--generated lofi=out/lofi`; in the sweep: its single-genre points), against that genre's
reference pieces:

- distance: the mean effect size over the features (midimix.measure), set against the same
  distance between two random halves of the reference pieces (the ratio the issue's target
  reads: at most 2x), and against reference subsets of the generated set's size (a mean effect
  size grows as sets shrink, so a small set is also read against a null of its own size);
- tempo: the share of pieces whose every tempo lies in the genre's range (the model's training
  range when known, else the reference pieces' 5th-95th percentile);
- clean notes: duplicate notes (a pitch started twice on one onset) and the largest stack of
  notes on one onset, against the genre's 99th percentile (the model's, else the reference's).
  Onsets are counted on the model's grid when it is known (a played chord spreads over a few
  ticks), else on exact ticks.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from midimix.genre_stats import GenreStats, midi_facts, percentile

# the distance between two feature tables (midimix.measure's mean effect size)
Distance = Callable[[np.ndarray, np.ndarray], float]

SPLITS = 5  # random splits behind each null distance (their median)
TEMPO_TOLERANCE = 1.03  # tempo tokens sit on a ~11% grid: a bin just outside still counts


@dataclass(frozen=True)
class GenreLimits:
    """What a genre's pieces hold, from a model's genre statistics or from reference pieces."""

    tempo_low: float
    tempo_high: float
    onset_cap: int
    source: str  # "model" or "reference"


def limits_from_reference(paths: Sequence[Path], steps_per_beat: int | None) -> GenreLimits:
    """Tempo range (5th-95th percentile of the pieces' first tempos) and notes-per-onset cap
    (99th percentile) of reference pieces."""
    facts = [midi_facts(p, steps_per_beat) for p in paths]
    tempos = [f.tempos_bpm[0] for f in facts if f.tempos_bpm]
    onsets = [n for f in facts for n in f.notes_per_onset]
    return GenreLimits(
        tempo_low=percentile(tempos, 5.0) if tempos else 0.0,
        tempo_high=percentile(tempos, 95.0) if tempos else math.inf,
        onset_cap=max(1, math.ceil(percentile(onsets, 99.0))) if onsets else 1,
        source="reference",
    )


def limits_from_stats(stats: GenreStats) -> GenreLimits:
    """A model's stored figures of one genre (its training pieces)."""
    return GenreLimits(
        tempo_low=stats.tempo_bpm_p5 or 0.0,
        tempo_high=stats.tempo_bpm_p95 or math.inf,
        onset_cap=stats.onset_cap,
        source="model",
    )


def null_distance(reference: np.ndarray, k: int, seed: int, distance: Distance) -> float | None:
    """Median distance between k random reference pieces and the others (None: too few)."""
    if not 2 <= k <= len(reference) - 2:
        return None
    rng = random.Random(seed)
    values = []
    for _ in range(SPLITS):
        order = rng.sample(range(len(reference)), len(reference))
        values.append(distance(reference[order[:k]], reference[order[k:]]))
    return statistics.median(values)


def genre_fidelity(
    generated: Sequence[Path],
    generated_table: np.ndarray,
    reference_table: np.ndarray,
    limits: GenreLimits,
    distance_of: Distance,
    steps_per_beat: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The fidelity block of one single-genre set (module doc)."""
    distance = distance_of(generated_table, reference_table)
    halves = null_distance(reference_table, len(reference_table) // 2, seed, distance_of)
    same_size = null_distance(reference_table, len(generated_table), seed + 1, distance_of)
    facts = [midi_facts(p, steps_per_beat) for p in generated]
    low, high = limits.tempo_low / TEMPO_TOLERANCE, limits.tempo_high * TEMPO_TOLERANCE
    inside = [bool(f.tempos_bpm) and all(low <= t <= high for t in f.tempos_bpm) for f in facts]
    stacks = [max(f.notes_per_onset, default=0) for f in facts]
    return {
        "pieces": len(facts),
        "distance": distance,
        "half_vs_half": halves,
        "ratio_to_halves": None if not halves else distance / halves,
        "same_size_null": same_size,
        "ratio_to_same_size": None if not same_size else distance / same_size,
        "tempo_range_bpm": [limits.tempo_low, limits.tempo_high],
        "tempo_in_range": sum(inside) / len(inside) if inside else None,
        "notes": sum(f.notes for f in facts),
        "duplicate_notes": sum(f.duplicates for f in facts),
        "largest_stack": max(stacks, default=0),
        "onset_cap": limits.onset_cap,
        "pieces_over_cap": sum(s > limits.onset_cap for s in stacks),
        "limits_from": limits.source,
        "onsets_counted": "exact ticks" if steps_per_beat is None else f"{steps_per_beat} a beat",
    }


def describe(label: str, genre: str, block: dict[str, Any]) -> str:
    """One line of a fidelity block, for the command's summary and the Markdown report."""
    ratio = block["ratio_to_halves"]
    same = block["ratio_to_same_size"]
    tempo = block["tempo_in_range"]
    name = label if label == genre else f"{label} against {genre}"
    return (
        f"{name}: distance {block['distance']:.3f}"
        + (f", {ratio:.2f}x two halves of the reference" if ratio is not None else "")
        + (f", {same:.2f}x reference sets of its size" if same is not None else "")
        + (f"; tempo in range {tempo:.0%}" if tempo is not None else "")
        + f"; {block['duplicate_notes']} duplicate notes of {block['notes']}; largest stack "
        f"{block['largest_stack']} (cap {block['onset_cap']}, {block['pieces_over_cap']} over)"
    )
