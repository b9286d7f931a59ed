"""NLL of the content two vocabularies share: fine tokens round to the coarse ones miditok
itself would write, the bound equals plain NLL when the vocabularies are one, and every drawn
fine piece rounds back to the content it was drawn for."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from midi_fixtures import TPQ, straight_piece, swung_piece

from midimix.errors import InputError
from midimix.model import build_model
from midimix.shared_content import content, fine_content_nll, finer_first, rounding
from midimix.tokenize import GenreTokenizer, TokenizeConfig
from midimix.validation import genre_losses

GENRES = ["classical", "lofi"]


@pytest.fixture(scope="module")
def coarse() -> GenreTokenizer:
    return GenreTokenizer.build(GENRES, TokenizeConfig())  # 4 positions a beat, 8 velocities


@pytest.fixture(scope="module")
def fine() -> GenreTokenizer:
    return GenreTokenizer.build(GENRES, TokenizeConfig(positions_per_beat=24, num_velocities=32))


def tiny(tokenizer: GenreTokenizer, seed: int = 0) -> Any:
    torch.manual_seed(seed)
    model = build_model(
        tokenizer.vocab_size, "tiny", tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id
    )
    return model.eval()


def humanised(seed: int) -> Any:
    """A straight piece with every onset moved by up to a 16th of a beat: notes of one
    chord land on different fine positions that round to one coarse position."""
    score = straight_piece(seed)
    rng = np.random.default_rng(seed)
    for note in score.tracks[0].notes:
        note.time = max(0, note.time + int(rng.integers(-TPQ // 16, TPQ // 16 + 1)))
    return score


def pieces(tokenizer: GenreTokenizer) -> list[tuple[str, list[int]]]:
    return [
        ("classical", tokenizer.encode(humanised(1))),
        ("lofi", tokenizer.encode(swung_piece(2))),
        ("classical", tokenizer.encode(straight_piece(3))),
    ]


def name(tokenizer: GenreTokenizer, id_: int) -> str:
    return tokenizer.base_tokens(id_)[0]


def test_fine_tokens_round_as_miditok_rounds(fine: GenreTokenizer, coarse: GenreTokenizer) -> None:
    table = rounding(fine, coarse)
    mapped = {name(fine, f): name(coarse, c) for f, c in table.items()}
    # 24 positions a beat onto 4: six fine positions per coarse one, halves rounding up
    assert mapped["Position_2"] == "Position_0"
    assert mapped["Position_3"] == "Position_1"
    assert mapped["Position_8"] == "Position_1"
    assert mapped["Position_9"] == "Position_2"
    assert sum(1 for c in mapped.values() if c == "Position_5") == 6
    assert mapped["Duration_0.6.24"] == "Duration_0.1.4"
    assert mapped["Duration_2.12.24"] == "Duration_2.2.4"
    assert mapped["Pitch_60"] == "Pitch_60" and mapped["TimeSig_6/8"] == "TimeSig_6/8"
    # every coarse position, velocity and duration has fine tokens that round to it
    kinds = ("Position_", "Velocity_", "Duration_")
    coarse_names = {t for t in coarse.miditok.vocab if t.startswith(kinds)}
    assert coarse_names <= set(mapped.values())


def test_one_vocabulary_gives_the_plain_nll(coarse: GenreTokenizer) -> None:
    """With nothing to round, every step allows one token: the bound is the NLL itself."""
    model = tiny(coarse)
    seqs = [(g, content(coarse, coarse, ids)) for g, ids in pieces(coarse)]
    bound, rejected = fine_content_nll(model, coarse, coarse, seqs, max_seq_len=64, draws=2)
    nll, _ = genre_losses(model, coarse, seqs, max_seq_len=64)
    plain = [float(nll[s, GENRES.index(g)]) for s, (g, _) in enumerate(seqs)]
    assert bound == pytest.approx(plain, rel=1e-4)
    assert rejected == 0


def test_drawn_fine_pieces_round_back_to_the_content(
    fine: GenreTokenizer, coarse: GenreTokenizer
) -> None:
    model = tiny(fine)
    fine_seqs = pieces(fine)
    shared = [(g, content(fine, coarse, ids)) for g, ids in fine_seqs]
    # the humanised piece has onsets that merge: fewer coarse positions than fine ones
    positions = [
        sum(name(t, i).startswith("Position_") for i in ids)
        for t, ids in ((fine, fine_seqs[0][1]), (coarse, shared[0][1]))
    ]
    assert positions[1] < positions[0]
    bound, rejected = fine_content_nll(model, fine, coarse, shared, max_seq_len=64, draws=3)
    assert rejected == 0  # each drawn piece decoded and encoded again gives the content
    again, _ = fine_content_nll(model, fine, coarse, shared, max_seq_len=64, draws=3)
    assert again == bound  # seeded
    assert all(b > 0 for b in bound)
    # an untrained model spreads its mass evenly: the content, with six fine positions and
    # four velocities behind each coarse one and fewer tokens, costs far less than the piece
    own, _ = genre_losses(model, fine, fine_seqs, max_seq_len=64)
    own_nll = [float(own[s, GENRES.index(g)]) for s, (g, _) in enumerate(fine_seqs)]
    assert sum(bound) < 0.9 * sum(own_nll)


def test_draws_that_do_not_round_back_weigh_nothing(
    fine: GenreTokenizer, coarse: GenreTokenizer
) -> None:
    """In a 2/4 bar between a 4/4 and a 6/8 one, miditok rounds fine positions otherwise than
    in the probe's bar: draws that land there do not give the content back and are left out
    of the sum, and the bound stays finite from the draws that do."""
    bars = [("4/4", 0), ("2/4", 6), ("6/8", 0)]
    tokens = []
    for signature, position in bars:
        tokens += ["Bar_None", f"TimeSig_{signature}", "Position_0", "Pitch_52", "Velocity_95",
                   "Duration_1.0.24", f"Position_{position or 12}", "Pitch_60", "Velocity_63",
                   "Duration_1.0.24"]  # fmt: skip
    ids = [fine.miditok.vocab[t] for t in tokens]
    shared = [("classical", content(fine, coarse, ids))]
    bound, rejected = fine_content_nll(tiny(fine), fine, coarse, shared, max_seq_len=64, draws=12)
    assert 0 < rejected < 12
    assert 0 < bound[0] < float("inf")


def test_refuses_vocabularies_it_cannot_relate(
    fine: GenreTokenizer, coarse: GenreTokenizer
) -> None:
    assert finer_first(coarse, fine, ("coarse", "fine")) == ("fine", "coarse")
    assert finer_first(fine, coarse, ("fine", "coarse")) == ("fine", "coarse")
    sixths = GenreTokenizer.build(GENRES, TokenizeConfig(positions_per_beat=6))
    with pytest.raises(InputError, match="neither vocabulary refines the other"):
        finer_first(sixths, coarse, ("sixths", "coarse"))  # 6 is not a multiple of 4
    other = GenreTokenizer.build(["jazz", "lofi"], TokenizeConfig())
    with pytest.raises(InputError, match="genres differ"):
        rounding(other, coarse)
    # content straight from the tokenizer keeps merged onsets in time order: refused
    raw = [("classical", coarse.encode(humanised(1)))]
    with pytest.raises(InputError, match="as `content` writes it"):
        fine_content_nll(tiny(coarse), coarse, coarse, raw, max_seq_len=64)
