"""Training chunks that start BOS, Genre_<g>; Genre_any replacement; the collator."""

from __future__ import annotations

import pytest
import torch
from symusic.core import NoteTick as Note
from symusic.core import ScoreTick as Score
from symusic.core import TempoTick as Tempo
from symusic.core import TrackTick as Track

from midimix.dataset import IGNORE_INDEX, TokenDataset, chunk_bounds, collate
from midimix.errors import ConfigError
from midimix.tokenizer import GenreTokenizer, TokenizeConfig


def scale_piece(bars: int, pitch0: int) -> Score:
    """One 8th-note scale step per half beat: 8 notes a bar."""
    score = Score(480)
    track = Track("piano", 0)
    for i in range(bars * 8):
        track.notes.append(Note(i * 240, 240, pitch0 + i % 12, 80))
    score.tracks.append(track)
    score.tempos.append(Tempo(0, 90.0))
    return score


@pytest.fixture(scope="module")
def tokenizer() -> GenreTokenizer:
    return GenreTokenizer.build(["classical", "lofi"], TokenizeConfig())


@pytest.fixture(scope="module")
def sequences(tokenizer: GenreTokenizer) -> list[tuple[str, list[int]]]:
    return [
        ("lofi", tokenizer.encode(scale_piece(6, 60))),
        ("classical", tokenizer.encode(scale_piece(2, 48))),
    ]


def test_chunk_bounds_cut_at_bar_lines_when_a_bar_fits() -> None:
    ids = list(range(20))
    assert chunk_bounds(ids, [0, 5, 10, 15], 12) == [(0, 10), (10, 20)]
    assert chunk_bounds(ids, [0, 15], 6) == [(0, 6), (6, 12), (12, 15), (15, 20)]
    assert chunk_bounds(ids, [], 50) == [(0, 20)]


def test_chunks_start_with_bos_and_genre_and_cover_the_piece(
    tokenizer: GenreTokenizer, sequences: list[tuple[str, list[int]]]
) -> None:
    max_len = 64
    data = TokenDataset(sequences, tokenizer, max_seq_len=max_len)
    lofi_len = len(sequences[0][1])
    assert lofi_len > max_len  # so the lo-fi piece is cut
    items = [data[i] for i in range(len(data))]
    bodies: dict[str, list[int]] = {"lofi": [], "classical": []}
    for item in items:
        ids = item["input_ids"].tolist()
        assert len(ids) <= max_len
        assert ids[:2] == [tokenizer.bos_id, tokenizer.genre_id(item["genre"])]
        assert ids[2] == tokenizer.bar_id  # every chunk starts at a bar line
        bodies[item["genre"]] += ids[2:]
    for genre, ids in sequences:
        assert bodies[genre] == [*ids, tokenizer.eos_id]  # nothing lost, EOS at the end


def test_any_prob_replaces_the_genre_deterministically_per_epoch(
    tokenizer: GenreTokenizer, sequences: list[tuple[str, list[int]]]
) -> None:
    data = TokenDataset(sequences * 100, tokenizer, max_seq_len=512, any_prob=0.3, seed=1)
    assert len(data) == 200

    def flags() -> list[bool]:
        return [data[i]["input_ids"][1].item() == tokenizer.any_id for i in range(len(data))]

    epoch0 = flags()
    assert flags() == epoch0  # same (seed, epoch, index): same choice
    assert 40 <= sum(epoch0) <= 80  # about 30 % of 200
    data.set_epoch(1)
    assert flags() != epoch0
    assert TokenDataset(sequences, tokenizer, max_seq_len=512)[0]["input_ids"][1].item() == (
        tokenizer.genre_id("lofi")
    )


def test_collate_pads_masks_and_ignores_padding_in_labels(tokenizer: GenreTokenizer) -> None:
    batch = [
        {"input_ids": torch.tensor([1, 3, 7, 8, 9]), "genre": "classical"},
        {"input_ids": torch.tensor([1, 4, 7]), "genre": "lofi"},
    ]
    out = collate(batch, pad_id=tokenizer.pad_id)
    assert out["input_ids"].tolist() == [[1, 3, 7, 8, 9], [1, 4, 7, 0, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert out["labels"].tolist() == [[1, 3, 7, 8, 9], [1, 4, 7, IGNORE_INDEX, IGNORE_INDEX]]
    assert out["input_ids"].dtype == torch.long


def test_bad_arguments_are_clear(
    tokenizer: GenreTokenizer, sequences: list[tuple[str, list[int]]]
) -> None:
    with pytest.raises(ConfigError, match="any_prob must be in"):
        TokenDataset(sequences, tokenizer, max_seq_len=64, any_prob=1.5)
    with pytest.raises(ConfigError, match="unknown genre 'jazz'"):
        TokenDataset([("jazz", [5, 6])], tokenizer, max_seq_len=64)
    with pytest.raises(ConfigError, match="empty batch"):
        collate([], pad_id=0)
