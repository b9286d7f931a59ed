"""Genre statistics read from token sequences, and the limits a mix takes from them."""

from __future__ import annotations

import json
import math

import pytest

from midimix.genre_stats import (
    GenreStats,
    compute_stats,
    draw_mix_tempo,
    load_stats,
    mix_onset_cap,
    mix_tempo_range,
    mix_time_signatures,
    percentile,
    piece_facts,
    stats_from_dict,
    stats_to_dict,
)


def test_piece_facts_counts_onsets_and_duplicates() -> None:
    tokens = [
        "Bar_None", "TimeSig_4/4", "Position_0", "Tempo_76.15",
        "Pitch_60", "Velocity_63", "Duration_1.0.4",
        "Pitch_64", "Velocity_63", "Duration_1.0.4",
        "Pitch_60", "Velocity_63", "Duration_1.0.4",  # a duplicate at the same onset
        "Position_4", "Pitch_67", "Velocity_63", "Duration_1.0.4",
        "Bar_None", "Position_0", "Pitch_67", "Velocity_63", "Duration_1.0.4",
    ]  # fmt: skip
    facts = piece_facts(tokens)
    assert facts.notes_per_onset == [3, 1, 1]
    assert (facts.notes, facts.duplicates) == (5, 1)
    assert facts.tempos_bpm == [76.15]
    assert facts.time_signatures == ["4/4"]


def test_percentile_matches_linear_interpolation() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    assert math.isnan(percentile([], 50))


def _stats(p5: float, p95: float, cap_p99: float, sigs: dict[str, float]) -> GenreStats:
    return GenreStats(10, 100, 0.0, cap_p99, int(cap_p99), p5, (p5 + p95) / 2, p95, sigs)


def test_mix_limits_follow_the_weights() -> None:
    stats = {
        "lofi": _stats(61.4, 84.8, 4.0, {"4/4": 1.0}),
        "classical": _stats(68.4, 144.9, 6.2, {"4/4": 0.6, "3/4": 0.39, "5/4": 0.01}),
    }
    assert mix_tempo_range(stats, {"lofi": 1.0, "classical": 0.0}) == (61.4, 84.8)
    low, high = mix_tempo_range(stats, {"lofi": 0.5, "classical": 0.5})
    assert (low, high) == pytest.approx((64.9, 114.85))
    assert mix_onset_cap(stats, {"lofi": 1.0, "classical": 0.0}) == 4
    assert mix_onset_cap(stats, {"lofi": 0.5, "classical": 0.5}) == 7
    assert mix_time_signatures(stats, {"lofi": 1.0}) == {"4/4"}
    assert mix_time_signatures(stats, {"classical": 1.0}) == {"4/4", "3/4"}


def test_stats_round_trip_through_the_model_folder(tmp_path) -> None:  # type: ignore[no-untyped-def]
    base = [[], ["Bar_None"], ["Position_0"], ["Pitch_60"], ["Pitch_64"], ["Tempo_68.4"]]
    sequences = [("lofi", [1, 2, 5, 3, 4]), ("lofi", [1, 2, 5, 3, 3]), ("classical", [1, 2, 3])]
    stats = compute_stats(sequences, base)
    assert sorted(stats) == ["classical", "lofi"]
    assert stats["lofi"].pieces == 2 and stats["lofi"].duplicate_share == 0.25
    assert stats["lofi"].tempo_bpm_p50 == 68.4
    assert stats_from_dict(json.loads(json.dumps(stats_to_dict(stats)))) == stats
    (tmp_path / "midimix.json").write_text(json.dumps({"genre_stats": stats_to_dict(stats)}))
    assert load_stats(tmp_path) == stats
    assert load_stats(tmp_path / "missing") is None


def test_a_piece_without_a_tempo_draws_one_of_its_genres() -> None:
    import random
    from collections import Counter

    lofi = _stats(61.44, 84.77, 7.0, {"4/4": 1.0})
    lofi.tempo_shares = {"61.44": 0.25, "84.77": 0.75}
    classical = _stats(94.37, 144.96, 5.0, {"4/4": 1.0})
    classical.tempo_shares = {"116.96": 0.9, "200": 0.1}  # 200: outside its 5th-95th range
    stats = {"lofi": lofi, "classical": classical}
    rng = random.Random(0)
    drawn = Counter(draw_mix_tempo(stats, {"lofi": 1.0}, rng) for _ in range(4000))
    assert set(drawn) == {61.44, 84.77}
    assert drawn[84.77] / 4000 == pytest.approx(0.75, abs=0.03)
    assert {draw_mix_tempo(stats, {"classical": 1.0}, rng) for _ in range(200)} == {116.96}
    # a mix draws inside its own range (77.9-114.9 BPM, the grid's nearest bins count)
    mixed = {draw_mix_tempo(stats, {"lofi": 0.5, "classical": 0.5}, rng) for _ in range(200)}
    assert mixed == {84.77, 116.96}
    lofi.tempo_shares = {}  # a model trained before the shares were stored: the median
    assert draw_mix_tempo(stats, {"lofi": 1.0}, rng) == lofi.tempo_bpm_p50
