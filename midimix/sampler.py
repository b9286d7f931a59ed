"""The sampling loop: how the next token is chosen, step after step, over a KV cache.

`sample_tokens` runs one batch of `num_samples` pieces. Every step feeds one id per sample to
every conditioning row (one per genre for the `logits` mix, one mixed row for `embedding`, plus
a `Genre_any` row for guidance), mixes the rows' next-token distributions and passes the result
through the logit processors of `midimix.sampling`: grammar mask -> temperature -> top-k ->
top-p -> one sampled id per sample. Pieces longer than the model's context go on in a sliding
window that keeps the `BOS, Genre_<g>` prefix. Shapes: S samples, C conditioning rows per
sample, G genres, V vocabulary.

torch and transformers are imported inside the functions, so that importing this module (and
the generate stage's command line, which names these types) stays instant.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import GPT2LMHeadModel

    from midimix.fast_decode import GPT2Weights
    from midimix.sampling import BarLimits, Grammar
    from midimix.tokenize import GenreTokenizer


@dataclass
class MixPlan:
    """How the rows of a batch are conditioned."""

    method: str  # logits | embedding
    genre_ids: list[int]  # (G,) token ids of the genres taking part
    weights: torch.Tensor  # (n_bars, G) weights per bar, rows sum to 1
    rule: str = "product"
    guidance: float = 0.0
    any_id: int = -1  # Genre_any, the guidance row's condition
    limits: BarLimits | None = None  # what each bar's mix allows (genre statistics)

    @property
    def conditions(self) -> int:
        """Rows per sample: one per genre (logits) or one mixed row (embedding), + any."""
        base = len(self.genre_ids) if self.method == "logits" else 1
        return base + (1 if self.guidance > 0 else 0)


@dataclass
class Sampling:
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 0.95
    seed: int = 0
    max_tokens_per_bar: int = 256


@dataclass
class SampleResult:
    ids: list[list[int]]  # new ids of each sample (prompt not included)
    bars: list[int]  # new bars of each sample
    steps: int  # decoding steps run
    restarts: int = 0  # cache rebuilds (sliding window, embedding schedule)


def model_device(model: GPT2LMHeadModel | GPT2Weights) -> Any:
    """The device the model's weights are on."""
    from midimix.fast_decode import GPT2Weights

    return model.device if isinstance(model, GPT2Weights) else next(model.parameters()).device


def cache_kwarg(model: GPT2LMHeadModel) -> str:
    """transformers 5 names the KV cache argument `cache`, 4.x `past_key_values`."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


class _Runner:
    """Forward passes over a KV cache for the rows of one batch (S samples x C conditions)."""

    def __init__(
        self, model: Any, plan: MixPlan, bos_id: int, samples: int, context: int | None = None
    ):
        import torch

        from midimix.fast_decode import GPT2Weights, LeanGPT2, supports

        self.model, self.plan, self.bos_id, self.samples = model, plan, bos_id, samples
        self.device = model_device(model)
        weights_only = isinstance(model, GPT2Weights)
        self.cache_kw = "" if weights_only else cache_kwarg(model)
        self.context = model.context if weights_only else int(model.config.n_positions)
        if context:  # a model trained on shorter chunks than its positions: no further
            self.context = min(self.context, context)
        self.cache: Any = None
        self.length = 0  # tokens in the cache (same for every row)
        # embedding: the mixed row's genre embedding is replaced in prefill()
        cond = list(plan.genre_ids) if plan.method == "logits" else plan.genre_ids[:1]
        if plan.guidance > 0:
            cond.append(plan.any_id)
        self.conditions = torch.tensor(cond, device=self.device).repeat(samples)  # (S*C,)
        # the lean forward pass over the model's weights where it covers the model
        rows = samples * plan.conditions
        self.lean = LeanGPT2(model, rows, self.context) if supports(model) else None

    def blas_threads(self) -> contextlib.AbstractContextManager[Any]:
        """numpy's BLAS held to torch's thread count while the lean step runs on the host:
        `--threads` then means the same for both, and OpenBLAS's own threads do not fight
        torch's OpenMP threads for the cores between two steps."""
        import torch

        if self.lean is None or self.lean.host is None:
            return contextlib.nullcontext()
        from threadpoolctl import threadpool_limits

        return threadpool_limits(torch.get_num_threads(), user_api="blas")

    def prefill(self, window: torch.Tensor, bar_index: torch.Tensor) -> torch.Tensor:
        """Fresh cache from [BOS, condition] + window (S, K) -> last logits (S*C, V)."""
        import torch

        c = self.plan.conditions
        rows = window.repeat_interleave(c, dim=0)  # (S*C, K)
        bos = torch.full((rows.shape[0], 1), self.bos_id, device=self.device)
        ids = torch.cat([bos, self.conditions.unsqueeze(1), rows], dim=1)  # (S*C, 2+K)
        self.length = ids.shape[1]
        if self.lean is None:
            from transformers import DynamicCache  # the model's own forward only

            self.cache = DynamicCache(config=self.model.config)
        if self.plan.method == "logits":
            if self.lean is not None:
                return self.lean.prefill(self.lean.embed_ids(ids))
            return self._forward(input_ids=ids)
        wte = self.model.get_input_embeddings() if self.lean is None else self.lean.embed_ids
        embeds = wte(ids)  # (S*C, 2+K, D)
        genre_vectors = wte(torch.tensor(self.plan.genre_ids, device=self.device))  # (G, D)
        weights = self.plan.weights.to(self.device)[bar_index].to(genre_vectors.dtype)  # (S, G)
        embeds[0::c, 1] = weights @ genre_vectors  # the mixed rows; any rows keep Genre_any
        if self.lean is not None:
            return self.lean.prefill(embeds)
        return self._forward(inputs_embeds=embeds)

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        """Feed one id per sample (S,) to every row -> next logits (S*C, V)."""
        self.length += 1
        c = self.plan.conditions
        rows = ids if c == 1 else ids.repeat_interleave(c)  # (S*C,)
        if self.lean is not None:
            return self.lean.step(rows)
        return self._forward(input_ids=rows.unsqueeze(1))

    def _forward(self, **inputs: Any) -> torch.Tensor:
        out = self.model(**inputs, use_cache=True, logits_to_keep=1, **{self.cache_kw: self.cache})
        return out.logits[:, -1, :]


def _mixed_scores(
    logits: torch.Tensor, plan: MixPlan, table: torch.Tensor, bar_index: torch.Tensor
) -> torch.Tensor:
    """(S*C, V) logits -> (S, V) scores of the mix (+ guidance); the weights of each sample
    are the rows `bar_index` (S,) of the per-bar table (n_bars, G)."""
    import torch

    from midimix.sampling import apply_guidance, combine_logprobs

    c = plan.conditions
    if c == 1:
        return logits.float()  # one condition: the logits themselves (softmax-equivalent)
    weights = table[bar_index]  # (S, G)
    if plan.method == "logits" and plan.rule == "product" and plan.guidance == 0:
        # sum_g w_g logp_g = sum_g w_g logits_g - sum_g w_g logsumexp_g: the same scores up to
        # a per-row constant (the weights sum to 1), which sampling ignores; one batched
        # product instead of a log-softmax and a masked sum at every step
        rows = logits.float().view(-1, c, logits.shape[-1])  # (S, G, V), finite logits
        return torch.bmm(weights.to(rows.dtype).unsqueeze(1), rows).squeeze(1)
    logp = torch.log_softmax(logits.float(), dim=-1).view(-1, c, logits.shape[-1])  # (S, C, V)
    g = len(plan.genre_ids) if plan.method == "logits" else 1
    mixed = (
        combine_logprobs(logp[:, :g], weights, plan.rule) if plan.method == "logits" else logp[:, 0]
    )
    if plan.guidance > 0:
        mixed = apply_guidance(mixed, logp[:, -1], plan.guidance)
    return mixed


def sample_tokens(
    model: GPT2LMHeadModel | GPT2Weights,
    grammar: Grammar,
    plan: MixPlan,
    sampling: Sampling,
    *,
    bos_id: int,
    num_samples: int = 1,
    target_bars: int | None = 16,
    prompt_ids: list[int] | None = None,
    max_new_tokens: int | None = None,
    on_bar: Callable[[int], None] | None = None,
    context: int | None = None,
) -> SampleResult:
    """Sample `num_samples` continuations as one batch.

    `on_bar(n)` is told when every sample has finished n new bars (for a progress bar).
    With `target_bars`, each sample stops after that many new bars (grammar-checked, see
    `midimix.sampling.grammar_mask`); with `target_bars=None` every sample runs exactly
    `max_new_tokens` steps (the benchmark's fixed length). `model` may be a GPT2LMHeadModel or
    its `midimix.fast_decode.GPT2Weights` (no transformers needed then). `context` caps the
    positions used below the model's own (a model trained with a shorter `max_seq_len` has
    never seen later positions); longer pieces go on in the sliding window."""
    import torch

    from midimix.sampling import (
        advance,
        apply_temperature,
        apply_top_k,
        apply_top_p,
        grammar_mask,
        mask_scores,
        sample_ids,
    )

    device = model_device(model)
    grammar = grammar_to(grammar, device)
    prompt = list(prompt_ids or [])
    runner = _Runner(model, plan, bos_id, num_samples, context)
    keep_tokens = max(1, runner.context // 2)  # window kept after a restart
    generator = torch.Generator(device=device).manual_seed(sampling.seed)
    st = _prompt_state(grammar, prompt, num_samples, device)
    if max_new_tokens is None:
        bound = 4 * len(grammar.states)  # tokens to reach a bar line from any state
        max_new_tokens = (target_bars or 1) * (sampling.max_tokens_per_bar + bound) + bound
    weights = plan.weights.to(device)
    n_weight_rows = weights.shape[0]
    limits = plan.limits
    if limits is not None:
        limits = dataclasses.replace(
            limits, onset_cap=limits.onset_cap.to(device), allowed=limits.allowed.to(device)
        )

    def row_limits(bar_index: torch.Tensor) -> Any:
        return None if limits is None else limits.rows(bar_index)

    # every fed id, prompt first: the sliding window and cache rebuilds read from here; the
    # ids of each step are collected in a list and copied in only when a rebuild needs them
    history = torch.zeros(
        num_samples, len(prompt) + max_new_tokens, dtype=torch.long, device=device
    )
    history[:, : len(prompt)] = torch.tensor(prompt, dtype=torch.long, device=device)
    new_ids: list[torch.Tensor] = []  # (S,) per step
    copied = 0  # steps already in `history`

    def fed_history() -> torch.Tensor:
        nonlocal copied
        if copied < len(new_ids):
            start = len(prompt) + copied
            history[:, start : len(prompt) + len(new_ids)] = torch.stack(new_ids[copied:], 1)
            copied = len(new_ids)
        return history

    stops = [max_new_tokens] * num_samples  # a sample keeps its ids before the one that ended it
    bar_index = torch.zeros(num_samples, dtype=torch.long, device=device)
    scheduled = n_weight_rows > 1  # the mix (and its limits) change bar by bar
    limits_now = row_limits(bar_index)
    finished = torch.zeros(num_samples, dtype=torch.bool, device=device)
    restarts, steps, fed = 0, 0, len(prompt)
    bars_reported = 0
    with torch.inference_mode(), runner.blas_threads():
        logits = runner.prefill(history[:, max(0, fed - keep_tokens) : fed], bar_index)
        while steps < max_new_tokens:
            steps += 1
            scores = _mixed_scores(logits, plan, weights, bar_index)
            allowed = grammar_mask(
                grammar, st, target_bars, sampling.max_tokens_per_bar, limits_now
            )
            scores = mask_scores(scores, allowed)
            scores = apply_top_p(
                apply_top_k(apply_temperature(scores, sampling.temperature), sampling.top_k),
                sampling.top_p,
            )
            ids = sample_ids(scores, generator)  # (S,)
            ended = advance(grammar, st, ids, target_bars)
            new_ids.append(ids)
            if on_bar is not None and target_bars and steps % 16 == 0:  # a sync every 16 steps
                done = int(torch.where(finished, target_bars, st.bars_done).min())
                if done > bars_reported:
                    bars_reported = done
                    on_bar(done)
            fed += 1
            if bool(ended.any()):
                for row in (ended & ~finished).nonzero().flatten().tolist():
                    stops[row] = steps - 1
                finished |= ended
                if bool(finished.all()):
                    break
            reweigh = False
            if scheduled:
                new_index = (st.bars_done - 1).clamp(0, n_weight_rows - 1)
                reweigh = plan.method == "embedding" and bool(
                    (weights[new_index] != weights[bar_index]).any()
                )
                bar_index = new_index
                limits_now = row_limits(bar_index)
            if runner.length + 1 > runner.context:
                logits = runner.prefill(fed_history()[:, fed - keep_tokens : fed], bar_index)
                restarts += 1
            elif reweigh:  # the mixed embedding changed: recompute the window under it
                window = fed_history()[:, fed - (runner.length - 1) : fed]
                logits = runner.prefill(window, bar_index)
                restarts += 1
            else:
                logits = runner.step(ids)
    new = fed_history()[:, len(prompt) : len(prompt) + steps].tolist()
    out = [r[: min(stop, steps)] for r, stop in zip(new, stops, strict=True)]
    return SampleResult(out, st.bars_done.tolist(), steps, restarts)


def _prompt_state(grammar: Grammar, prompt: list[int], rows: int, device: Any) -> Any:
    """Grammar state after the prompt (where it stands in its last bar), new-bar count 0."""
    import torch

    from midimix.sampling import GrammarState, advance

    st = GrammarState.start(1, bar_limit=grammar.default_bar_positions)
    for token in prompt:
        advance(grammar, st, torch.tensor([token]), None)
    state = GrammarState.start(
        rows,
        state=int(st.state[0]),
        bar_has_note=bool(st.bar_has_note[0]),
        cur_pos=int(st.cur_pos[0]),
        bar_limit=int(st.bar_limit[0]),
    )
    state.onset_pitches[:] = st.onset_pitches[0]  # the prompt's last onset stays clean too
    state.tempo_id[:] = st.tempo_id[0]
    for f in dataclasses.fields(state):
        setattr(state, f.name, getattr(state, f.name).to(device))
    return state


def grammar_to(grammar: Grammar, device: Any) -> Grammar:
    import torch

    moved = {
        f.name: getattr(grammar, f.name).to(device)
        for f in dataclasses.fields(grammar)
        if f.init and isinstance(getattr(grammar, f.name), torch.Tensor)
    }
    return dataclasses.replace(grammar, **moved)


def tokenizer_grammar(tokenizer: GenreTokenizer) -> Grammar:
    """The grammar tables of a GenreTokenizer: its per-id base tokens and miditok's type graph."""
    from midimix.sampling import SPECIAL_TYPE, build_grammar

    types = tokenizer.token_types()
    base = [[] if t == SPECIAL_TYPE else tokenizer.base_tokens(i) for i, t in enumerate(types)]
    graph = tokenizer.miditok.tokens_types_graph
    positions_per_beat = int(tokenizer.miditok.config.max_num_pos_per_beat)
    return build_grammar(base, graph, tokenizer.eos_id, positions_per_beat)
