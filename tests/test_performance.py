"""The timing and dynamics the grid drops, fitted from a genre's pieces and played back onto
straight ones: known offsets, velocities and lengths in, the same out."""

from __future__ import annotations

import numpy as np
import pytest
from midi_fixtures import TPQ, make_score

from midimix import performance
from midimix.errors import InputError
from midimix.performance import GenrePerformance, fit, fit_genres, perform, robust_range

BINS = (15, 31, 47, 63, 79, 95, 111, 127)  # the default tokenizer's 8 velocity bins
SWING = 0.05  # beats: how late every second sixteenth of the "played" pieces is


def played_piece(bars: int = 4, swing: float = SWING) -> object:
    """Sixteenths whose second and fourth come `swing` beats late, a bass 0.01 beat behind
    each beat's chord, velocities 70 (the chord: bin 63), 72 (the bass) and 74 (the
    sixteenths: both bin 79), every note 0.2 beats long (the grid says 0.25)."""
    notes = []
    for beat in range(bars * 4):
        notes.append((beat + 0.01, 0.2, 36, 72))  # bass, laid back
        notes += [(beat, 0.2, p, 70) for p in (60, 64, 67)]  # chord together
        for k in (1, 2, 3):
            late = swing if k % 2 else 0.0
            notes.append((beat + k / 4 + late, 0.2, 72 + k, 74))
    return make_score(notes, qpm=80.0)


def straight_piece(bars: int = 2) -> object:
    """The same rhythm written on the grid, at bin velocity 79, a step long."""
    notes = []
    for beat in range(bars * 4):
        notes += [(beat, 0.25, p, 79) for p in (36, 60, 64, 67)]
        notes += [(beat + k / 4, 0.25, 72 + k, 79) for k in (1, 2, 3)]
    return make_score(notes, qpm=80.0)


@pytest.fixture(scope="module")
def played() -> GenrePerformance:
    fitted = fit_genres({"lofi": [played_piece(), played_piece()]}, 4, BINS)
    return fitted["lofi"]


def test_fit_reads_the_swing_the_lengths_and_the_velocities(played: GenrePerformance) -> None:
    assert played.pieces == 2 and played.notes == 2 * 16 * 7
    # median offset per position: on the beat 0 (3 chord notes on time, the bass 0.01 late)
    assert played.groove[0] == [0.0] * 21
    assert played.groove[1] == pytest.approx([SWING] * 21, abs=1e-4)
    assert played.groove[2] == [0.0] * 21
    assert played.groove[3] == pytest.approx([SWING] * 21, abs=1e-4)
    # a beat's onset as played, lowest pitch first: the bass late, the chord on time
    assert played.spreads["4"][0] == pytest.approx([0.01, 0.0, 0.0, 0.0], abs=1 / TPQ)
    assert played.durations["1"] == pytest.approx([0.2] * 21, abs=1e-3)
    assert played.velocities["63"] == [70.0] * 21  # 70 rounds to 63
    seventy_nine = played.velocities["79"]  # a quarter 72, three quarters 74
    assert seventy_nine[0] == 72.0 and seventy_nine[10] == seventy_nine[-1] == 74.0
    assert all(72.0 <= v <= 74.0 for v in seventy_nine)


def test_perform_plays_a_straight_piece_as_the_genre_plays(played: GenrePerformance) -> None:
    score = perform(straight_piece(), {"lofi": played}, [{"lofi": 1.0}], seed=0)
    tpq = int(score.ticks_per_quarter)
    notes = [(n.time / tpq, n.pitch, n.velocity, n.duration / tpq) for n in score.tracks[0].notes]
    assert len(notes) == 2 * 4 * 7
    for start, pitch, velocity, length in notes:
        position = round(start * 4) % 4
        offset = start - round(start * 4) / 4
        if pitch == 36:
            assert offset == pytest.approx(0.01, abs=1 / tpq)  # the bass lays back
        elif position in (1, 3):
            assert offset == pytest.approx(SWING, abs=1 / tpq)  # second sixteenths swing
        else:
            assert offset == pytest.approx(0.0, abs=1 / tpq)
        assert length == pytest.approx(0.2, abs=1 / tpq)
        assert velocity in (72, 73, 74)  # bin 79 as the genre played it


def test_perform_is_seeded_and_keeps_every_note_in_its_grid_step(
    played: GenrePerformance,
) -> None:
    wide = GenrePerformance(**{**played.__dict__, "groove": [[-0.3, 0.3] * 10 + [0.3]] * 4})
    first = perform(straight_piece(), {"lofi": wide}, [{"lofi": 1.0}], seed=4)
    again = perform(straight_piece(), {"lofi": wide}, [{"lofi": 1.0}], seed=4)
    assert list(first.tracks[0].notes) == list(again.tracks[0].notes)
    source = sorted(round(n.time * 4 / TPQ) for n in straight_piece().tracks[0].notes)
    tpq = int(first.ticks_per_quarter)
    steps = sorted(round(n.time * 4 / tpq) for n in first.tracks[0].notes)
    assert steps == source  # a 0.3-beat offset is held inside its 0.25-beat step


def test_a_mix_plays_between_the_genres_and_a_schedule_bar_by_bar(
    played: GenrePerformance,
) -> None:
    straight = GenrePerformance(**{**played.__dict__, "groove": [[0.0] * 21] * 4})
    genres = {"lofi": played, "classical": straight}

    def swing_of(score: object, bar: int) -> float:
        tpq = int(score.ticks_per_quarter)  # type: ignore[attr-defined]
        offsets = [
            n.time / tpq - round(n.time * 4 / tpq) / 4
            for n in score.tracks[0].notes  # type: ignore[attr-defined]
            if n.pitch == 73 and bar * 4 <= n.time / tpq < bar * 4 + 4
        ]
        return float(np.mean(offsets))

    half = perform(straight_piece(), genres, [{"lofi": 0.5, "classical": 0.5}], seed=1)
    assert swing_of(half, 0) == pytest.approx(SWING / 2, abs=1 / 480)
    moving = perform(straight_piece(), genres, [{"lofi": 1.0}, {"classical": 1.0}], seed=1)
    assert swing_of(moving, 0) == pytest.approx(SWING, abs=1 / 480)
    assert swing_of(moving, 1) == pytest.approx(0.0, abs=1 / 480)
    # a genre without a performance plays as written
    alone = perform(straight_piece(), genres, [{"jazz": 1.0}], seed=1)
    assert swing_of(alone, 0) == 0.0


def test_rhythms_the_grid_cannot_write_are_not_played_at_random() -> None:
    """A classical triplet lands a third of a step off: a genre otherwise exact keeps only
    its exact values (and offsets under 0.02 beat, never a written rhythm), so its pieces stay
    on the grid."""
    offsets = [0.0] * 200 + [1 / 12] * 9 + [-1 / 12] * 3
    low, high = robust_range(offsets)
    assert low == pytest.approx(-0.02, abs=1e-6) and high == pytest.approx(0.02, abs=1e-6)
    jitter = list(np.random.default_rng(0).normal(0.0, 0.01, 2000))
    low, high = robust_range(jitter)
    assert low == pytest.approx(-0.03, abs=0.003) and high == pytest.approx(0.03, abs=0.003)
    triplets = [(beat + k / 3, 1 / 3, 60 + k, 64) for beat in range(4) for k in range(3)]
    exact = [(beat + 4 + k / 4, 0.25, 60 + k, 64) for beat in range(40) for k in range(4)]
    genre = fit([performance.piece_timing(make_score(triplets + exact), 4, BINS)], 4)
    assert genre is not None
    assert {v for spread in genre.spreads["1"] for v in spread} == {0.0}
    assert all(q == [0.0] * 21 for q in genre.groove)
    assert genre.durations["1"] == [0.25] * 21  # a triplet's third of a beat is not kept


def test_the_performance_round_trips_through_a_model_record(played: GenrePerformance) -> None:
    meta = {performance.META_KEY: performance.to_dict({"lofi": played})}
    assert performance.from_meta(meta) == {"lofi": played}
    assert performance.from_meta({}) == {}
    with pytest.raises(InputError, match="not a readable set"):
        performance.from_meta({performance.META_KEY: {"lofi": {"pieces": 1}}})
