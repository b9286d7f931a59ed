"""Keys: which key a piece is in, which keys a genre uses, and the shift that moves a
generated piece into one of them.

Training transposes every training piece by up to a few semitones (more data, same music), so
the model learns each genre in keys its pieces never use: Bach chorales on C, F, D and G come
out on B, E flat or A flat as often. Generation estimates the key of what it sampled and
shifts the piece, by at most a tritone, to a key of the same mode drawn from the keys the
genres in the mix use (their shares in the training pieces, stored with the genre
statistics). The notes, rhythm and voicing stay as sampled.

The key estimate is the Krumhansl-Schmuckler rule: the correlation of the piece's
pitch-class histogram with the Krumhansl-Kessler major and minor profiles in all 12 rotations.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

PITCH_CLASS_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
# Krumhansl and Kessler's probe-tone ratings (1982), tonic first
MAJOR_PROFILE = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
MINOR_PROFILE = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)
PROFILES = {"major": MAJOR_PROFILE, "minor": MINOR_PROFILE}
MIN_NOTES = 8  # fewer pitched notes say too little about a key to move a piece


def key_label(tonic: int, mode: str) -> str:
    return f"{PITCH_CLASS_NAMES[tonic % 12]} {mode}"


def parse_label(label: str) -> tuple[int, str]:
    name, _, mode = label.partition(" ")
    return PITCH_CLASS_NAMES.index(name), mode


def _correlation(a: Sequence[float], b: Sequence[float]) -> float:
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    da = [x - mean_a for x in a]
    db = [y - mean_b for y in b]
    norm = math.sqrt(sum(x * x for x in da) * sum(y * y for y in db))
    return sum(x * y for x, y in zip(da, db, strict=True)) / norm if norm else 0.0


def estimate_key(histogram: Sequence[float]) -> tuple[int, str] | None:
    """(tonic pitch class, "major" | "minor") of a 12-bin pitch-class histogram (counts or
    durations); None when it holds fewer than MIN_NOTES or no pitch-class contrast."""
    if len(histogram) != 12 or sum(histogram) < MIN_NOTES or len(set(histogram)) < 2:
        return None
    best: tuple[float, int, str] | None = None
    for mode, profile in PROFILES.items():
        for tonic in range(12):
            rotated = [profile[(pc - tonic) % 12] for pc in range(12)]
            score = _correlation(histogram, rotated)
            if best is None or score > best[0]:
                best = (score, tonic, mode)
    assert best is not None
    return best[1], best[2]


def key_shares(histograms: Sequence[Sequence[float]]) -> dict[str, float]:
    """{key label: share of the pieces in that key}, most common first (pieces whose key
    cannot be told are left out)."""
    keys = [k for k in map(estimate_key, histograms) if k is not None]
    counts: dict[str, int] = {}
    for tonic, mode in keys:
        label = key_label(tonic, mode)
        counts[label] = counts.get(label, 0) + 1
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return {label: round(n / len(keys), 4) for label, n in ordered}


def mix_key_shares(
    shares: Mapping[str, Mapping[str, float]], weights: Mapping[str, float]
) -> dict[str, float]:
    """The keys of a mix: each genre's key shares times its weight, summed (genres without
    key shares are left out)."""
    out: dict[str, float] = {}
    for genre, weight in weights.items():
        for label, share in shares.get(genre, {}).items():
            if weight > 0:
                out[label] = out.get(label, 0.0) + weight * share
    return out


def shift_to_genre_key(
    histogram: Sequence[float], shares: Mapping[str, float], rng: random.Random
) -> int:
    """Semitones (-6..5) that move a piece with this pitch-class histogram to a key of its own
    mode drawn from `shares` (0 when the piece's key cannot be told or the genres have no key
    of that mode)."""
    key = estimate_key(histogram)
    if key is None:
        return 0
    tonic, mode = key
    same_mode = [(parse_label(label)[0], share) for label, share in shares.items()
                 if parse_label(label)[1] == mode and share > 0]  # fmt: skip
    if not same_mode:
        return 0
    target = rng.choices([t for t, _ in same_mode], weights=[s for _, s in same_mode])[0]
    return (target - tonic + 6) % 12 - 6
