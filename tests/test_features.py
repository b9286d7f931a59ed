"""Features on hand-made MIDI whose values are known by construction."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from midi_fixtures import make_score, write
from symusic import Score

from midimix.errors import ItemError
from midimix.features import FEATURE_DEFINITIONS, FEATURE_NAMES, chord_quality, extract_features

C_MAJOR = (60, 62, 64, 65, 67, 69, 71)


def test_c_major_scale_in_quarters() -> None:
    f = extract_features(make_score([(i, 1.0, p, 80) for i, p in enumerate(C_MAJOR)]))
    assert f["pitch_range"] == 11
    assert f["pitch_mean"] == pytest.approx(sum(C_MAJOR) / 7)
    assert sum(f[f"pitch_class_{n}"] > 0 for n in ("C", "D", "E", "F", "G", "A", "B")) == 7
    assert f["pitch_class_C#"] == 0.0
    assert f["pitch_class_entropy"] == pytest.approx(math.log2(7))
    assert f["scale_consistency"] == pytest.approx(1.0)
    assert f["polyphony"] == pytest.approx(1.0)
    assert f["note_density"] == pytest.approx(7 / 3.5)  # 7 quarters at 120 BPM = 3.5 s
    assert f["ioi_mean_beats"] == pytest.approx(1.0)
    assert f["ioi_std_beats"] == pytest.approx(0.0)
    assert f["tempo_qpm"] == pytest.approx(120.0)
    assert f["velocity_mean"] == 80 and f["velocity_std"] == 0
    assert f["chord_rate"] == 0.0 and f["drum_fraction"] == 0.0


def test_chromatic_notes_lower_scale_consistency() -> None:
    f = extract_features(make_score([(i, 1.0, 60 + i, 80) for i in range(12)]))
    assert f["scale_consistency"] == pytest.approx(7 / 12)
    assert f["pitch_class_entropy"] == pytest.approx(math.log2(12))


def test_swing_ratio_of_swung_and_straight_eighths() -> None:
    swung = [(b + o, 1 / 3, 60, 80) for b in range(8) for o in (0.0, 2 / 3)]
    straight = [(b + o, 0.5, 60, 80) for b in range(8) for o in (0.0, 0.5)]
    assert extract_features(make_score(swung))["swing_ratio"] == pytest.approx(2.0, abs=0.01)
    assert extract_features(make_score(straight))["swing_ratio"] == pytest.approx(1.0)
    # Sixteenths swung 3:1 inside each half beat: the eighth ratio stays neutral.
    sixteenths = [(h / 2 + o, 0.1, 60, 80) for h in range(16) for o in (0.0, 0.375)]
    f = extract_features(make_score(sixteenths))
    assert f["swing_ratio_16th"] == pytest.approx(3.0, abs=0.02)


def test_sustained_triad_and_seventh_chords() -> None:
    triad = extract_features(make_score([(0, 4.0, p, 80) for p in (60, 64, 67)]))
    assert triad["polyphony"] == pytest.approx(3.0)
    assert triad["chord_rate"] == 1.0 and triad["chord_triad"] == 1.0
    assert triad["chord_seventh"] == 0.0
    maj7 = extract_features(make_score([(0, 4.0, p, 80) for p in (60, 64, 67, 71)]))
    assert maj7["chord_seventh"] == 1.0 and maj7["chord_triad"] == 0.0
    assert chord_quality(frozenset({0, 4, 7, 11, 2})) == "extended"  # maj9
    assert chord_quality(frozenset({9, 0, 4})) == "triad"  # A minor
    assert chord_quality(frozenset({0, 1, 2})) == "other"  # a cluster


def test_groove_drums_and_note_length() -> None:
    quarters = [(b * 4 + i, 1.0, 60, 80) for b in range(2) for i in range(4)]
    eighths = [(8 + i * 0.5, 0.5, 62, 80) for i in range(8)]
    drums = [(i, 0.25, 36, 100) for i in range(4)]
    f = extract_features(make_score(quarters + eighths, drums=drums))
    # Bars 1-2 alike, bar 3 adds 4 off-beat onsets of 16 steps: distances 0 and 4/16.
    assert f["groove_consistency"] == pytest.approx(1 - (0 + 4 / 16) / 2)
    assert f["drum_fraction"] == pytest.approx(4 / 20)
    assert f["note_length_beats"] == pytest.approx((8 * 1.0 + 8 * 0.5) / 16)


def test_every_feature_is_defined_in_order() -> None:
    f = extract_features(make_score([(0, 1.0, 60, 80)]))
    assert list(f) == list(FEATURE_NAMES) == list(FEATURE_DEFINITIONS)
    assert all(FEATURE_DEFINITIONS[k] for k in f)


def test_bad_files_are_item_errors(tmp_path: Path) -> None:
    text = tmp_path / "notes.mid"
    text.write_text("this is not a MIDI file\n")
    with pytest.raises(ItemError, match="not a MIDI file"):
        extract_features(text)
    empty = write(Score(480), tmp_path / "empty.mid")
    with pytest.raises(ItemError, match="no notes"):
        extract_features(empty)
    with pytest.raises(ItemError, match="does not exist"):
        extract_features(tmp_path / "missing.mid")
    corrupt = tmp_path / "corrupt.mid"
    corrupt.write_bytes(b"MThd\x00\x00\x00\x06garbage")
    with pytest.raises(ItemError, match="corrupt MIDI file"):
        extract_features(corrupt)


def test_chord_histogram_sweep_matches_a_scan_of_every_note() -> None:
    """The O(n log n) sweep gives exactly what scanning every note at every onset gives."""
    import numpy as np

    from midimix.features import chord_histogram, chord_quality

    rng = np.random.default_rng(0)
    for _ in range(10):
        n = int(rng.integers(5, 200))
        start = np.sort(rng.integers(0, 2000, n))
        notes = np.stack(
            [start, start + rng.integers(0, 400, n), rng.integers(30, 90, n), np.full(n, 80)], 1
        )
        onsets = np.unique(notes[:, 0])
        qualities = []
        for t in onsets:
            sounding = notes[(notes[:, 0] <= t) & (notes[:, 1] > t), 2]
            pcs = frozenset(int(p) % 12 for p in sounding)
            if len(pcs) >= 3:
                qualities.append(chord_quality(pcs))
        got = chord_histogram(notes)
        assert got["chord_rate"] == (len(qualities) / len(onsets) if qualities else 0.0)
        for quality in ("triad", "seventh", "extended", "other"):
            share = qualities.count(quality) / len(qualities) if qualities else 0.0
            assert got[f"chord_{quality}"] == share
