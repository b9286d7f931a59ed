"""Logit processors on hand-made numbers, and the grammar on a real miditok REMI tokenizer."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from midimix.errors import ConfigError
from midimix.generate import MIX_RULES as CONFIG_MIX_RULES
from midimix.sampler import tokenizer_grammar
from midimix.sampling import (
    MIX_RULES,
    Grammar,
    GrammarState,
    RowLimits,
    advance,
    apply_guidance,
    apply_temperature,
    apply_top_k,
    apply_top_p,
    combine_logprobs,
    grammar_mask,
    interpolate_keyframes,
    sample_ids,
    value_mask,
)
from midimix.tokenize import GenreTokenizer, TokenizeConfig

# two genres over a 4-token vocabulary: genre a likes token 0, genre b likes token 3
P_A = torch.tensor([0.7, 0.1, 0.1, 0.1])
P_B = torch.tensor([0.1, 0.1, 0.2, 0.6])
LOGP = torch.log(torch.stack([P_A, P_B])).unsqueeze(0)  # (S=1, G=2, V=4)


@pytest.mark.parametrize("rule", ["product", "mixture"])
def test_weights_one_zero_reproduce_one_genre_exactly(rule: str) -> None:
    only_a = combine_logprobs(LOGP, torch.tensor([[1.0, 0.0]]), rule)
    only_b = combine_logprobs(LOGP, torch.tensor([[0.0, 1.0]]), rule)
    assert torch.equal(only_a[0], LOGP[0, 0])
    assert torch.equal(only_b[0], LOGP[0, 1])


def test_half_half_sits_between_the_genres() -> None:
    product = combine_logprobs(LOGP, torch.tensor([[0.5, 0.5]]), "product")[0]
    assert torch.allclose(product, (LOGP[0, 0] + LOGP[0, 1]) / 2)
    mixture = combine_logprobs(LOGP, torch.tensor([[0.5, 0.5]]), "mixture")[0]
    assert torch.allclose(mixture.exp(), torch.tensor([0.4, 0.1, 0.15, 0.35]))
    for scores in (product, mixture):
        p = torch.softmax(scores, dim=-1)
        assert P_A[3] < p[3] < P_B[3]  # b's favourite: between the two genres
        assert P_B[0] < p[0] < P_A[0]  # a's favourite too


@pytest.mark.parametrize("rule", ["product", "mixture"])
def test_more_weight_on_b_raises_b_favourite_monotonically(rule: str) -> None:
    probs = []
    for w in torch.linspace(0, 1, 11):
        scores = combine_logprobs(LOGP, torch.tensor([[1 - w, w]]), rule)[0]
        probs.append(float(torch.softmax(scores, dim=-1)[3]))
    assert probs[0] == pytest.approx(0.1) and probs[-1] == pytest.approx(0.6)
    assert all(b > a for a, b in zip(probs, probs[1:], strict=False))


def test_unknown_mix_rule_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="product, mixture"):
        combine_logprobs(LOGP, torch.tensor([[0.5, 0.5]]), "average")


def test_the_config_offers_exactly_the_rules_the_sampler_knows() -> None:
    assert CONFIG_MIX_RULES == MIX_RULES  # GenerateConfig's list stays torch-free, so it is a copy
    for rule in MIX_RULES:
        combine_logprobs(LOGP, torch.tensor([[0.5, 0.5]]), rule)  # each one runs


def test_guidance_formula_and_direction() -> None:
    mixed = torch.log(P_B).unsqueeze(0)
    any_ = torch.log(torch.tensor([0.25, 0.25, 0.25, 0.25])).unsqueeze(0)
    assert torch.equal(apply_guidance(mixed, any_, 0.0), mixed)
    guided = apply_guidance(mixed, any_, 2.0)
    assert torch.allclose(guided, mixed + 2.0 * (mixed - any_))
    # what the genre likes more than the neutral model gains probability
    assert torch.softmax(guided, -1)[0, 3] > P_B[3]


def test_temperature_top_k_top_p() -> None:
    scores = torch.log(torch.tensor([[0.4, 0.3, 0.2, 0.1]]))
    assert torch.allclose(apply_temperature(scores, 0.5), scores * 2)
    top2 = apply_top_k(scores, 2)
    assert torch.isinf(top2).tolist() == [[False, False, True, True]]
    # p = 0.5: 0.4 alone is short of 0.5, so 0.3 stays; 0.4 + 0.3 reaches it, the rest goes
    nucleus = apply_top_p(scores, 0.5)
    assert torch.isinf(nucleus).tolist() == [[False, False, True, True]]
    assert torch.isinf(apply_top_p(scores, 0.3)).tolist() == [[False, True, True, True]]
    assert torch.equal(apply_top_p(scores, 1.0), scores)


def test_same_seed_same_samples() -> None:
    scores = torch.zeros(8, 50)
    first = sample_ids(scores, torch.Generator().manual_seed(3))
    again = sample_ids(scores, torch.Generator().manual_seed(3))
    other = sample_ids(scores, torch.Generator().manual_seed(4))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_keyframes_move_weights_linearly_bar_by_bar() -> None:
    table = interpolate_keyframes(
        [(0.0, {"classical": 1.0}), (1.0, {"lofi": 1.0})], ["lofi", "classical"], 5
    )
    assert torch.allclose(table[:, 0], torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
    assert torch.allclose(table.sum(dim=1), torch.ones(5))
    held = interpolate_keyframes(
        [(0.5, {"lofi": 1.0}), (1.0, {"classical": 1.0})], ["lofi", "classical"], 5
    )
    assert held[:, 0].tolist() == [1.0, 1.0, 1.0, 0.5, 0.0]


# ---------------------------------------------------------------------------------------
# Grammar


@pytest.fixture(scope="module")
def tokenizer() -> GenreTokenizer:
    return GenreTokenizer.build(["classical", "lofi"], TokenizeConfig())


def _type(tokenizer: GenreTokenizer, i: int) -> str:
    return tokenizer.token_types()[i]


def test_mask_allows_only_grammar_successors(tokenizer: GenreTokenizer) -> None:
    g = tokenizer_grammar(tokenizer)
    graph = tokenizer.miditok.tokens_types_graph
    types = tokenizer.token_types()
    for s, name in enumerate(g.states):
        st = GrammarState.start(1, state=s, bar_limit=g.default_bar_positions)
        allowed = grammar_mask(g, st, target_bars=8, max_tokens_per_bar=1000)[0]
        kinds = {types[i] for i in allowed.nonzero().flatten().tolist()}
        assert "Special" not in kinds  # no EOS, PAD, BOS or genre token mid-piece
        if name == "<start>":
            assert kinds == {"Bar"}
        elif name == "Bar":
            assert kinds == {"TimeSig"}  # miditok's REMI: a time signature after each bar line
        else:
            assert kinds and kinds <= graph[name], name
            assert "TimeSig" not in kinds  # never mid-bar


def _state(g: Grammar, name: str, **kwargs: Any) -> GrammarState:
    return GrammarState.start(
        1, state=g.states.index(name), bar_limit=g.default_bar_positions, **kwargs
    )


def test_positions_move_forward_and_stay_in_the_bar(tokenizer: GenreTokenizer) -> None:
    g = tokenizer_grammar(tokenizer)
    vocab = tokenizer.miditok.vocab
    st = _state(g, "Duration", cur_pos=8)
    allowed = grammar_mask(g, st, 8, 1000)[0]
    assert not allowed[vocab["Position_8"]] and not allowed[vocab["Position_3"]]
    assert allowed[vocab["Position_9"]] and allowed[vocab["Position_15"]]
    # after TimeSig_3/4 a bar has 3 beats x 4 positions: Position_12 would spill over
    advance(g, st, torch.tensor([vocab["Bar_None"]]), None)
    advance(g, st, torch.tensor([vocab["TimeSig_3/4"]]), None)
    allowed = grammar_mask(g, st, 8, 1000)[0]
    assert allowed[vocab["Position_0"]] and allowed[vocab["Position_11"]]
    assert not allowed[vocab["Position_12"]]


def test_no_end_before_the_requested_bars_and_a_note_in_the_last(tokenizer: GenreTokenizer) -> None:
    g = tokenizer_grammar(tokenizer)
    bar = tokenizer.miditok.vocab["Bar_None"]
    early = _state(g, "Duration", bar_has_note=True)
    early.bars_done[:] = 3
    mask = grammar_mask(g, early, 4, 1000)[0]
    assert not mask[g.eos_id] and mask[bar]
    last_empty = _state(g, "TimeSig")
    last_empty.bars_done[:] = 4
    mask = grammar_mask(g, last_empty, 4, 1000)[0]
    assert not mask[g.eos_id] and not mask[bar]  # the last bar needs a note first
    last_full = _state(g, "Duration", bar_has_note=True)
    last_full.bars_done[:] = 4
    mask = grammar_mask(g, last_full, 4, 1000)[0]
    assert mask[g.eos_id] and mask[bar]
    ended = advance(g, last_full, torch.tensor([bar]), 4)
    assert ended.tolist() == [True] and last_full.bars_done.tolist() == [4]


def test_a_long_bar_is_steered_to_its_bar_line(tokenizer: GenreTokenizer) -> None:
    g = tokenizer_grammar(tokenizer)
    types = tokenizer.token_types()
    st = _state(g, "Duration")
    st.bar_tokens[:] = 40
    kinds = {types[i] for i in grammar_mask(g, st, 8, 40)[0].nonzero().flatten().tolist()}
    assert kinds == {"Bar"}
    st = _state(g, "Pitch")
    st.bar_tokens[:] = 40
    kinds = {types[i] for i in grammar_mask(g, st, 8, 40)[0].nonzero().flatten().tolist()}
    assert kinds == {"Velocity"}  # the only way on towards a bar line
    assert math.isfinite(float(g.dist_bar[g.states.index("Pitch")]))


# ---------------------------------------------------------------------------------------
# Clean notes and the limits of a mix


def _feed(g: Grammar, st: GrammarState, vocab: dict[str, int], *tokens: str) -> None:
    for token in tokens:
        advance(g, st, torch.tensor([vocab[token]]), None)


def _limits(g: Grammar, cap: int, allowed: torch.Tensor | None = None) -> RowLimits:
    vocab_size = g.allowed.shape[1]
    mask = torch.ones(1, vocab_size, dtype=torch.bool) if allowed is None else allowed[None]
    return RowLimits(torch.tensor([cap]), mask)


def test_a_pitch_never_starts_twice_on_one_onset(tokenizer: GenreTokenizer) -> None:
    g = tokenizer_grammar(tokenizer)
    vocab = tokenizer.miditok.vocab
    st = _state(g, "Duration")
    _feed(g, st, vocab, "Bar_None", "TimeSig_4/4", "Position_0")
    _feed(g, st, vocab, "Pitch_60", "Velocity_63", "Duration_1.0.4")
    mask = grammar_mask(g, st, None, 1000)[0]
    assert not mask[vocab["Pitch_60"]] and mask[vocab["Pitch_64"]]
    _feed(g, st, vocab, "Position_4")  # a new onset: the pitch may start again
    mask = grammar_mask(g, st, None, 1000)[0]
    assert mask[vocab["Pitch_60"]]


def test_notes_per_onset_stop_at_the_cap(tokenizer: GenreTokenizer) -> None:
    g = tokenizer_grammar(tokenizer)
    vocab = tokenizer.miditok.vocab
    types = tokenizer.token_types()
    st = _state(g, "Duration")
    _feed(g, st, vocab, "Bar_None", "TimeSig_4/4", "Position_0")
    for pitch in (48, 55, 60):
        _feed(g, st, vocab, f"Pitch_{pitch}", "Velocity_63", "Duration_1.0.4")
    kinds = {types[i] for i in grammar_mask(g, st, None, 1000, _limits(g, 3))[0].nonzero()[:, 0]}
    assert "Pitch" not in kinds and {"Position", "Bar"} <= kinds
    kinds = {types[i] for i in grammar_mask(g, st, None, 1000, _limits(g, 4))[0].nonzero()[:, 0]}
    assert "Pitch" in kinds


def test_value_mask_keeps_the_mix_tempos_and_time_signatures(tokenizer: GenreTokenizer) -> None:
    vocab = tokenizer.miditok.vocab
    base = [tokenizer.base_tokens(i) for i in range(tokenizer.vocab_size)]
    mask = value_mask(base, (61.44, 84.77), {"4/4"})
    tempos = {t: bool(mask[i]) for t, i in vocab.items() if t.startswith("Tempo_")}
    kept = sorted(float(t.split("_")[1]) for t, ok in tempos.items() if ok)
    assert kept and all(60.0 <= v <= 86.5 for v in kept)
    assert any(not ok for ok in tempos.values())
    assert mask[vocab["TimeSig_4/4"]] and not mask[vocab["TimeSig_3/4"]]
    assert mask[vocab["Pitch_60"]] and mask[vocab["Bar_None"]]
    # a range between two grid values still keeps the nearest one
    narrow = value_mask(base, (86.0, 87.0), None)
    assert sum(bool(narrow[i]) for t, i in vocab.items() if t.startswith("Tempo_")) == 1


def test_tempos_of_the_mix_and_a_tempo_first_only_for_a_schedule(
    tokenizer: GenreTokenizer,
) -> None:
    g = tokenizer_grammar(tokenizer)
    vocab = tokenizer.miditok.vocab
    types = tokenizer.token_types()
    base = [tokenizer.base_tokens(i) for i in range(tokenizer.vocab_size)]
    lofi_tempos = value_mask(base, (61.44, 84.77), {"4/4"})

    def first_position(tempo_first: bool) -> list[int]:
        limits = _limits(g, 7, lofi_tempos)
        limits.tempo_first = tempo_first
        st = _state(g, "Duration")
        _feed(g, st, vocab, "Bar_None", "TimeSig_4/4", "Position_0")
        return grammar_mask(g, st, None, 1000, limits)[0].nonzero()[:, 0].tolist()

    # one mix: the piece may start without a tempo, as training windows do; any tempo it
    # states is one of the mix's
    allowed = first_position(tempo_first=False)
    assert {"Tempo", "Pitch"} <= {types[i] for i in allowed}
    tempos = [float(base[i][0].split("_")[1]) for i in allowed if types[i] == "Tempo"]
    assert tempos and all(60.0 <= t <= 86.5 for t in tempos)
    # a schedule states its tempo first, so that it can move with the mix
    allowed = first_position(tempo_first=True)
    assert {types[i] for i in allowed} == {"Tempo"}
    # a stated tempo that the bar's mix no longer allows is replaced at the next Position
    classical = _limits(g, 7, value_mask(base, (94.37, 144.96), None))
    st = _state(g, "Duration")
    _feed(g, st, vocab, "Bar_None", "TimeSig_4/4", "Position_0", "Tempo_76.15", "Pitch_60",
          "Velocity_63", "Duration_1.0.4", "Bar_None", "TimeSig_4/4", "Position_0")  # fmt: skip
    allowed = grammar_mask(g, st, None, 1000, classical)[0].nonzero()[:, 0].tolist()
    assert {types[i] for i in allowed} == {"Tempo"}
    assert all(92.0 <= float(base[i][0].split("_")[1]) <= 148.0 for i in allowed)
    _feed(g, st, vocab, base[allowed[0]][0])  # once set, notes may follow
    kinds = {types[i] for i in grammar_mask(g, st, None, 1000, classical)[0].nonzero()[:, 0]}
    assert "Pitch" in kinds


def test_the_product_mix_of_logits_is_the_product_of_log_probabilities() -> None:
    """The fast path (weights times raw logits) samples from the same distribution as the
    weighted sum of log-softmaxes: the scores differ by a constant per row."""
    from midimix.generate import MixPlan
    from midimix.sampler import _mixed_scores
    from midimix.sampling import combine_logprobs

    torch.manual_seed(0)
    logits = torch.randn(3 * 2, 50) * 4  # 3 samples x 2 genres
    table = torch.tensor([[1.0, 0.0], [0.7, 0.3], [0.0, 1.0]])
    plan = MixPlan(method="logits", genre_ids=[3, 4], weights=table, rule="product",
                   guidance=0.0, any_id=5, limits=None)  # fmt: skip
    fast = _mixed_scores(logits, plan, table, torch.arange(3))
    logp = torch.log_softmax(logits, dim=-1).view(3, 2, 50)
    exact = combine_logprobs(logp, table, "product")
    assert torch.allclose(fast.softmax(-1), exact.softmax(-1), atol=1e-6)
    offset = fast - exact
    assert torch.allclose(offset, offset[:, :1].expand_as(offset), atol=1e-4)
    assert torch.equal(fast.argmax(-1), exact.argmax(-1))
