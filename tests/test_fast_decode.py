"""The lean decoding step computes the model's own logits: prefill and steps against
`GPT2LMHeadModel.forward` with a KV cache, and the sampling loop draws the same tokens
through either path with the same seed."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import DynamicCache

import midimix.fast_decode as fast_decode
from midimix.fast_decode import GPT2Weights, LeanGPT2, supports
from midimix.model import build_model, save_checkpoint
from midimix.sampler import MixPlan, Sampling, cache_kwarg, sample_tokens, tokenizer_grammar
from midimix.tokenize import GenreTokenizer, TokenizeConfig

ROUNDING = 1e-4  # float32 rounding of a different summation order, far below any logit gap


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    tokenizer = GenreTokenizer.build(["classical", "lofi"], TokenizeConfig())
    torch.manual_seed(0)
    model = build_model(
        tokenizer.vocab_size, "tiny", tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id
    )
    model.eval()
    return model, tokenizer


def test_prefill_and_steps_give_the_models_logits(tiny) -> None:
    model, _ = tiny
    assert supports(model)
    rows, prefix, steps = 3, 7, 12
    ids = torch.randint(3, model.config.vocab_size, (rows, prefix + steps))
    lean = LeanGPT2(model, rows)
    cache = {cache_kwarg(model): DynamicCache(config=model.config)}
    with torch.inference_mode():
        ours = lean.prefill(lean.embed_ids(ids[:, :prefix]))
        theirs = model(input_ids=ids[:, :prefix], use_cache=True, **cache).logits
        assert (ours - theirs[:, -1]).abs().max() < ROUNDING
        for t in range(prefix, prefix + steps):
            ours = lean.step(ids[:, t])
            theirs = model(input_ids=ids[:, t : t + 1], use_cache=True, **cache)
            assert (ours - theirs.logits[:, -1]).abs().max() < ROUNDING
    assert lean.filled == prefix + steps


@pytest.mark.parametrize("rows", [1, 2, 3, 5])  # the kernel's paths: 1, 2, any, BLAS (4+)
def test_the_host_step_and_the_torch_step_agree(tiny, rows: int) -> None:
    """On the CPU a step runs as one compiled function over the same cache (`HostStep`); the
    torch step is what a GPU runs. Both give the model's logits, step after step over a
    shared prefix, for every row count the kernel treats its own way."""
    model, _ = tiny
    prefix, steps = 5, 20
    ids = torch.randint(3, model.config.vocab_size, (rows, prefix + steps))
    host, plain = LeanGPT2(model, rows), LeanGPT2(model, rows)
    assert host.host is not None
    plain.host = None  # the torch step
    with torch.inference_mode():
        for lean in (host, plain):
            lean.prefill(lean.embed_ids(ids[:, :prefix]))
        for t in range(prefix, prefix + steps):
            assert (host.step(ids[:, t]) - plain.step(ids[:, t])).abs().max() < ROUNDING
    filled = prefix + steps  # the keys and values the steps wrote
    written = (host.cache - plain.cache)[..., :filled, :]
    assert host.filled == plain.filled == filled and written.abs().max() < ROUNDING


def test_a_model_changed_in_place_is_stepped_with_its_new_weights(tiny) -> None:
    """The kernel's copy of the weights is kept between calls; a weight changed in place (a
    model trained further) is seen by the next LeanGPT2."""
    model, _ = tiny
    ids = torch.tensor([[1, 5, 7, 9]])
    try:
        for _ in range(2):
            lean = LeanGPT2(model, 1)
            with torch.inference_mode():
                lean.prefill(lean.embed_ids(ids[:, :3]))
                ours = lean.step(ids[:, 3])
                theirs = model(input_ids=ids).logits[:, -1]
            assert (ours - theirs).abs().max() < ROUNDING
            with torch.no_grad():
                model.transformer.h[0].mlp.c_fc.weight.mul_(1.5)
    finally:
        with torch.no_grad():
            model.transformer.h[0].mlp.c_fc.weight.div_(1.5**2)


def test_prefill_from_embeddings_matches_inputs_embeds(tiny) -> None:
    model, _ = tiny
    embeds = torch.randn(2, 5, model.config.n_embd)
    lean = LeanGPT2(model, 2)
    with torch.inference_mode():
        ours = lean.prefill(embeds)
        theirs = model(inputs_embeds=embeds).logits[:, -1]
    assert (ours - theirs).abs().max() < ROUNDING


def test_a_full_cache_refuses_another_step(tiny) -> None:
    model, _ = tiny
    lean = LeanGPT2(model, 1, max_length=4)
    with torch.inference_mode():
        lean.prefill(lean.embed_ids(torch.tensor([[1, 3, 4, 5]])))
        with pytest.raises(ValueError, match="full"):
            lean.step(torch.tensor([6]))


def test_training_mode_is_left_to_the_model(tiny) -> None:
    model, _ = tiny
    model.train()
    try:
        assert not supports(model)  # dropout: only the model's own forward applies it
    finally:
        model.eval()


@pytest.mark.parametrize(
    ("method", "guidance"), [("logits", 0.0), ("logits", 1.5), ("embedding", 0.0)]
)
def test_sampling_draws_the_same_tokens_through_either_path(
    tiny, monkeypatch: pytest.MonkeyPatch, method: str, guidance: float
) -> None:
    model, tokenizer = tiny
    grammar = tokenizer_grammar(tokenizer)
    genres = [tokenizer.genre_id("lofi"), tokenizer.genre_id("classical")]
    plan = MixPlan(
        method, genres, torch.tensor([[0.7, 0.3], [0.2, 0.8]]), "product", guidance,
        tokenizer.any_id,
    )  # fmt: skip

    def run():
        return sample_tokens(
            model, grammar, plan, Sampling(seed=5, max_tokens_per_bar=24),
            bos_id=tokenizer.bos_id, num_samples=2, target_bars=6,
        )  # fmt: skip

    lean = run()
    monkeypatch.setattr(fast_decode, "supports", lambda model: False)
    plain = run()
    assert lean.ids == plain.ids and lean.bars == plain.bars == [6, 6]
    assert lean.restarts == plain.restarts > 0  # the tiny model's short context: a restart


def test_weights_read_from_the_checkpoint_files_sample_the_same_tokens(tiny, tmp_path) -> None:
    """config.json + model.safetensors alone (no transformers model) decode the same."""
    model, tokenizer = tiny
    folder = save_checkpoint(model, tokenizer, {"step": 0}, tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text())
    weights = GPT2Weights(config, load_file(str(folder / "model.safetensors")))
    assert "lm_head.weight" not in weights.tensors  # tied: the head is wte
    grammar = tokenizer_grammar(tokenizer)
    genres = [tokenizer.genre_id("lofi"), tokenizer.genre_id("classical")]
    for plan in (
        MixPlan("logits", genres, torch.tensor([[0.6, 0.4]])),
        MixPlan("embedding", genres, torch.tensor([[0.6, 0.4], [0.1, 0.9]])),
    ):
        runs = [
            sample_tokens(
                m,
                grammar,
                plan,
                Sampling(seed=2, max_tokens_per_bar=24),
                bos_id=tokenizer.bos_id,
                num_samples=2,
                target_bars=5,
            )  # fmt: skip
            for m in (model, weights)
        ]
        assert runs[0].ids == runs[1].ids and runs[0].restarts == runs[1].restarts


def test_a_shorter_trained_context_caps_the_positions_used(tiny) -> None:
    """A model trained on chunks shorter than its positions (`--max-seq-len`) never saw the
    later positions: sampling slides its window within the trained length instead."""
    model, tokenizer = tiny
    grammar = tokenizer_grammar(tokenizer)
    plan = MixPlan("logits", [tokenizer.genre_id("lofi")], torch.ones(1, 1))

    def run(context: int | None):
        return sample_tokens(
            model, grammar, plan, Sampling(seed=1), bos_id=tokenizer.bos_id,
            target_bars=None, max_new_tokens=60, context=context,
        )  # fmt: skip

    assert model.config.n_positions == 128
    full, capped = run(None), run(24)
    assert full.restarts == 0 and len(full.ids[0]) == 60
    # 24 positions: BOS, genre and 22 tokens; a restart keeps 12, so 10 more fit each time
    assert capped.restarts == 4 and len(capped.ids[0]) == 60  # at 22, 32, 42 and 52 tokens
