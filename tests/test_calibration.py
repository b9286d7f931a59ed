"""The calibration map: asked weight -> the weight to sample at, so the piece lands where
asked, on the sweep figures of an over-confident model and of a shy one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from midimix.calibration import (
    Calibration,
    calibrated,
    calibration_error,
    crossing,
    fit,
    fit_sweep,
    interpolate,
    load,
    nondecreasing,
    store,
)

WEIGHTS = [0.0, 0.25, 0.5, 0.75, 1.0]
# P(lofi) measured on a model trained 46 times longer: a 50/50 mix lands on lo-fi
OVER_CONFIDENT = [0.01, 0.12, 0.69, 0.99, 1.00]
SHY = [0.04, 0.12, 0.37, 0.69, 0.83]  # the embedded model before calibration


def test_nondecreasing_pools_violators() -> None:
    assert nondecreasing([0.1, 0.3, 0.2, 0.5]) == pytest.approx([0.1, 0.25, 0.25, 0.5])
    assert nondecreasing([0.5, 0.4, 0.3]) == pytest.approx([0.4, 0.4, 0.4])


@pytest.mark.parametrize("curve", [OVER_CONFIDENT, SHY], ids=["over-confident", "shy"])
def test_the_map_inverts_the_fitted_curve(curve: list[float]) -> None:
    cal = fit("lofi", "classical", "logits", list(zip(WEIGHTS, curve, strict=True)))
    assert cal.fitted == "logistic"
    # the logistic passes within 0.025 of every measured mean of these sweeps
    for w, p in zip(WEIGHTS, curve, strict=True):
        assert interpolate(w, cal.weights, cal.p_genre) == pytest.approx(p, abs=0.025)
    for asked in (0.2, 0.35, 0.5, 0.65, 0.8):
        u = cal.sampling_weight(asked)
        assert 0.0 <= u <= 1.0
        if cal.p_genre[0] <= asked <= cal.p_genre[-1]:  # inside what the model reaches
            assert interpolate(u, cal.weights, cal.p_genre) == pytest.approx(asked)
    # the map rises with the asked weight
    us = [cal.sampling_weight(a / 20) for a in range(21)]
    assert us == sorted(us)


def test_few_weights_or_no_rise_keep_the_line_through_the_means() -> None:
    three = [(0.0, 0.01), (0.5, 0.69), (1.0, 1.0)]
    cal = fit("lofi", "classical", "logits", three)
    assert cal.fitted == "interpolated" and cal.p_genre == [0.01, 0.69, 1.0]
    assert cal.sampling_weight(0.35) == pytest.approx(0.5 * 0.34 / 0.68)
    flat = fit(
        "lofi", "classical", "logits", list(zip(WEIGHTS, [0.5, 0.52, 0.5, 0.51, 0.53], strict=True))
    )
    assert flat.fitted == "interpolated"


def test_the_logistic_lands_closer_than_the_line_on_noisy_sweeps() -> None:
    """A model whose pieces the classifier is sure of (each P is 0 or 1) with a steep true
    curve: 17 weights x 20 pieces, as the packaging sweeps. Over 40 sweeps the logistic map's
    asked 0.25/0.5/0.75 land nearer the truth than the line through the means."""
    rng = np.random.default_rng(7)
    weights = [k / 16 for k in range(17)]

    def truth(u: float) -> float:
        return float(1.0 / (1.0 + np.exp(-14.0 * (u - 0.4))))

    errors: dict[str, list[float]] = {"logistic": [], "interpolated": []}
    for _ in range(40):
        means = [float(rng.binomial(20, truth(u)) / 20) for u in weights]
        points = list(zip(weights, means, strict=True))
        line = Calibration("lofi", "classical", "logits", weights, nondecreasing(means))
        for cal in (fit("lofi", "classical", "logits", points), line):
            landed = [abs(truth(cal.sampling_weight(w)) - w) for w in (0.25, 0.5, 0.75)]
            errors[cal.fitted].append(float(np.mean(landed)))
    logistic, line = np.mean(errors["logistic"]), np.mean(errors["interpolated"])
    print(f"logistic {logistic:.3f}, line {line:.3f}")
    assert logistic < 0.05 and logistic < 0.85 * line


def test_over_confident_half_half_samples_below_half() -> None:
    cal = fit("lofi", "classical", "logits", list(zip(WEIGHTS, OVER_CONFIDENT, strict=True)))
    assert 0.40 < cal.sampling_weight(0.5) < 0.45  # the measured means cross 0.5 at 0.42
    mixed = calibrated({"lofi": 0.5, "classical": 0.5}, "logits", [cal])
    assert mixed["lofi"] == pytest.approx(cal.sampling_weight(0.5))
    assert mixed["lofi"] + mixed["classical"] == pytest.approx(1.0)
    # another method, or a genre the map does not cover: unchanged
    assert calibrated({"lofi": 0.5, "classical": 0.5}, "embedding", [cal])["lofi"] == 0.5
    assert calibrated({"lofi": 0.5, "jazz": 0.5}, "logits", [cal])["lofi"] == 0.5


def test_error_and_crossing_figures() -> None:
    points = list(zip(WEIGHTS, OVER_CONFIDENT, strict=True))
    # the mixing weights only (0.25, 0.5, 0.75): the single genres would dilute the figure
    assert calibration_error(points) == pytest.approx((0.13 + 0.19 + 0.24) / 3)
    assert calibration_error([(0.0, 0.1), (1.0, 0.8)]) is None
    # a finer sweep is read at the same three weights; one without them at every mixing weight
    finer = [*points, (0.125, 0.5), (0.875, 0.5)]
    assert calibration_error(finer) == pytest.approx((0.13 + 0.19 + 0.24) / 3)
    assert calibration_error([(0.0, 0.0), (0.4, 0.5), (0.6, 0.5), (1.0, 1.0)]) == pytest.approx(0.1)
    assert crossing(points) == pytest.approx(0.25 + 0.25 * 0.38 / 0.57)
    assert crossing([(0.0, 0.6), (1.0, 0.9)]) is None


def test_stored_in_the_model_folder(tmp_path: Path) -> None:
    (tmp_path / "midimix.json").write_text(json.dumps({"genres": ["classical", "lofi"]}))
    cal = Calibration("lofi", "classical", "logits", [0.0, 1.0], [0.1, 0.9])
    store(tmp_path, cal)
    store(tmp_path, cal)  # the same pair and method replaces its entry
    assert load(tmp_path) == [cal]
    assert json.loads((tmp_path / "midimix.json").read_text())["genres"] == ["classical", "lofi"]
    assert load(tmp_path / "nowhere") == []


def test_a_sweep_record_fits_the_same_map_and_the_script_refits_a_folder(tmp_path: Path) -> None:
    points = [{"weight": w, "mean": p, "ci95": [p, p], "pieces": 20}
              for w, p in zip(WEIGHTS, OVER_CONFIDENT, strict=True)]  # fmt: skip
    record = {"genre": "lofi", "against": "classical", "pieces": 20,
              "methods": {"logits": points}, "fitted_calibration": True}  # fmt: skip
    (cal,) = fit_sweep(record)
    measured = list(zip(WEIGHTS, OVER_CONFIDENT, strict=True))
    assert cal == fit("lofi", "classical", "logits", measured, [20] * len(WEIGHTS))
    # a record written before each point counted its pieces: the sweep's count stands in
    old = {**record, "methods": {"logits": [{k: v for k, v in p.items() if k != "pieces"}
                                            for p in points]}}  # fmt: skip
    assert fit_sweep(old) == [cal]

    model = tmp_path / "model"
    model.mkdir()
    (model / "midimix.json").write_text(json.dumps({"genres": ["classical", "lofi"]}))
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"sweep": record}))
    script = Path(__file__).resolve().parent.parent / "scripts" / "refit_calibration.py"
    done = subprocess.run([sys.executable, str(script), "--model", str(model), "--sweep",
                           str(report)], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert load(model) == [cal] and "0.5 -> 0.4" in done.stdout
    # a sweep sampled through a map cannot be refitted from
    report.write_text(json.dumps({"sweep": {**record, "fitted_calibration": False}}))
    refused = subprocess.run([sys.executable, str(script), "--model", str(model), "--sweep",
                              str(report)], capture_output=True, text=True)  # fmt: skip
    assert refused.returncode == 2 and "raw weights" in refused.stderr
