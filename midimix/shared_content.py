"""NLL of the music two vocabularies can both write, so that models on different grids compare.

A model of a finer vocabulary (more positions per beat, more velocity bins) spends part of its
NLL per note on detail a coarser vocabulary cannot write; set against the coarser model's NLL it
looks worse for knowing more. Here both models are scored on the same content: each validation
piece's fine tokens decoded and encoded again by the coarse tokenizer (miditok's own rounding).
The coarse model reads that content token by token. The fine model's probability of it is a sum
over every fine sequence that rounds to it, too many to list; the model's own fine details,
drawn step by step from its distribution restricted to the tokens that round to the next
coarse token, give log P(content) >= E[sum_t log Z_t] (Z_t: the mass the model puts on the
allowed tokens at step t; Jensen, as in importance-weighted bounds, tighter with more draws).
So the fine model's figure is an upper bound on its NLL of the content: below the coarse
model's NLL means better on the music both can write. Every drawn piece is decoded and encoded
again: one that does not give the content back is outside the sum and weighs 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from midimix.errors import InputError

if TYPE_CHECKING:
    import torch
    from transformers import GPT2LMHeadModel

    from midimix.tokenizer import GenreTokenizer

ROUNDED_TYPES = ("Position", "Velocity", "Duration")  # the grids a finer vocabulary refines


def _check_pair(fine: GenreTokenizer, coarse: GenreTokenizer) -> None:
    """Both plain (no BPE), same genres: tokens of other kinds must then match by name."""
    if fine.is_trained or coarse.is_trained:
        raise InputError("shared-content NLL needs vocabularies without BPE")
    if fine.genres != coarse.genres:
        raise InputError(f"the models' genres differ: {fine.genres} and {coarse.genres}")


def finer_first(a: GenreTokenizer, b: GenreTokenizer, names: tuple[str, str]) -> tuple[str, str]:
    """`names` of (a, b) ordered finer first: the finer grid a multiple of the other's, with
    at least as many velocity bins. An InputError when neither refines the other."""
    _check_pair(a, b)

    def grid(t: GenreTokenizer) -> tuple[int, int]:
        config = t.miditok.config
        return max(config.beat_res.values()), config.num_velocities

    (pa, va), (pb, vb) = grid(a), grid(b)
    if pa % pb == 0 and va >= vb:
        return names
    if pb % pa == 0 and vb >= va:
        return names[1], names[0]
    raise InputError(
        f"neither vocabulary refines the other ({pa} and {pb} positions a beat, {va} and "
        f"{vb} velocities)"
    )


def _probe(fine: GenreTokenizer, coarse: GenreTokenizer, tokens: list[str]) -> list[str]:
    """The coarse tokens of a fine token string (decoded, then encoded again)."""
    ids = [fine.miditok.vocab[t] for t in tokens]
    return [coarse.base_tokens(i)[0] for i in coarse.encode(fine.decode(ids))]


def rounding(fine: GenreTokenizer, coarse: GenreTokenizer) -> dict[int, int]:
    """Fine id -> the coarse id it rounds to, for every fine token that has one: Position,
    Velocity and Duration by miditok's own round trip (one probe note each, in the bar of
    the most beats in the vocabulary), the other kinds by name. A position that rounds into
    the next bar has none (no fine sequence with it gives the same bar)."""
    _check_pair(fine, coarse)
    fvocab, cvocab = fine.miditok.vocab, coarse.miditok.vocab
    time_sigs = [t for t in fvocab if t.startswith("TimeSig_")]
    # miditok counts positions per beat of the signature's own unit: the most beats is widest
    widest = max(time_sigs, key=lambda t: int(t.split("_", 1)[1].split("/")[0]), default=None)
    head = ["Bar_None", *([widest] if widest else [])]
    base_velocity = next(t for t in fvocab if t.startswith("Velocity_"))
    base_duration = next(t for t in fvocab if t.startswith("Duration_"))
    out: dict[int, int] = {}
    for token, fid in fvocab.items():
        kind = token.split("_", 1)[0]
        if kind not in ROUNDED_TYPES:
            if token in cvocab:
                out[fid] = cvocab[token]
            continue
        note = {"Position": "Position_0", "Velocity": base_velocity, "Duration": base_duration}
        note[kind] = token
        probe = [*head, note["Position"], "Pitch_60", note["Velocity"], note["Duration"]]
        got = _probe(fine, coarse, probe)
        if got.count("Bar_None") != 1:
            continue  # rounded into the next bar
        # the note's own token of that kind: the last Position before its pitch (encoding adds
        # a Position_0 with the tempo), its Velocity and Duration after
        at = got.index("Pitch_60")
        before, after = got[:at], got[at:]
        ours = [t for t in (before if kind == "Position" else after) if t.startswith(kind + "_")]
        out[fid] = cvocab[ours[-1] if kind == "Position" else ours[0]]
    return out


def content(fine: GenreTokenizer, coarse: GenreTokenizer, fine_ids: Sequence[int]) -> list[int]:
    """The coarse tokens of a fine token sequence: what both vocabularies can write of it.
    Passed through the coarse tokenizer twice: notes of two fine onsets that round to one
    keep their time order the first time and are sorted like any onset's the second."""
    return coarse.encode(coarse.decode(coarse.encode(fine.decode(fine_ids))))


def allowed_matrix(
    fine: GenreTokenizer, coarse: GenreTokenizer, table: dict[int, int]
) -> torch.Tensor:
    """(coarse vocab, fine vocab) bool: which fine ids round to each coarse id; specials
    (EOS, PAD, genres) map to their own."""
    import torch

    matrix = torch.zeros((coarse.vocab_size, fine.vocab_size), dtype=torch.bool)
    for fid, cid in table.items():
        matrix[cid, fid] = True
    for name in ("eos_id", "pad_id", "bos_id", "any_id"):
        matrix[getattr(coarse, name), getattr(fine, name)] = True
    for genre in coarse.genres:
        matrix[coarse.genre_id(genre), fine.genre_id(genre)] = True
    return matrix


def fine_content_nll(
    model: GPT2LMHeadModel,
    fine: GenreTokenizer,
    coarse: GenreTokenizer,
    sequences: Sequence[tuple[str, Sequence[int]]],
    max_seq_len: int,
    draws: int = 4,
    seed: int = 0,
    batch_size: int = 64,
) -> tuple[list[float], int]:
    """(upper bound on the fine model's NLL in nats of each sequence's coarse content, the
    number of drawn fine pieces that did not round back to it and so counted as weight 0;
    inf for a sequence none of whose draws did). `sequences` are (genre, coarse
    body ids as `content` writes them); each is cut at bar lines into chunks like
    validation's, each chunk scored once after `BOS, Genre_g`, its body and EOS, as
    `midimix.validation.genre_losses` does."""
    import torch

    from midimix.dataset import chunk_bounds
    from midimix.validation import bar_starts

    table = rounding(fine, coarse)
    allowed = allowed_matrix(fine, coarse, table)
    types = coarse.token_types()
    rows: list[tuple[int, int, list[int]]] = []  # (sequence, fine genre id, coarse chunk)
    for s, (genre, ids) in enumerate(sequences):
        body = [*ids, coarse.eos_id]
        for start, end in chunk_bounds(body, bar_starts(body, types), max_seq_len - 2):
            rows.append((s, fine.genre_id(genre), body[start:end]))
    for _, ids in sequences:
        if coarse.encode(coarse.decode(ids)) != list(ids):
            raise InputError("give the coarse content as `content` writes it (onsets sorted)")
    for _, _, chunk in rows:
        missing = [coarse.base_tokens(c) for c in chunk if not allowed[c].any()]
        if missing:
            raise InputError(f"no fine token rounds to {missing[0]}: vocabularies too different")
    generator = torch.Generator().manual_seed(seed)
    masses: list[torch.Tensor] = []  # per row: the log mass of each draw
    drawn_pieces: dict[tuple[int, int], list[int]] = {}  # (sequence, draw) -> fine body
    was_training = model.training
    model.eval()
    per_batch = max(1, batch_size // draws)
    with torch.no_grad():
        for first in range(0, len(rows), per_batch):
            batch = [r for r in rows[first : first + per_batch] for _ in range(draws)]
            log_mass, drawn = _draw(model, fine, allowed, batch, generator)
            for i in range(0, len(batch), draws):
                masses.append(log_mass[i : i + draws])
                for k, body in enumerate(drawn[i : i + draws]):
                    drawn_pieces.setdefault((batch[i][0], k), []).extend(body)
    model.train(was_training)
    # A drawn piece that does not round back lies outside the sum: its weight is 0 (a rare
    # miditok edge, such as a note just before a change of time signature).
    rounds_back = torch.zeros((len(sequences), draws), dtype=torch.bool)
    for (s, k), body in drawn_pieces.items():
        rounds_back[s, k] = _rounds_back(fine, coarse, body, sequences[s][1])
    nll = [0.0] * len(sequences)
    for (s, _, _), mass in zip(rows, masses, strict=True):
        kept = mass.masked_fill(~rounds_back[s], -math.inf)
        # importance-weighted bound over the draws: log mean exp
        nll[s] -= float(torch.logsumexp(kept, 0)) - math.log(draws)
    return nll, int((~rounds_back).sum())


def _draw(
    model: GPT2LMHeadModel,
    fine: GenreTokenizer,
    allowed: torch.Tensor,
    batch: list[tuple[int, int, list[int]]],
    generator: torch.Generator,
) -> tuple[torch.Tensor, list[list[int]]]:
    """(sum of log Z_t per row, the fine body drawn per row): one step per coarse token,
    each row drawing among the fine tokens that round to its next coarse token."""
    import torch
    from transformers import DynamicCache

    from midimix.sampler import cache_kwarg

    device = next(model.parameters()).device
    cache = {cache_kwarg(model): DynamicCache(config=model.config)}
    longest = max(len(r[2]) for r in batch)
    targets = torch.full((len(batch), longest), -1, dtype=torch.long)
    for i, (_, _, chunk) in enumerate(batch):
        targets[i, : len(chunk)] = torch.tensor(chunk)
    prefix = torch.tensor([[fine.bos_id, gid] for _, gid, _ in batch], dtype=torch.long)
    out = model(input_ids=prefix.to(device), use_cache=True, logits_to_keep=1, **cache)
    logits = out.logits[:, -1].float().cpu()
    log_mass = torch.zeros(len(batch), dtype=torch.float64)
    drawn = torch.zeros((len(batch), longest), dtype=torch.long)
    for t in range(longest):
        live = targets[:, t] >= 0
        mask = allowed[targets[:, t].clamp(min=0)]
        logp = torch.log_softmax(logits, dim=-1).masked_fill(~mask, -math.inf)
        log_z = torch.logsumexp(logp, dim=-1)
        log_mass += torch.where(live, log_z, torch.zeros_like(log_z)).double()
        probs = torch.exp(logp - log_z.unsqueeze(-1))
        token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        token = torch.where(live, token, torch.full_like(token, fine.eos_id))  # past the end
        drawn[:, t] = token
        step = token.unsqueeze(-1).to(device)
        out = model(input_ids=step, use_cache=True, logits_to_keep=1, **cache)
        logits = out.logits[:, -1].float().cpu()
    bodies = [drawn[i, : len(r[2])].tolist() for i, r in enumerate(batch)]
    return log_mass, bodies


def _rounds_back(
    fine: GenreTokenizer, coarse: GenreTokenizer, fine_body: list[int], coarse_ids: Sequence[int]
) -> bool:
    """Whether a drawn fine piece (its chunks joined) rounds to the content it was drawn for."""
    fine_notes = [i for i in fine_body if i != fine.eos_id]
    return coarse.encode(fine.decode(fine_notes)) == list(coarse_ids)
