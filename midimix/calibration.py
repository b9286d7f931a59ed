"""A calibration map per model: the asked weight is where the piece lands.

Mixing two genres' next-token distributions follows the more confident genre: a model whose
lo-fi is far more predictable than its classical sends a 50/50 mix to lo-fi. The sweep
measures, for weights u of one genre, the mean P(genre) the evaluation's classifier gives the
pieces. A logistic curve P(u) = lo + (hi - lo) * sigmoid(a + b u) is fitted through those
means (lo and hi are what the single genres reach), and inverted, so that asking for weight w
samples at the u where P(u) = w. The classifier is sure of most pieces, so each mean of 20
pieces is a share of near-0/1 values and moves by 0.1 or more between seeds; the logistic pools
every weight's pieces, where a line through the means followed each one's noise (on split
halves of three models' fitting sweeps it landed closer, 0.105/0.056/0.072 against
0.113/0.060/0.088). Too few weights or a curve that does not rise keep the line through the
means made non-decreasing (pool-adjacent-violators). Outside the range the model reaches (P(0)
> 0 or P(1) < 1) the map holds the end weight. The map is stored in the model folder's
midimix.json under "calibration", one entry per (genre, against, method).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from midimix.errors import InputError

META_FILE = "midimix.json"
META_KEY = "calibration"


def nondecreasing(values: Sequence[float], counts: Sequence[float] | None = None) -> list[float]:
    """The closest non-decreasing sequence in least squares (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, weight, length]
    for value, count in zip(values, counts or [1.0] * len(values), strict=True):
        blocks.append([float(value), float(count), 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, n2 = blocks.pop()
            m1, w1, n1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return [mean for mean, _, length in blocks for _ in range(int(length))]


def interpolate(x: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    """Piecewise-linear y(x) through the points, held flat beyond the ends."""
    if x <= xs[0]:
        return float(ys[0])
    for i in range(1, len(xs)):
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        if x <= x1:
            return float(y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0))
    return float(ys[-1])


@dataclass
class Calibration:
    genre: str  # the swept genre
    against: str  # the genre that gets 1 - weight
    method: str  # the mix method the sweep used
    weights: list[float]  # the weights sampled at, rising
    p_genre: list[float]  # P(genre) at each: the fitted curve, or the means made non-decreasing
    fitted: str = "interpolated"  # "logistic" (the fitted curve) or "interpolated" (the means)

    def sampling_weight(self, asked: float) -> float:
        """The weight to sample at so that P(genre) lands at `asked`."""
        xs, ys = self.p_genre, self.weights
        if asked <= xs[0]:
            return float(ys[0])
        if asked >= xs[-1]:
            return float(ys[-1])
        # on a flat stretch of P, the middle of the stretch
        lo = max(i for i, p in enumerate(xs) if p <= asked)
        hi = min(i for i, p in enumerate(xs) if p >= asked)
        if xs[hi] == xs[lo]:
            return float((ys[lo] + ys[hi]) / 2)
        return interpolate(asked, xs[lo : hi + 1], ys[lo : hi + 1])

    def applies_to(self, weights: Mapping[str, float], method: str) -> bool:
        named = {g for g, w in weights.items() if w > 0}
        return method == self.method and named <= {self.genre, self.against} and bool(named)

    def apply(self, weights: Mapping[str, float]) -> dict[str, float]:
        """Asked weights of the two genres -> the weights to sample at (sum 1)."""
        total = sum(weights.get(g, 0.0) for g in (self.genre, self.against)) or 1.0
        u = self.sampling_weight(weights.get(self.genre, 0.0) / total)
        return {**weights, self.genre: u, self.against: 1.0 - u}


CURVE_POINTS = 65  # the fitted curve is stored at this many weights (sixty-fourths of 0-1)
MIN_RISE = 0.05  # a curve whose ends differ by less than this cannot be inverted usefully


def fit(
    genre: str,
    against: str,
    method: str,
    points: Sequence[tuple[float, float]],
    counts: Sequence[float] | None = None,
) -> Calibration:
    """From sweep points (weight, mean P(genre)); `counts` are the pieces behind each mean."""
    ordered = sorted(points)
    if len(ordered) < 2:
        raise InputError("a calibration needs a sweep of at least two weights")
    weights = [w for w, _ in ordered]
    means = nondecreasing([p for _, p in ordered], counts)
    curve = logistic_curve(weights, [p for _, p in ordered], means[0], means[-1], counts)
    if curve is None:
        return Calibration(genre, against, method, weights, means)
    grid = np.linspace(weights[0], weights[-1], CURVE_POINTS)
    return Calibration(
        genre, against, method, [float(u) for u in grid], [float(p) for p in curve(grid)],
        "logistic",
    )  # fmt: skip


def logistic_curve(
    weights: Sequence[float],
    means: Sequence[float],
    low: float,
    high: float,
    counts: Sequence[float] | None = None,
) -> Callable[[np.ndarray], np.ndarray] | None:
    """P(u) = low + (high - low) sigmoid(a + b u), b >= 0, least squares through the means
    (each weighted by its pieces); None with fewer than four weights or ends too close."""
    if len(weights) < 4 or high - low < MIN_RISE:
        return None
    from scipy.optimize import least_squares  # only fitting needs it, not generation

    u, p = np.asarray(weights, float), np.asarray(means, float)
    scale = np.sqrt(np.asarray(counts, float)) if counts else np.ones_like(u)

    def at(params: Any, x: Any) -> Any:
        a, b = params
        return low + (high - low) / (1.0 + np.exp(-(a + b * x)))

    middle = float(np.interp((low + high) / 2, nondecreasing(list(p)), u))
    start = [-10.0 * middle, 10.0]  # steepness 10, centred where the means cross halfway
    found = least_squares(
        lambda q: scale * (at(q, u) - p), start, bounds=([-np.inf, 0.0], [np.inf, np.inf])
    )
    if not found.success or found.x[1] <= 0.0:
        return None
    return lambda x: at(found.x, x)


def fit_sweep(sweep: Mapping[str, Any]) -> list[Calibration]:
    """One map per method from a sweep's record (report.json's "sweep", raw weights)."""
    genre, against = sweep["genre"], sweep["against"]
    return [
        fit(genre, against, method, [(p["weight"], p["mean"]) for p in points],
            [p.get("pieces", sweep["pieces"]) for p in points])
        for method, points in sweep["methods"].items()
    ]  # fmt: skip


MIXED_WEIGHTS = (0.25, 0.5, 0.75)  # where the calibration error is read


def calibration_error(points: Sequence[tuple[float, float]]) -> float | None:
    """Mean |P(genre) - asked weight| at the asked weights 0.25, 0.5 and 0.75 (points are
    (asked weight, mean P)); a sweep without all three is read at every weight that mixes,
    0 < w < 1; None when none mixes. The single genres at 0 and 1 are left out: they land near
    0 and 1 whatever the mix does, and would dilute the figure."""
    at = {w: p for w, p in points}
    weights = (
        list(MIXED_WEIGHTS)
        if all(w in at for w in MIXED_WEIGHTS)
        else [w for w in at if 0.0 < w < 1.0]
    )
    return sum(abs(at[w] - w) for w in weights) / len(weights) if weights else None


def crossing(points: Sequence[tuple[float, float]], level: float = 0.5) -> float | None:
    """The asked weight at which the (interpolated) mean P(genre) first reaches `level`."""
    ordered = sorted(points)
    for (w0, p0), (w1, p1) in zip(ordered, ordered[1:], strict=False):
        if p0 <= level <= p1 and p1 > p0:
            return w0 + (w1 - w0) * (level - p0) / (p1 - p0)
    return None


def load(model_dir: Path) -> list[Calibration]:
    path = Path(model_dir) / META_FILE
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return from_meta(meta, str(path))


def from_meta(meta: Any, source: str = META_FILE) -> list[Calibration]:
    """The calibration maps in a model folder's record (midimix.json), already read."""
    entries: Any = meta.get(META_KEY, []) if isinstance(meta, dict) else []
    try:
        return [Calibration(**entry) for entry in entries]
    except TypeError as error:
        raise InputError(f"{source}: its calibration is unreadable ({error})") from None


def store(model_dir: Path, calibration: Calibration) -> Path:
    """Add (or replace) the entry for this (genre, against, method) in midimix.json."""
    from midimix.manifest import atomic_write_text

    path = Path(model_dir) / META_FILE
    meta = json.loads(path.read_text())
    key = (calibration.genre, calibration.against, calibration.method)
    kept = [e for e in meta.get(META_KEY, []) if (e["genre"], e["against"], e["method"]) != key]
    meta[META_KEY] = [*kept, asdict(calibration)]
    atomic_write_text(path, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return path


def calibrated(
    weights: Mapping[str, float], method: str, calibrations: Sequence[Calibration]
) -> dict[str, float]:
    """The weights to sample at: the first calibration that covers this pair and method, or
    the asked weights unchanged."""
    for calibration in calibrations:
        if calibration.applies_to(weights, method):
            return calibration.apply(weights)
    return dict(weights)
