"""The calibration map: asked weight -> the weight to sample at, so the piece lands where
asked, on the sweep figures of an over-confident model and of a shy one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from midimix.calibration import (
    Calibration,
    calibrated,
    calibration_error,
    crossing,
    fit,
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
def test_the_map_inverts_the_measured_curve(curve: list[float]) -> None:
    cal = fit("lofi", "classical", "logits", list(zip(WEIGHTS, curve, strict=True)))
    for asked in (0.2, 0.35, 0.5, 0.65, 0.8):
        u = cal.sampling_weight(asked)
        assert 0.0 <= u <= 1.0
        if curve[0] <= asked <= curve[-1]:  # inside what the model reaches: lands on it
            assert interpolate(u, WEIGHTS, curve) == pytest.approx(asked)
    # the map rises with the asked weight
    us = [cal.sampling_weight(a / 20) for a in range(21)]
    assert us == sorted(us)


def test_over_confident_half_half_samples_below_half() -> None:
    cal = fit("lofi", "classical", "logits", list(zip(WEIGHTS, OVER_CONFIDENT, strict=True)))
    assert cal.sampling_weight(0.5) == pytest.approx(0.25 + 0.25 * 0.38 / 0.57)
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
