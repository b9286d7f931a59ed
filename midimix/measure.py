"""Sets of pieces measured against reference genres: the figures of `midimix evaluate`.

- features (midimix.features): one number per musical trait per piece, each defined in words;
- distances per feature between a generated set and each reference genre: |mean difference| /
  reference std (left out for a feature the reference holds constant), and the overlap area of
  the two histograms (1 = same distribution);
- for a set of one genre, its fidelity to that genre (midimix.fidelity): the distance against
  two halves of the reference, tempo in range, duplicate notes and stacks per onset;
- a genre classifier (midimix.classifier) trained on the reference pieces, with its
  cross-validated accuracy; it gives every generated piece P(genre), summed up per set as a
  mean with a Student-t 95% interval clipped to 0..1 (0..1 itself for a set of one piece).
Everything goes to out_dir: report.md, report.json (every figure), classifier.json and PNG
plots (midimix.report).
"""

from __future__ import annotations

import argparse
import errno
import functools
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from midimix.classifier import CLASSIFIER_FILE, GenreClassifier
from midimix.config import check_range, config_to_dict, parse_genre_paths, save_config
from midimix.errors import ConfigError, InputError
from midimix.features import FEATURE_DEFINITIONS, FEATURE_NAMES, feature_table
from midimix.fidelity import GenreLimits, genre_fidelity, limits_from_reference
from midimix.manifest import atomic_write_json, disk_full_error
from midimix.midifile import is_midi_name
from midimix.options import option

_MAX_REFERENCE = option(aliases=("--max-reference",))
_PIANO_ROLLS = option(aliases=("--piano-rolls",))


@dataclass
class EvaluateConfig:
    """How generated sets are measured against the reference genres."""

    max_reference_per_genre: int | None = field(default=300, metadata=_MAX_REFERENCE)  # random
    # subset of reference pieces per genre: CV accuracy is 1.0 at this size on the corpus, and
    # features take ~1.5 s per genre; none: all pieces
    cv_folds: int = 5  # stratified folds of the classifier's cross-validated accuracy, 2..20
    overlap_bins: int = 20  # histogram bins of the distribution overlap, 2..1000
    piano_rolls_per_set: int = field(default=3, metadata=_PIANO_ROLLS)  # piano-roll PNGs of the
    # first pieces of each set, 0..100
    plots: bool = True  # write PNG plots (matplotlib); --no-plots: JSON and Markdown only
    seed: int = 0  # random seed of the reference subset and the CV folds

    def __post_init__(self) -> None:
        if self.max_reference_per_genre is not None:
            check_range("max_reference_per_genre", self.max_reference_per_genre, 2)
        check_range("cv_folds", self.cv_folds, 2, 20)
        check_range("overlap_bins", self.overlap_bins, 2, 1000)
        check_range("piano_rolls_per_set", self.piano_rolls_per_set, 0, 100)


# ---------------------------------------------------------------------------------------
# Sets of pieces


def midi_files(path: Path) -> list[Path]:
    """A MIDI file itself, or the MIDI files under a folder (sorted, recursive)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(f"{path} does not exist; expected a folder of MIDI files or one file")
    return sorted(p for p in path.rglob("*") if is_midi_name(p))


def reference_sets(pairs: Sequence[str]) -> dict[str, list[Path]]:
    """['lofi=DIR', 'classical=DIR'] -> {genre: its MIDI files}."""
    return {g: midi_files(d) for g, d in parse_genre_paths(list(pairs)).items()}


def generated_sets(pairs: Sequence[str]) -> dict[str, list[Path]]:
    """['mix=out/', ...] -> {label: its MIDI files}."""
    out: dict[str, list[Path]] = {}
    for pair in pairs:
        label, sep, path = pair.partition("=")
        if not sep or not label or not path:
            raise ConfigError(
                f"expected --generated LABEL=PATH (for example mix=out/), got {pair!r}"
            )
        out[label.strip()] = midi_files(Path(path).expanduser())
    return out


def add_sets_arguments(parser: argparse.ArgumentParser, out_dir: Path) -> None:
    """--reference GENRE=PATH (repeated) and --out-dir: the inputs and output of evaluate and
    of its sweep, which no config holds."""
    parser.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="GENRE=PATH",
        help="reference MIDI of one genre (a folder); repeat for every genre",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=out_dir,
        metavar="DIR",
        help="folder for report.md, report.json, classifier.json and the PNGs "
        "(default: %(default)s)",
    )


def _subset(paths: list[Path], cap: int | None, seed: int) -> list[Path]:
    if cap is None or len(paths) <= cap:
        return paths
    return sorted(random.Random(seed).sample(paths, cap))


def _set_stats(table: np.ndarray) -> dict[str, Any]:
    return {
        "feature_means": dict(zip(FEATURE_NAMES, table.mean(axis=0).tolist(), strict=True)),
        "feature_stds": dict(zip(FEATURE_NAMES, table.std(axis=0).tolist(), strict=True)),
    }


# ---------------------------------------------------------------------------------------
# Distances and statistics


# A reference std below this share of the feature's size is rounding, not spread: a genre at
# one tempo (105 BPM, read as 104.99992 from the file's microseconds per beat) has a tempo std
# of 5e-15 from the float sums, and features in seconds go through symusic's float32 times
# (7 digits: a std of 2e-7 on a note density of 6 for pieces of one length); dividing by such
# stds gave effect sizes of 1e7 to 1e14 that swamped every real difference.
CONSTANT_RELATIVE_STD = 1e-6


def effect_size(generated: np.ndarray, reference: np.ndarray) -> float | None:
    """|mean difference| / reference std. A feature the reference holds constant has no
    scale to measure a difference in: 0.0 when the generated set matches it, None (left out of
    the mean effect size, shown as "n/a") when it differs; a floor on the std would instead
    give an arbitrary huge number that swamps every other feature."""
    generated_mean, reference_mean = float(generated.mean()), float(reference.mean())
    diff = abs(generated_mean - reference_mean)
    std = float(reference.std())
    rounding = CONSTANT_RELATIVE_STD * max(abs(generated_mean), abs(reference_mean), 1e-12)
    if std > rounding:
        return diff / std
    return 0.0 if diff <= rounding else None


def overlap(generated: np.ndarray, reference: np.ndarray, bins: int = 20) -> float:
    """Shared area of the two normalised histograms over their joint range (0..1)."""
    low = min(float(generated.min()), float(reference.min()))
    high = max(float(generated.max()), float(reference.max()))
    if high <= low:
        return 1.0  # both sets are one and the same value
    edges = np.linspace(low, high, bins + 1)
    p = np.histogram(generated, edges)[0] / len(generated)
    q = np.histogram(reference, edges)[0] / len(reference)
    return float(np.minimum(p, q).sum())


def distances(
    generated: np.ndarray, reference: np.ndarray, bins: int = 20
) -> dict[str, dict[str, float | None]]:
    """Per feature: effect_size and overlap between two feature tables."""
    return {
        name: {
            "effect_size": effect_size(generated[:, j], reference[:, j]),
            "overlap": overlap(generated[:, j], reference[:, j], bins),
        }
        for j, name in enumerate(FEATURE_NAMES)
    }


def summarize_distances(per_feature: Mapping[str, Mapping[str, float | None]]) -> dict[str, float]:
    effects = [v["effect_size"] for v in per_feature.values() if v["effect_size"] is not None]
    overlaps = [v["overlap"] for v in per_feature.values() if v["overlap"] is not None]
    return {
        "mean_effect_size": float(np.mean(effects)) if effects else float("nan"),
        "mean_overlap": float(np.mean(overlaps)) if overlaps else float("nan"),
    }


PROBABILITY = (0.0, 1.0)  # the range of P(genre): its intervals are clipped to it


def mean_ci95(
    values: Sequence[float], bounds: tuple[float, float] = (-math.inf, math.inf)
) -> tuple[float, float, float]:
    """(mean, low, high): Student-t 95% interval of the mean, clipped to `bounds` (the range
    the values can take: PROBABILITY for P(genre)). One value says nothing about the spread:
    its interval is the whole of `bounds`, not a point."""
    from scipy import stats

    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    low, high = bounds
    if len(arr) < 2:
        return mean, low, high
    half = float(stats.t.ppf(0.975, len(arr) - 1) * arr.std(ddof=1) / math.sqrt(len(arr)))
    return mean, max(mean - half, low), min(mean + half, high)


# ---------------------------------------------------------------------------------------
# The stage


def evaluate_sets(
    generated: Mapping[str, Sequence[Path]],
    reference: Mapping[str, Sequence[Path]],
    config: EvaluateConfig,
    *,
    single_genre: Mapping[str, str] | None = None,
    limits: Mapping[str, GenreLimits] | None = None,
    steps_per_beat: int | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(report, extra): the figures of `evaluate`, and what the plots draw from: the trained
    classifier and the feature tables with their paths
    ({"tables": {"reference"|"generated": {name: (paths, table)}}, "classifier": ...}).

    `single_genre` ({label: genre}; default: every set labelled with a reference genre's name)
    names the sets made of one genre, which also get the fidelity block (midimix.fidelity):
    against `limits[genre]` (a model's figures) or the reference pieces' own, with onsets
    counted on a grid of `steps_per_beat` (the model's) or on exact ticks."""
    if not reference:
        raise InputError("no reference sets: give --reference GENRE=DIR for each genre")
    if not generated:
        raise InputError("no generated sets: give --generated LABEL=DIR (or run `sweep`)")
    tables: dict[str, dict[str, tuple[list[Path], np.ndarray]]] = {"reference": {}}
    report: dict[str, Any] = {"features": FEATURE_DEFINITIONS, "config": config_to_dict(config)}
    report["reference"] = {}
    for genre, paths in reference.items():
        chosen = _subset(list(paths), config.max_reference_per_genre, config.seed)
        kept, table, skipped = feature_table(genre, chosen)
        tables["reference"][genre] = (kept, table)
        report["reference"][genre] = {
            "pieces": len(kept),
            "available": len(paths),
            "skipped": skipped,
            **_set_stats(table),
        }
    classifier = GenreClassifier(config.seed, config.cv_folds)
    classifier.fit_features({g: t for g, (_, t) in tables["reference"].items()})
    report["classifier"] = {
        "model": "StandardScaler + LogisticRegression (multinomial, C=1)",
        "genres": classifier.genres,
        "cv_accuracy": classifier.cv_accuracy,
        "cv_folds": min(config.cv_folds, *(r["pieces"] for r in report["reference"].values())),
        "pieces_per_genre": {g: r["pieces"] for g, r in report["reference"].items()},
    }
    tables["generated"] = {}
    report["generated"] = {}
    for label, paths in generated.items():
        kept, table, skipped = feature_table(label, list(paths))
        tables["generated"][label] = (kept, table)
        proba = classifier.proba_features(table)
        dist: dict[str, dict[str, Any]] = {}
        for genre, (_, ref_table) in tables["reference"].items():
            per_feature = distances(table, ref_table, config.overlap_bins)
            dist[genre] = {**summarize_distances(per_feature), "per_feature": per_feature}
        p_genre = {}
        for j, genre in enumerate(classifier.genres):
            mean, low, high = mean_ci95(proba[:, j].tolist(), PROBABILITY)
            p_genre[genre] = {"mean": mean, "ci95": [low, high]}
        report["generated"][label] = {
            "pieces": len(kept),
            "skipped": skipped,
            "p_genre": p_genre,
            "closest_genre": min(dist, key=lambda g: float(dist[g]["mean_effect_size"])),
            "distances": dist,
            "per_piece": [
                {"path": str(p), **dict(zip(classifier.genres, map(float, row), strict=True))}
                for p, row in zip(kept, proba, strict=True)
            ],
            **_set_stats(table),
        }
    if single_genre is None:
        single_genre = {label: label for label in generated if label in reference}
    report["fidelity"] = {}
    for label, genre in single_genre.items():
        kept, table = tables["generated"][label]
        ref_paths, ref_table = tables["reference"][genre]
        known = (limits or {}).get(genre) or limits_from_reference(ref_paths, steps_per_beat)
        report["fidelity"][label] = {
            "genre": genre,
            **genre_fidelity(kept, table, ref_table, known, functools.partial(
                mean_effect_size, bins=config.overlap_bins), steps_per_beat, config.seed),
        }  # fmt: skip
    return report, {"tables": tables, "classifier": classifier}


def mean_effect_size(generated: np.ndarray, reference: np.ndarray, bins: int = 20) -> float:
    """The distance of two feature tables: the mean effect size over the features."""
    return summarize_distances(distances(generated, reference, bins))["mean_effect_size"]


def write_outputs(
    report: dict[str, Any], extra: dict[str, Any], out_dir: Path, config: EvaluateConfig
) -> None:
    """report.json, report.md, classifier.json and (when config.plots) the PNGs."""
    from midimix.report import write_markdown, write_plots

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        extra["classifier"].save(out_dir / CLASSIFIER_FILE)
        report["plots"] = write_plots(report, extra, out_dir, config) if config.plots else []
        atomic_write_json(out_dir / "report.json", report)
        write_markdown(report, out_dir / "report.md")
    except OSError as error:  # matplotlib's full disk names no file: name the folder
        if error.errno in (errno.ENOSPC, errno.EDQUOT) and not error.filename:
            raise disk_full_error(out_dir) from error
        raise


def evaluate(
    generated: Mapping[str, Sequence[Path]],
    reference: Mapping[str, Sequence[Path]],
    out_dir: Path,
    config: EvaluateConfig,
) -> dict[str, Any]:
    """Measure every generated set against the reference genres; write the report into
    out_dir (report.md, report.json, classifier.json, PNGs, and the settings as
    evaluate.config.json) and return report.json's data."""
    report, extra = evaluate_sets(generated, reference, config)
    write_outputs(report, extra, out_dir, config)
    save_config(config, Path(out_dir), "evaluate")
    return report
