"""Keys: the estimate on known scales, the keys a genre's pieces use, and the shift that moves
a generated piece into one of them."""

from __future__ import annotations

import random

import pytest
import symusic

from midimix.genre_stats import compute_stats
from midimix.keys import estimate_key, key_label, mix_key_shares, shift_to_genre_key
from midimix.scores import transpose_in_range


def _histogram(pitches: list[int]) -> list[int]:
    out = [0] * 12
    for p in pitches:
        out[p % 12] += 1
    return out


C_MAJOR = [60, 62, 64, 65, 67, 69, 71, 72, 60, 64, 67, 60, 67, 64]  # scale and tonic triad
A_MINOR = [57, 59, 60, 62, 64, 65, 68, 69, 57, 60, 64, 57, 64, 60]  # harmonic minor, triad


def test_estimate_key_on_known_scales() -> None:
    assert estimate_key(_histogram(C_MAJOR)) == (0, "major")
    assert estimate_key(_histogram(A_MINOR)) == (9, "minor")
    assert estimate_key(_histogram([p + 7 for p in C_MAJOR])) == (7, "major")  # G major
    assert estimate_key(_histogram([p + 5 for p in A_MINOR])) == (2, "minor")  # D minor
    assert estimate_key(_histogram([60, 64, 67])) is None  # too few notes to tell
    assert estimate_key([1] * 12) is None  # no contrast between pitch classes


def test_shift_goes_to_a_key_of_the_same_mode_by_at_most_a_tritone() -> None:
    rng = random.Random(0)
    assert shift_to_genre_key(_histogram(C_MAJOR), {"G major": 1.0}, rng) == -5  # down a 4th
    assert shift_to_genre_key(_histogram(C_MAJOR), {"D major": 1.0}, rng) == 2
    assert shift_to_genre_key(_histogram(C_MAJOR), {"F# major": 1.0}, rng) == -6
    assert shift_to_genre_key(_histogram(A_MINOR), {"E minor": 0.5, "G major": 0.5}, rng) == -5
    # no key of its mode, or no key at all: the piece stays as sampled
    assert shift_to_genre_key(_histogram(A_MINOR), {"C major": 1.0}, rng) == 0
    assert shift_to_genre_key(_histogram([60, 64]), {"C major": 1.0}, rng) == 0
    shifts = [shift_to_genre_key(_histogram(C_MAJOR), {"C major": 0.75, "D major": 0.25}, rng)
              for _ in range(2000)]  # fmt: skip
    assert shifts.count(2) / len(shifts) == pytest.approx(0.25, abs=0.03)
    assert set(shifts) == {0, 2}


def test_mix_key_shares_weight_the_genres() -> None:
    shares = {"lofi": {"F major": 1.0}, "classical": {"C major": 0.5, "A minor": 0.5}}
    assert mix_key_shares(shares, {"lofi": 0.7, "classical": 0.3}) == pytest.approx(
        {"F major": 0.7, "C major": 0.15, "A minor": 0.15}
    )
    assert mix_key_shares(shares, {"lofi": 1.0, "classical": 0.0}) == {"F major": 1.0}


def test_genre_keys_come_from_the_pieces_without_their_transposed_copies() -> None:
    base = [[], ["Bar_None"], ["Position_0"], *[[f"Pitch_{p}"] for p in range(128)]]

    def ids(pitches: list[int]) -> list[int]:
        return [1, 2, *(3 + p for p in pitches)]

    pieces = [("classical", ids(C_MAJOR)), ("classical", ids([p + 7 for p in C_MAJOR]))]
    copies = [("classical", ids([p + s for p in C_MAJOR])) for s in (-2, -1, 1, 2)]
    stats = compute_stats(pieces + copies, base, originals=pieces)
    assert stats["classical"].keys == {"C major": 0.5, "G major": 0.5}
    assert stats["classical"].pieces == 6
    spread = compute_stats(pieces + copies, base)  # without originals: every copy's key
    assert len(spread["classical"].keys) == 6
    assert key_label(10, "major") in spread["classical"].keys  # B flat: C major - 2


def test_transpose_in_range_folds_notes_back_by_octaves() -> None:
    score = symusic.Score(480)
    piano = symusic.Track("piano", 0, False)
    drums = symusic.Track("drums", 0, True)
    for pitch in (21, 60, 106):
        piano.notes.append(symusic.Note(0, 480, pitch, 80))
    drums.notes.append(symusic.Note(0, 120, 36, 90))
    score.tracks.extend([piano, drums])
    up = transpose_in_range(score, 5)
    assert [n.pitch for n in up.tracks[0].notes] == [26, 65, 99]  # 111 -> 99
    down = transpose_in_range(score, -3)
    assert [n.pitch for n in down.tracks[0].notes] == [30, 57, 103]  # 18 -> 30
    assert [n.pitch for n in up.tracks[1].notes] == [36]  # drums stay
    assert [n.pitch for n in score.tracks[0].notes] == [21, 60, 106]  # a copy
