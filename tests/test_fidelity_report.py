"""`midimix evaluate`'s fidelity block: a set of one genre against that genre's reference
pieces, with known distances, tempos, duplicates and stacks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from midi_fixtures import genre_sets, make_score, swung_piece, write

from midimix.evaluate import EvaluateConfig, main
from midimix.features import FEATURE_NAMES
from midimix.fidelity import GenreLimits, genre_fidelity, limits_from_reference, null_distance
from midimix.measure import evaluate_sets, mean_effect_size

FAST = EvaluateConfig(cv_folds=3, piano_rolls_per_set=0, plots=False)


def crowded_piece(tempo: float, doubled: bool) -> object:
    """Four beats of a 3-note chord at `tempo`; with `doubled`, its top note struck twice on
    the first beat (one duplicate) and a 6-note stack on the last."""
    notes = [(beat, 1.0, p, 70) for beat in range(4) for p in (60, 64, 67)]
    if doubled:
        notes.append((0.0, 0.5, 67, 60))
        notes += [(3.0, 1.0, p, 70) for p in (48, 52, 55)]
    return make_score(notes, qpm=tempo)


def test_nulls_and_distance_of_known_tables() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(200, len(FEATURE_NAMES)))
    # halves of one distribution are close; a set shifted by one std is about 1 away
    halves = null_distance(reference, 100, 0, mean_effect_size)
    assert halves is not None and 0.05 < halves < 0.25
    assert mean_effect_size(reference + 1.0, reference) == pytest.approx(1.0, abs=0.1)
    assert null_distance(reference[:3], 2, 0, mean_effect_size) is None  # too few to split


def test_duplicates_stacks_and_tempo_are_counted(tmp_path: Path) -> None:
    generated = [
        write(crowded_piece(80.0, doubled=True), tmp_path / "a.mid"),
        write(crowded_piece(150.0, doubled=False), tmp_path / "b.mid"),
    ]
    table = np.zeros((2, len(FEATURE_NAMES)))
    limits = GenreLimits(tempo_low=70.0, tempo_high=90.0, onset_cap=4, source="model")
    reference = np.zeros((10, len(FEATURE_NAMES)))
    block = genre_fidelity(generated, table, reference, limits, mean_effect_size)
    assert block["notes"] == 12 + 4 + 12 and block["duplicate_notes"] == 1
    assert block["largest_stack"] == 6 and block["pieces_over_cap"] == 1  # the 6-note beat
    assert block["tempo_in_range"] == 0.5  # 80 BPM inside 70-90, 150 outside
    assert block["onsets_counted"] == "exact ticks"


def test_limits_from_reference_pieces(tmp_path: Path) -> None:
    paths = [write(crowded_piece(60.0 + 2 * i, doubled=False), tmp_path / f"r{i}.mid")
             for i in range(21)]  # fmt: skip
    limits = limits_from_reference(paths, None)
    assert (limits.tempo_low, limits.tempo_high) == pytest.approx((62.0, 98.0))
    assert limits.onset_cap == 3 and limits.source == "reference"


def test_evaluate_gives_a_set_named_after_a_genre_its_fidelity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Held-out pieces of a genre are at about 1x its two halves' distance; the other genre's
    pieces far from it: the block tells them apart."""
    reference = genre_sets(tmp_path / "ref", 24)
    own = [write(swung_piece(100 + i), tmp_path / "lofi" / f"h{i}.mid") for i in range(12)]
    other = genre_sets(tmp_path / "other", 12, start_seed=200)["classical"]
    report, _ = evaluate_sets({"lofi": own, "wrong": other}, reference, FAST,
                              single_genre={"lofi": "lofi", "wrong": "lofi"})  # fmt: skip
    near, far = report["fidelity"]["lofi"], report["fidelity"]["wrong"]
    assert near["ratio_to_same_size"] < 2.0 < far["ratio_to_same_size"]
    assert near["duplicate_notes"] == 0 and near["tempo_in_range"] == 1.0
    assert far["tempo_in_range"] < 1.0  # classical at 90-130 BPM against lo-fi's 70-85
    code = main([
        "--generated", f"lofi={tmp_path / 'lofi'}", "--reference",
        f"lofi={tmp_path / 'ref' / 'lofi'}", "--reference",
        f"classical={tmp_path / 'ref' / 'classical'}", "--out-dir", str(tmp_path / "report"),
        "--no-plots", "--cv-folds", "3",
    ])  # fmt: skip
    assert code == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert line.startswith("  lofi: distance") and "0 duplicate notes of" in line
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert set(saved["fidelity"]) == {"lofi"} and saved["fidelity"]["lofi"]["genre"] == "lofi"
    assert (
        "## Single-genre sets against their genre"
        in (tmp_path / "report" / "report.md").read_text()
    )
