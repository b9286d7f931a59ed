"""Token sequences -> training examples: chunks that start `BOS, Genre_<g>`, and a collator.

A piece longer than a chunk is cut at bar lines where the tokenization has Bar tokens (REMI,
also after BPE: a merged token that holds a Bar starts with it), so every chunk starts the
way a generated piece does. A single bar longer than a chunk is cut where it must be.
The last chunk of a piece ends with EOS when it fits.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import Dataset

from midimix.config import check_range
from midimix.errors import ConfigError

if TYPE_CHECKING:
    from midimix.tokenizer import GenreTokenizer

IGNORE_INDEX = -100  # what transformers' loss skips
PREFIX_LEN = 2  # BOS, Genre_<g>


def chunk_bounds(
    ids: Sequence[int], bar_starts: Sequence[int], max_body: int
) -> list[tuple[int, int]]:
    """[start, end) pieces of `ids`, each at most `max_body` long, cut at the bar starts
    (indexes into ids) where possible. Greedy: a chunk takes as many whole bars as fit."""
    n = len(ids)
    cuts = sorted({i for i in bar_starts if 0 < i < n})
    bounds: list[tuple[int, int]] = []
    start = 0
    while start < n:
        limit = start + max_body
        if limit >= n:
            bounds.append((start, n))
            break
        fitting = [c for c in cuts if start < c <= limit]
        end = fitting[-1] if fitting else limit  # no bar line fits: cut inside the bar
        bounds.append((start, end))
        start = end
    return bounds


class TokenDataset(Dataset[dict[str, Any]]):
    """Chunks of at most `max_seq_len` ids, each `[BOS, Genre_g, body...]` (the last chunk of
    a piece ends with EOS). With probability `any_prob` an item's genre token is replaced by
    Genre_any, decided by (seed, epoch, index) so a run is reproducible; call `set_epoch`."""

    def __init__(
        self,
        sequences: Sequence[tuple[str, Sequence[int]]],
        tokenizer: GenreTokenizer,
        max_seq_len: int,
        any_prob: float = 0.0,
        seed: int = 0,
    ) -> None:
        check_range("max_seq_len", max_seq_len, PREFIX_LEN + 2, None)
        check_range("any_prob", any_prob, 0.0, 1.0)
        self.tokenizer = tokenizer
        self.max_seq_len = max_seq_len
        self.any_prob = any_prob
        self.seed = seed
        self.epoch = 0
        types = tokenizer.token_types()
        is_bar = [t == "Bar" for t in types]
        max_body = max_seq_len - PREFIX_LEN
        self.chunks: list[tuple[str, list[int]]] = []  # (genre, body) with EOS where it ends
        for genre, ids in sequences:
            tokenizer.genre_id(genre)  # a clear error for a genre the tokenizer lacks
            body = [*ids, tokenizer.eos_id]
            bars = [i for i, t in enumerate(body) if t < len(is_bar) and is_bar[t]]
            for start, end in chunk_bounds(body, bars, max_body):
                self.chunks.append((genre, body[start:end]))
        if not self.chunks and sequences:
            raise ConfigError("no training chunks: every sequence is empty")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.chunks)

    def uses_any(self, index: int) -> bool:
        """Whether item `index` gets Genre_any in the current epoch (deterministic)."""
        if self.any_prob <= 0.0:
            return False
        return random.Random(f"{self.seed}:{self.epoch}:{index}").random() < self.any_prob

    def __getitem__(self, index: int) -> dict[str, Any]:
        genre, body = self.chunks[index]
        label = self.tokenizer.any_id if self.uses_any(index) else self.tokenizer.genre_id(genre)
        ids = [self.tokenizer.bos_id, label, *body]
        return {"input_ids": torch.tensor(ids, dtype=torch.long), "genre": genre}


def collate(batch: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest item: input_ids, attention_mask (1 = real token) and labels
    (= input_ids, IGNORE_INDEX on padding; the model shifts them itself). Shapes (B, T)."""
    if not batch:
        raise ConfigError("collate needs at least one item, got an empty batch")
    longest = max(len(item["input_ids"]) for item in batch)
    input_ids = torch.full((len(batch), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), longest), dtype=torch.long)
    for row, item in enumerate(batch):
        ids = item["input_ids"]
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
    labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
