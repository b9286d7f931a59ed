"""The genre classifier of the evaluation: which genre a piece's features look like.

StandardScaler + multinomial LogisticRegression over the features of reference pieces
(midimix.features), with a stratified cross-validated accuracy. A trained classifier is saved
as plain JSON (scaler means and scales, coefficients, intercepts): nothing is pickled, so a
saved classifier is safe to load from anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from midimix.errors import InputError, MidimixError
from midimix.features import FEATURE_NAMES, extract_features, feature_table
from midimix.manifest import atomic_write_json

CLASSIFIER_FILE = "classifier.json"  # its name in an evaluation report's folder


class GenreClassifier:
    """P(genre) of a piece from its features; `fit` on reference pieces, or `load` a saved one."""

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
        """Train on {genre: feature table}; returns the cross-validated accuracy."""
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
