"""Faster equivalents of GPT-2's training operations, swapped into a model for training only.

Each computes the same function as the operation it replaces (up to float rounding, or for
dropout with the same keep probability to 1/65536); none has weights, so checkpoints and
config.json are unchanged, and a model loaded elsewhere is a plain GPT-2. Measured on the
2-core build machine (bf16 autocast, 8 x 256 tokens, 1 thread; docs/train.md):

- `gelu_new` is seven elementwise tensor ops, each kept for the backward pass: torch's fused
  tanh GELU instead took a training step to 1.33x the tokens/s (dropout 0).
- Dropout draws its mask with torch's CPU `bernoulli_`, about 6 ns an element; attention with
  dropout leaves torch's fused CPU attention kernel for an unfused one that draws the same way.
  Here the masks come from 16-bit integers of numpy's PCG64 (well under 1 ns an element),
  seeded from torch's generator, so a run stays reproducible, a resumed run draws the same
  masks (torch's generator state is saved with the run) and each DDP process its own; the
  attention with dropout is written out (scores, causal mask, softmax, dropout, values) with
  that mask. Both: 1.48x the tokens/s at dropout 0.1. Without dropout (and in evaluation) the
  fused attention kernel runs as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel

ATTENTION = "midimix_train"  # the name the attention below is registered under
MASK_LEVELS = 65536  # dropout drops where a 16-bit draw is below round(p * 65536)


def speed_up_training(model: GPT2LMHeadModel) -> list[str]:
    """Swap the faster equivalents into `model` in place (the CPU ones only on the CPU);
    returns what was swapped, for the record."""
    from transformers import AttentionInterface
    from transformers.activations import ACT2FN, NewGELUActivation

    done = []
    blocks: list[Any] = list(model.transformer.h)
    unfused = [b.mlp for b in blocks if isinstance(b.mlp.act, NewGELUActivation)]
    for mlp in unfused:
        mlp.act = ACT2FN["gelu_pytorch_tanh"]
    if unfused:
        done.append("fused GELU")
    if next(model.parameters()).device.type != "cpu":
        return done  # CUDA's own dropout and fused attention with dropout are fast
    places: list[tuple[Any, str]] = [(model.transformer, "drop")]
    places += [(b.attn, "resid_dropout") for b in blocks] + [(b.mlp, "dropout") for b in blocks]
    plain = [(o, n, getattr(o, n)) for o, n in places if type(getattr(o, n)) is torch.nn.Dropout]
    swapped = [(o, n, m) for o, n, m in plain if m.p > 0]
    for owner, name, module in swapped:
        setattr(owner, name, FastDropout(module.p).train(module.training))
    if swapped:
        done.append("fast dropout")
    if any(b.attn.attn_dropout.p > 0 for b in blocks):
        AttentionInterface.register(ATTENTION, attention)
        model.config._attn_implementation = ATTENTION  # not written to config.json
        done.append("attention with fast dropout")
    return done


def keep_mask(shape: torch.Size, p: float) -> torch.Tensor:
    """A bool tensor of `shape`, True with probability 1 - p (to 1/65536), from a seed drawn
    from torch's default generator."""
    seed = int(torch.randint(0, 2**62, (1,)))
    rng = np.random.Generator(np.random.PCG64(seed))
    draws = rng.integers(0, MASK_LEVELS, size=int(np.prod(shape)), dtype=np.uint16)
    return torch.from_numpy(draws >= round(p * MASK_LEVELS)).view(shape)


class _Masked(torch.autograd.Function):
    """x * mask * scale, and the same on the way back (torch's fused dropout backward op)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(mask)
        ctx.scale = scale
        return torch.ops.aten.native_dropout_backward(x, mask, scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (mask,) = ctx.saved_tensors
        return torch.ops.aten.native_dropout_backward(grad, mask, ctx.scale), None, None


def fast_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout (kept values scaled by 1 / (1 - p)) with a `keep_mask`."""
    return _Masked.apply(x, keep_mask(x.shape, p), 1.0 / (1.0 - p))


class FastDropout(torch.nn.Module):
    """`torch.nn.Dropout(p)` with the mask from `keep_mask`."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p) if self.training and self.p > 0 else x

    def extra_repr(self) -> str:
        return f"p={self.p}"


def attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """GPT-2's causal self-attention (transformers' attention interface): with dropout and no
    mask (training, right padding), written out with a fast dropout mask; otherwise torch's
    scaled-dot-product attention as transformers calls it. (B, H, T, D) in, (B, T, H, D) out."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if dropout == 0.0 or attention_mask is not None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    length = query.shape[2]
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale
    future = torch.ones(length, key.shape[2], dtype=torch.bool, device=query.device)
    scores = scores.masked_fill(future.triu_(key.shape[2] - length + 1), float("-inf"))
    probabilities = fast_dropout(torch.softmax(scores, dim=-1), dropout)
    out = torch.matmul(probabilities.to(value.dtype), value)
    return out.transpose(1, 2).contiguous(), None
