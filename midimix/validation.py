"""How well a genre-conditioned model knows its genres: loss per token, per genre, and genre
sensitivity (does a piece's own genre token explain it best?).

Training validates with these every `eval_every` steps; the mix sweep reads the same losses.
Validation pieces are cut at bar lines into chunks like training ones, and each chunk is scored
once under every genre token; only the body and EOS are scored, never the genre token itself
(it is the condition, not data).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from transformers import GPT2LMHeadModel

    from midimix.tokenize import GenreTokenizer


def bar_starts(ids: Sequence[int], token_types: Sequence[str]) -> list[int]:
    """Indexes of the Bar tokens of `ids`: validation chunks start at bar lines, as in training."""
    return [i for i, t in enumerate(ids) if t < len(token_types) and token_types[t] == "Bar"]


def unigram_loss(
    train: Sequence[Sequence[int]], validation: Sequence[Sequence[int]], vocab_size: int
) -> float:
    """Cross-entropy (nats/token) of the validation tokens under the training token
    frequencies, add-one smoothed: what a model that ignores context would reach."""
    counts = Counter(t for ids in train for t in ids)
    total = sum(counts.values()) + vocab_size
    tokens = [t for ids in validation for t in ids]
    if not tokens:
        return float("nan")
    return -sum(math.log((counts[t] + 1) / total) for t in tokens) / len(tokens)


def genre_losses(
    model: GPT2LMHeadModel,
    tokenizer: GenreTokenizer,
    sequences: Sequence[tuple[str, Sequence[int]]],
    max_seq_len: int | None = None,
    batch_size: int = 32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(nll, count): nll[s, g] is the summed negative log-likelihood (nats) of sequence s's
    body and EOS when it is prefixed `BOS, Genre_g` (g in tokenizer.genres order); count[s] is
    its token count. The genre token itself is not scored: it is the condition, not data."""
    import torch
    import torch.nn.functional as F

    from midimix.dataset import chunk_bounds

    seq_len = max_seq_len or int(model.config.n_positions)
    types = tokenizer.token_types()
    genre_ids = [tokenizer.genre_id(g) for g in tokenizer.genres]
    rows: list[tuple[int, int, list[int]]] = []  # (sequence, genre index, ids)
    count = torch.zeros(len(sequences), dtype=torch.float64)
    for s, (genre, ids) in enumerate(sequences):
        tokenizer.genre_id(genre)  # a clear error for a genre the tokenizer lacks
        body = [*ids, tokenizer.eos_id]
        for start, end in chunk_bounds(body, bar_starts(body, types), seq_len - 2):
            piece = body[start:end]
            count[s] += len(piece)
            rows += [(s, g, [tokenizer.bos_id, gid, *piece]) for g, gid in enumerate(genre_ids)]
    nll = torch.zeros(len(sequences), len(genre_ids), dtype=torch.float64)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            longest = max(len(r[2]) for r in chunk)
            batch_ids = torch.full((len(chunk), longest), tokenizer.pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), longest), dtype=torch.long)
            for i, (_, _, row) in enumerate(chunk):
                batch_ids[i, : len(row)] = torch.tensor(row)
                mask[i, : len(row)] = 1
            logits = model(input_ids=batch_ids.to(device), attention_mask=mask.to(device)).logits
            # Position t predicts token t+1; score targets 2.. (the body), not the genre token.
            logp = F.log_softmax(logits[:, 1:-1].float(), dim=-1).cpu()  # (B, T-2, V)
            targets = batch_ids[:, 2:]
            token_nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, T-2)
            row_nll = (token_nll * mask[:, 2:]).sum(dim=1).double()
            for i, (s, g, _) in enumerate(chunk):
                nll[s, g] += row_nll[i]
    model.train(was_training)
    return nll, count


def summarize_losses(
    nll: torch.Tensor, count: torch.Tensor, true_genres: Sequence[int], genres: Sequence[str]
) -> tuple[float, dict[str, float], float]:
    """(validation loss per token, the same per genre, genre sensitivity) from genre_losses."""
    truth = list(true_genres)
    true_nll = [float(nll[s, g]) for s, g in enumerate(truth)]
    total = float(count.sum())
    val_loss = sum(true_nll) / total if total else float("nan")
    per_genre: dict[str, float] = {}
    for g, name in enumerate(genres):
        rows = [s for s, t in enumerate(truth) if t == g]
        tokens = sum(float(count[s]) for s in rows)
        if tokens:
            per_genre[name] = sum(true_nll[s] for s in rows) / tokens
    best = nll.argmin(dim=1).tolist()
    hits = sum(1 for s, g in enumerate(truth) if best[s] == g)
    return val_loss, per_genre, hits / len(truth) if truth else float("nan")


def validate(
    model: GPT2LMHeadModel,
    tokenizer: GenreTokenizer,
    sequences: Sequence[tuple[str, Sequence[int]]],
    max_seq_len: int | None = None,
) -> tuple[float, dict[str, float], float]:
    """(validation loss per token, the same per genre, genre sensitivity) of `model` on the
    (genre, body ids) `sequences`."""
    nll, count = genre_losses(model, tokenizer, sequences, max_seq_len)
    truth = [tokenizer.genres.index(genre) for genre, _ in sequences]
    return summarize_losses(nll, count, truth, tokenizer.genres)


def genre_sensitivity(
    model: GPT2LMHeadModel,
    tokenizer: GenreTokenizer,
    sequences: Sequence[tuple[str, Sequence[int]]],
    max_seq_len: int | None = None,
) -> float:
    """Share of sequences (genre, body ids) whose own genre token gives them the lowest loss
    among all genre tokens: 1.0 = the model always knows which genre it is writing."""
    return validate(model, tokenizer, sequences, max_seq_len)[2]
