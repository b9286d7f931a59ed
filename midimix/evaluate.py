"""Evaluate: where generated pieces sit between the genres, and how close each is to real music.

    python -m midimix.evaluate --generated mix=out/ --reference lofi=data/corpus/lofi \\
        --reference classical=data/corpus/classical --out-dir out/report
    python -m midimix.evaluate sweep --model runs/x/best --reference lofi=... \\
        --reference classical=... --pieces 20 --weights 0,0.25,0.5,0.75,1 --methods logits

- features (midimix.features): one number per musical trait per piece, each defined in words;
- distances per feature between a generated set and each reference genre: |mean difference| /
  reference std, and the overlap area of the two histograms (1 = same distribution);
- a genre classifier (StandardScaler + LogisticRegression) trained on the reference pieces,
  with its cross-validated accuracy; it gives every generated piece P(genre);
- `sweep` generates N pieces per weight of one genre (the other gets 1 - w) and per mixing
  method, and plots mean P(genre) against the weight with 95% confidence intervals;
- model figures: validation NLL per genre per token and per note, and genre sensitivity.
Everything goes to out_dir: report.md, report.json (every figure) and PNG plots.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from midimix.config import OUT_DIR, check_range, config_to_dict, parse_genre_paths
from midimix.errors import ConfigError, InputError, ItemError, MidimixError, cli_errors
from midimix.features import FEATURE_DEFINITIONS, FEATURE_NAMES, extract_features
from midimix.manifest import atomic_write_json

MIDI_SUFFIXES = (".mid", ".midi")
CLASSIFIER_FILE = "classifier.json"


@dataclass
class EvaluateConfig:
    max_reference_per_genre: int | None = 300  # random subset per genre: CV accuracy is 1.0 at
    # this size on the corpus, and features take ~1.5 s per genre; None: all pieces
    cv_folds: int = 5  # stratified folds of the cross-validated accuracy
    overlap_bins: int = 20  # histogram bins of the distribution overlap
    piano_rolls_per_set: int = 3  # piano-roll PNGs of the first pieces of each set
    plots: bool = True  # write PNG plots (matplotlib)
    seed: int = 0  # picks the reference subset and the CV folds

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
    return sorted(p for p in path.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES)


def feature_table(name: str, paths: Sequence[Path]) -> tuple[list[Path], np.ndarray, list[str]]:
    """(paths measured, features (pieces, FEATURE_NAMES), reasons for the skipped files).
    A set with no measurable piece is an InputError."""
    if not paths:
        raise InputError(f"set {name!r} has no MIDI files (.mid/.midi); give a folder with some")
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


# ---------------------------------------------------------------------------------------
# Distances


def effect_size(generated: np.ndarray, reference: np.ndarray) -> float | None:
    """|mean difference| / reference std; None when the reference does not vary but differs."""
    diff = abs(float(generated.mean()) - float(reference.mean()))
    std = float(reference.std())
    if std > 0:
        return diff / std
    return 0.0 if diff == 0 else None


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


# ---------------------------------------------------------------------------------------
# Genre classifier


class GenreClassifier:
    """StandardScaler + multinomial LogisticRegression over the features of reference pieces.

    Saved as plain JSON (scaler means/scales, coefficients, intercepts): nothing is pickled,
    so a saved classifier is safe to load from anywhere."""

    def __init__(self, seed: int = 0, cv_folds: int = 5) -> None:
        self.seed, self.cv_folds = seed, cv_folds
        self.genres: list[str] = []
        self.cv_accuracy = float("nan")
        self.pipeline: Any = None

    def _new_pipeline(self) -> Any:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))

    def fit(self, reference: Mapping[str, Sequence[Path]]) -> float:
        """Train on {genre: MIDI paths}; returns the cross-validated accuracy."""
        return self.fit_features({g: feature_table(g, list(p))[1] for g, p in reference.items()})

    def fit_features(self, tables: Mapping[str, np.ndarray]) -> float:
        from sklearn.model_selection import StratifiedKFold, cross_val_score

        if len(tables) < 2:
            raise InputError(
                f"the classifier needs reference pieces of at least two genres, got "
                f"{list(tables) or 'none'}; add --reference GENRE=DIR for each genre"
            )
        self.genres = sorted(tables)
        x = np.concatenate([tables[g] for g in self.genres])
        y = np.concatenate([np.full(len(tables[g]), i) for i, g in enumerate(self.genres)])
        folds = min(self.cv_folds, *(len(tables[g]) for g in self.genres))
        if folds < 2:
            raise InputError(
                f"every reference genre needs at least 2 pieces for cross-validation, got "
                f"{ {g: len(t) for g, t in tables.items()} }; add more reference pieces"
            )
        cv = StratifiedKFold(folds, shuffle=True, random_state=self.seed)
        self.cv_accuracy = float(cross_val_score(self._new_pipeline(), x, y, cv=cv).mean())
        self.pipeline = self._new_pipeline().fit(x, y)
        return self.cv_accuracy

    def proba_features(self, table: np.ndarray) -> np.ndarray:
        """(pieces, genres) probabilities, columns in `self.genres` order."""
        if self.pipeline is None:
            raise MidimixError("the genre classifier is not trained: call fit() or load() first")
        return np.asarray(self.pipeline.predict_proba(table))

    def predict_proba(self, paths: Sequence[Path]) -> list[dict[str, float]]:
        """P(genre) per MIDI file (a file that cannot be measured is an ItemError)."""
        table = np.asarray([[extract_features(p)[k] for k in FEATURE_NAMES] for p in paths])
        return [
            dict(zip(self.genres, map(float, row), strict=True))
            for row in self.proba_features(table)
        ]

    def save(self, path: Path) -> Path:
        scaler, logistic = self.pipeline[0], self.pipeline[-1]
        atomic_write_json(
            path,
            {
                "genres": self.genres,
                "features": list(FEATURE_NAMES),
                "cv_accuracy": self.cv_accuracy,
                "mean": scaler.mean_.tolist(),
                "scale": scaler.scale_.tolist(),
                "coef": logistic.coef_.tolist(),
                "intercept": logistic.intercept_.tolist(),
            },
        )
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> GenreClassifier:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            features, genres = data["features"], list(data["genres"])
            mean, scale = np.asarray(data["mean"]), np.asarray(data["scale"])
            coef, intercept = np.asarray(data["coef"]), np.asarray(data["intercept"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise InputError(f"{path} is not a saved genre classifier ({error})") from error
        if features != list(FEATURE_NAMES):
            raise InputError(f"{path} was trained on other features; train it again")
        out = cls()
        out.genres, out.cv_accuracy = genres, float(data.get("cv_accuracy", "nan"))
        out.pipeline = out._new_pipeline()
        scaler, logistic = out.pipeline[0], out.pipeline[-1]
        scaler.mean_, scaler.scale_, scaler.var_ = mean, scale, scale**2
        scaler.n_features_in_ = logistic.n_features_in_ = len(features)
        scaler.n_samples_seen_ = 1
        logistic.coef_, logistic.intercept_ = coef, intercept
        logistic.classes_ = np.arange(len(genres))
        return out


# ---------------------------------------------------------------------------------------
# Statistics


def mean_ci95(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high): Student-t 95% interval of the mean (zero width for one value)."""
    from scipy import stats

    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    if len(arr) < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.975, len(arr) - 1) * arr.std(ddof=1) / math.sqrt(len(arr)))
    return mean, mean - half, mean + half


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
# The stage


def evaluate_sets(
    generated: Mapping[str, Sequence[Path]],
    reference: Mapping[str, Sequence[Path]],
    config: EvaluateConfig,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(report, tables): the figures of `evaluate`, and the feature tables and paths behind
    them for the plots ({"reference"|"generated": {name: (paths, table)}})."""
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
            mean, low, high = mean_ci95(proba[:, j].tolist())
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
    return report, {"tables": tables, "classifier": classifier}


def write_outputs(
    report: dict[str, Any], extra: dict[str, Any], out_dir: Path, config: Any
) -> None:
    """report.json, report.md, classifier.json and (when config.plots) the PNGs."""
    from midimix.report import write_markdown, write_plots

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    extra["classifier"].save(out_dir / CLASSIFIER_FILE)
    report["plots"] = write_plots(report, extra, out_dir, config) if config.plots else []
    atomic_write_json(out_dir / "report.json", report)
    write_markdown(report, out_dir / "report.md")


def evaluate(
    generated: Mapping[str, Sequence[Path]],
    reference: Mapping[str, Sequence[Path]],
    out_dir: Path,
    config: EvaluateConfig,
) -> dict[str, Any]:
    """Measure every generated set against the reference genres; write the report into
    out_dir (report.md, report.json, classifier.json, PNGs) and return report.json's data."""
    report, extra = evaluate_sets(generated, reference, config)
    write_outputs(report, extra, out_dir, config)
    return report


# The sweep and the model figures live in midimix.sweep, which needs generation and torch.


def build_parser() -> argparse.ArgumentParser:
    d = EvaluateConfig()
    p = argparse.ArgumentParser(
        prog="midimix evaluate",
        description="Measure generated MIDI against reference MIDI of each genre: features, "
        "distances, a genre classifier's P(genre), plots and a Markdown/JSON report. "
        "`midimix evaluate sweep --help`: the genre-weight sweep of a model.",
    )
    p.add_argument(
        "--generated",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="a set of generated MIDI (folder or file), LABEL names it in the report; "
        "repeat for several sets",
    )
    add_common(p, d)
    return p


def add_common(
    p: argparse.ArgumentParser,
    d: EvaluateConfig,
    seed_help: str = "random seed of the reference subset and the CV folds",
) -> None:
    p.add_argument("--reference", action="append", default=[], metavar="GENRE=PATH",
                   help="reference MIDI of one genre (folder); give every genre")  # fmt: skip
    p.add_argument(
        "--out-dir",
        type=Path,
        default=OUT_DIR / "report",
        help="folder for report.md, report.json, classifier.json and the PNGs (%(default)s)",
    )
    p.add_argument(
        "--max-reference",
        type=int,
        default=d.max_reference_per_genre,
        help="random subset of reference pieces per genre (default %(default)s)",
    )
    p.add_argument(
        "--cv-folds",
        type=int,
        default=d.cv_folds,
        help="stratified folds of the classifier's cross-validated accuracy, 2..20 (%(default)s)",
    )
    p.add_argument(
        "--piano-rolls",
        type=int,
        default=d.piano_rolls_per_set,
        help="piano-roll PNGs of the first pieces of each set, 0..100 (%(default)s)",
    )
    p.add_argument("--no-plots", action="store_true", help="no PNG plots: JSON and Markdown only")
    p.add_argument(
        "--seed",
        type=int,
        default=d.seed,
        help=f"{seed_help} (%(default)s)",
    )


def config_from(args: argparse.Namespace) -> EvaluateConfig:
    return EvaluateConfig(
        max_reference_per_genre=args.max_reference,
        cv_folds=args.cv_folds,
        piano_rolls_per_set=args.piano_rolls,
        plots=not args.no_plots,
        seed=args.seed,
    )


def reference_sets(pairs: list[str]) -> dict[str, list[Path]]:
    return {g: midi_files(d) for g, d in parse_genre_paths(pairs).items()}


def generated_sets(pairs: list[str]) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for pair in pairs:
        label, sep, path = pair.partition("=")
        if not sep or not label or not path:
            raise ConfigError(
                f"expected --generated LABEL=PATH (for example mix=out/), got {pair!r}"
            )
        out[label.strip()] = midi_files(Path(path).expanduser())
    return out


def summary_line(report: dict[str, Any], out_dir: Path) -> str:
    parts = [f"classifier CV accuracy {report['classifier']['cv_accuracy']:.3f}"]
    for label, g in report.get("generated", {}).items():
        probs = ", ".join(f"P({k})={v['mean']:.2f}" for k, v in g["p_genre"].items())
        parts.append(f"{label}: {g['pieces']} pieces, {probs}")
    return f"evaluate: {'; '.join(parts)}; report in {out_dir / 'report.md'}"


@cli_errors
def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else list(argv)
    if args_list[:1] == ["sweep"]:
        from midimix.sweep import main as sweep_main

        return sweep_main(args_list[1:])
    args = build_parser().parse_args(args_list)
    config = config_from(args)
    report = evaluate(
        generated_sets(args.generated), reference_sets(args.reference), args.out_dir, config
    )
    print(summary_line(report, args.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
