"""Pieces of the embedded model hold what its genres' training data holds: no duplicate notes,
no more notes per onset than the genres' 99th percentile, tempos and time signatures of the
genres in the mix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from midimix import GenerateConfig, generate
from midimix.generate import resolve_model_dir
from midimix.genre_stats import (
    load_stats,
    midi_facts,
    mix_onset_cap,
    mix_tempo_range,
    mix_time_signatures,
)

MIXES = {
    "lofi": {"lofi": 1.0},
    "classical": {"classical": 1.0},
    "lofi70": {"lofi": 0.7, "classical": 0.3},
}
GRID_TOLERANCE = 1.03  # tempo tokens sit on a grid: a bin within 2% of the range counts


@pytest.mark.parametrize("mix", list(MIXES), ids=list(MIXES))
def test_pieces_stay_inside_their_genres(tmp_path: Path, mix: str) -> None:
    stats = load_stats(resolve_model_dir(None))
    assert stats is not None and set(stats) == {"lofi", "classical"}
    weights = MIXES[mix]
    config = GenerateConfig(genre_mix=weights, bars=4, num_samples=4, seed=3, temperature=1.2)
    pieces = generate(out_dir=tmp_path, config=config)
    low, high = mix_tempo_range(stats, weights)
    cap = mix_onset_cap(stats, weights)
    signatures = mix_time_signatures(stats, weights)
    for piece in pieces:
        facts = midi_facts(piece.midi_path)
        assert facts.notes == piece.notes > 0
        assert facts.duplicates == 0
        assert max(facts.notes_per_onset) <= cap
        assert facts.tempos_bpm, "every piece states its tempo"
        assert all(low / GRID_TOLERANCE <= t <= high * GRID_TOLERANCE for t in facts.tempos_bpm)
        assert set(facts.time_signatures) <= signatures
        drawn = json.loads(piece.provenance_path.read_text())["tempo_from_genres"]
        if drawn is not None:  # the model stated no tempo: the MIDI has the drawn one alone
            assert facts.tempos_bpm == [pytest.approx(drawn, abs=0.01)]


def test_without_limits_the_stacks_grow(tmp_path: Path) -> None:
    """The cap is what keeps the onsets thin: the same sampling without it stacks more."""
    weights = {"lofi": 1.0}
    stats = load_stats(resolve_model_dir(None))
    assert stats is not None
    stacks = {}
    for limits in (True, False):
        config = GenerateConfig(
            genre_mix=weights, bars=4, num_samples=4, seed=3, genre_limits=limits,
            name=f"limits-{limits}",
        )  # fmt: skip
        pieces = generate(out_dir=tmp_path, config=config)
        stacks[limits] = max(max(midi_facts(p.midi_path).notes_per_onset) for p in pieces)
    assert stacks[True] <= mix_onset_cap(stats, weights) < stacks[False]


def test_genre_keys_put_classical_pieces_in_the_keys_of_its_training_pieces(
    tmp_path: Path,
) -> None:
    """Training transposes its pieces, so the model spreads classical over every key; with the
    genre keys the pieces land in the keys the classical training pieces use (their six
    commonest hold 69% of them), without them far less often."""
    from midimix.keys import estimate_key, key_label

    stats = load_stats(resolve_model_dir(None))
    assert stats is not None
    keys_by_share = sorted(stats["classical"].keys, key=lambda k: -stats["classical"].keys[k])
    common = set(keys_by_share[:6])
    assert sum(stats["classical"].keys[k] for k in common) > 0.6
    shares = {}
    for keys in (True, False):
        config = GenerateConfig(genre_mix={"classical": 1.0}, bars=4, num_samples=32, seed=5,
                                genre_keys=keys, name=f"keys-{keys}", render=False)  # fmt: skip
        pieces = generate(out_dir=tmp_path, config=config)
        found = [estimate_key(midi_facts(p.midi_path).pitch_classes) for p in pieces]
        labels = [key_label(*k) for k in found if k is not None]
        shares[keys] = sum(label in common for label in labels) / len(pieces)
        moved = [json.loads(p.provenance_path.read_text())["transposed_semitones"] for p in pieces]
        assert all(-6 <= m <= 5 for m in moved) and (any(moved) == keys)
    assert shares[True] >= 0.5 and shares[True] >= shares[False] + 0.2  # 0.69 and 0.31
