"""The training-only equivalents of GPT-2's ops compute what they replace: dropout keeps the
asked share and scales it, reproducibly from torch's seed; the written-out attention is the
causal attention with that mask; a model with them evaluates and saves as a plain GPT-2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from midimix.model import ModelConfig, build_model, load_checkpoint, save_checkpoint
from midimix.tokenize import GenreTokenizer, TokenizeConfig
from midimix.train_kernels import ATTENTION, FastDropout, attention, keep_mask, speed_up_training


def test_keep_mask_keeps_the_asked_share_reproducibly() -> None:
    torch.manual_seed(3)
    mask = keep_mask(torch.Size([1000, 1000]), 0.1)
    assert mask.dtype == torch.bool and mask.shape == (1000, 1000)
    assert abs(mask.float().mean().item() - 0.9) < 0.002  # 1e6 draws: sd 0.0003
    torch.manual_seed(3)
    assert torch.equal(keep_mask(torch.Size([1000, 1000]), 0.1), mask)
    assert not torch.equal(keep_mask(torch.Size([1000, 1000]), 0.1), mask)  # the next draw
    assert keep_mask(torch.Size([50_000]), 0.5).float().mean().item() == pytest.approx(
        0.5, abs=0.01
    )


def test_fast_dropout_scales_what_it_keeps_forward_and_backward() -> None:
    layer = FastDropout(0.25)
    x = torch.full((400, 500), 2.0, requires_grad=True)
    y = layer(x)
    kept = y != 0
    torch.testing.assert_close(y[kept].detach(), torch.full_like(y[kept], 2.0 / 0.75))
    assert abs(kept.float().mean().item() - 0.75) < 0.01
    y.sum().backward()
    assert x.grad is not None
    assert torch.equal(x.grad != 0, kept)
    torch.testing.assert_close(x.grad[kept], torch.full_like(x.grad[kept], 1 / 0.75))
    layer.eval()
    assert layer(x) is x


def causal_reference(q, k, v, keep, p):
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    length = q.shape[2]
    scores = scores.masked_fill(torch.ones(length, length).triu(1).bool(), float("-inf"))
    probabilities = torch.softmax(scores, dim=-1) * keep / (1 - p)
    return (probabilities @ v).transpose(1, 2)


def test_attention_with_dropout_is_causal_attention_with_the_mask() -> None:
    q, k, v = (torch.randn(2, 3, 7, 4) for _ in range(3))
    module = torch.nn.Module()
    torch.manual_seed(11)
    ours, _ = attention(module, q, k, v, None, dropout=0.2, scaling=4**-0.5)
    torch.manual_seed(11)
    keep = keep_mask(torch.Size([2, 3, 7, 7]), 0.2)
    torch.testing.assert_close(ours, causal_reference(q, k, v, keep, 0.2))
    # without dropout, torch's own kernel; the written-out one (keeping all) agrees with it
    plain, _ = attention(module, q, k, v, None, dropout=0.0, scaling=4**-0.5, is_causal=True)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2)
    torch.testing.assert_close(plain, expected)
    keep_all, _ = attention(module, q, k, v, None, dropout=1e-9, scaling=4**-0.5)
    torch.testing.assert_close(keep_all, expected)


def test_a_sped_up_model_evaluates_and_saves_as_a_plain_gpt2(tmp_path: Path) -> None:
    tokenizer = GenreTokenizer.build(["classical", "lofi"], TokenizeConfig())
    size = ModelConfig(n_layer=2, n_embd=32, n_head=2, context_length=64, dropout=0.1)
    torch.manual_seed(0)
    model = build_model(
        tokenizer.vocab_size, size, tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id
    )
    ids = torch.randint(5, tokenizer.vocab_size, (2, 20))
    model.eval()
    with torch.no_grad():
        before = model(input_ids=ids).logits
    swapped = speed_up_training(model)
    assert swapped == ["fused GELU", "fast dropout", "attention with fast dropout"]
    assert model.config._attn_implementation == ATTENTION
    assert sum(isinstance(m, FastDropout) for m in model.modules()) == 1 + 2 * 2
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, before, atol=1e-5, rtol=1e-5)
    model.train()  # dropout on: two passes differ, and gradients flow
    first = model(input_ids=ids, labels=ids).loss
    second = model(input_ids=ids, labels=ids).loss
    assert first.item() != second.item()
    first.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    folder = save_checkpoint(model.eval(), tokenizer, {"step": 0}, tmp_path / "ckpt")
    assert ATTENTION not in (folder / "config.json").read_text()
    assert json.loads((folder / "config.json").read_text())["activation_function"] == "gelu_new"
    loaded, _, _ = load_checkpoint(folder)
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, before, atol=1e-5, rtol=1e-5)
