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
STEPS = 4  # the embedded model's grid: sixteenths


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
        facts = midi_facts(piece.midi_path, STEPS)  # onsets on the grid the model wrote
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
        stacks[limits] = max(max(midi_facts(p.midi_path, STEPS).notes_per_onset) for p in pieces)
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


def grid_offsets(path: Path) -> list[tuple[int, float, int]]:
    """(position in the beat, offset from the nearest sixteenth in beats, velocity) of each
    note of a piece in its x/4 bars (x/8 bars are written on a finer grid)."""
    import numpy as np

    from midimix.midifile import load_score
    from midimix.performance import denominators

    score = load_score(path)
    tpq = int(score.ticks_per_quarter)
    notes = list(score.tracks[0].notes)
    quarters = denominators(score, np.array([n.time for n in notes], dtype=np.int64)) == 4
    out = []
    for note in (n for n, keep in zip(notes, quarters, strict=True) if keep):
        step = round(note.time * STEPS / tpq)
        out.append((step % STEPS, note.time / tpq - step / STEPS, int(note.velocity)))
    return out


def test_lofi_pieces_swing_as_its_training_pieces_and_classical_stays_on_the_grid(
    tmp_path: Path,
) -> None:
    """The performance stored with the embedded model: lo-fi's second sixteenths come
    0.027-0.098 beat late (its training pieces' spread of swing), each piece steadily;
    classical pieces, written on the grid, stay there; without it every note is on the grid
    at one of the 8 bin velocities."""
    bins = {15, 31, 47, 63, 79, 95, 111, 127}
    for genre in ("lofi", "classical"):
        for played in (True, False):
            config = GenerateConfig(genre_mix={genre: 1.0}, bars=4, num_samples=3, seed=2,
                                    performance=played, render=False, progress=False,
                                    name=f"{genre}-{played}")  # fmt: skip
            for piece in generate(out_dir=tmp_path, config=config):
                assert json.loads(piece.provenance_path.read_text())["performed"] == played
                notes = grid_offsets(piece.midi_path)
                if not played:
                    assert {round(o, 6) for _, o, _ in notes} == {0.0}
                    assert {v for _, _, v in notes} <= bins
                    continue
                offbeat = [o for pos, o, _ in notes if pos in (1, 3)]
                if genre == "classical":
                    assert max(abs(o) for _, o, _ in notes) <= 0.005  # a tick or two at most
                elif len(offbeat) >= 4:
                    assert 0.02 <= sorted(offbeat)[len(offbeat) // 2] <= 0.1
                    assert {v for _, _, v in notes} - bins  # velocities between the bins
