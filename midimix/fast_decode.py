"""A lean forward pass over a trained GPT-2's own weights, for token-by-token sampling.

The model is tiny (4 layers x 256 wide), so a decoding step through `GPT2LMHeadModel.forward`
spends most of its time in Python: module calls, cache objects, mask building, output classes.
`LeanGPT2` runs the same computation (pre-norm blocks, fused QKV, scaled dot-product attention,
tanh GELU, tied output head) as a few tensor ops per layer over the model's parameter tensors
(shared, not copied), with a preallocated static KV cache written in place:

    x = wte[ids] + wpe[pos]                                   # (B, T, E)
    per layer: x += proj(attn(ln_1(x))); x += mlp(ln_2(x))    # cache (2, B, H, L, D) per layer
    logits = ln_f(x[:, -1]) @ wte.T                           # (B, V)

On the CPU a step runs as one compiled function (`midimix.decode_kernel`, numba) over the
same cache: a step of this size is ~50 small operations, and as torch ops or numpy calls their
dispatch and allocations cost as much as the arithmetic; compiled, the step also reads each
matrix once for the two rows of a two-genre mix (`benchmarks/bench_generate.py`).
The logits equal the model's up to float rounding (tests/test_fast_decode.py compares them,
and the sampled tokens), so sampling draws from the same distribution. `supports` says which
models it covers (a plain GPT-2 in eval mode); anything else goes through the model's own
forward. `GPT2Weights` holds the same tensors read straight from a checkpoint's config.json and
model.safetensors, so that decoding needs no transformers import.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch


LAYER_TENSORS = (  # per block, in the order `LeanGPT2.step` unpacks them
    "ln_1.weight",
    "ln_1.bias",
    "attn.c_attn.weight",  # (E, 3E): Conv1D weights are stored transposed
    "attn.c_attn.bias",
    "attn.c_proj.weight",
    "attn.c_proj.bias",
    "ln_2.weight",
    "ln_2.bias",
    "mlp.c_fc.weight",
    "mlp.c_fc.bias",
    "mlp.c_proj.weight",
    "mlp.c_proj.bias",
)


@dataclass
class GPT2Weights:
    """A GPT-2 language model as plain tensors: what the lean step reads, without
    transformers. `tensors` uses the state-dict names of GPT2LMHeadModel (the names in its
    model.safetensors: transformer.wte.weight, transformer.h.0.ln_1.weight, ...; lm_head.weight
    may be left out when tied to wte); `config` the fields of its config.json."""

    config: Mapping[str, Any]
    tensors: Mapping[str, torch.Tensor]

    @classmethod
    def from_model(cls, model: Any) -> GPT2Weights:
        """The weights of a loaded GPT2LMHeadModel (shared, not copied)."""
        config = {name: getattr(model.config, name, None) for name in CONFIG_FIELDS}
        return cls(config, dict(model.named_parameters()))

    @property
    def context(self) -> int:
        return int(self.config["n_positions"])

    @property
    def device(self) -> torch.device:
        return self.tensors["transformer.wte.weight"].device

    @property
    def layer_count(self) -> int:
        return int(self.config["n_layer"])


CONFIG_FIELDS = (
    "n_embd",
    "n_head",
    "n_layer",
    "n_positions",
    "layer_norm_epsilon",
    "scale_attn_weights",
    "scale_attn_by_inverse_layer_idx",
)


def supports(model: Any) -> bool:
    """True for the GPT-2s `LeanGPT2` computes exactly: eval mode, self-attention only, the
    `gelu_new` activation, no upcast-and-reorder attention, a float32 model on the CPU or GPU
    (and for `GPT2Weights`, which are read as such a model)."""
    import torch

    if isinstance(model, GPT2Weights):
        return True
    config = getattr(model, "config", None)
    return (
        type(model).__name__ == "GPT2LMHeadModel"
        and config is not None
        and not model.training
        and not getattr(config, "add_cross_attention", False)
        and not getattr(config, "reorder_and_upcast_attn", False)
        and getattr(config, "activation_function", "") in ("gelu_new", "gelu_pytorch_tanh")
        and next(model.parameters()).dtype == torch.float32
    )


class LeanGPT2:
    """A GPT-2's weights (a GPT2LMHeadModel or `GPT2Weights`) and a static KV cache for
    `rows` sequences."""

    def __init__(self, model: Any, rows: int, max_length: int | None = None):
        import torch

        weights = model if isinstance(model, GPT2Weights) else GPT2Weights.from_model(model)
        config, tensors = weights.config, weights.tensors
        self.embed, self.heads = int(config["n_embd"]), int(config["n_head"])
        self.head_dim = self.embed // self.heads
        self.eps = float(config["layer_norm_epsilon"])
        self.scale = self.head_dim**-0.5 if config["scale_attn_weights"] else 1.0
        self.context = weights.context
        self.wte = tensors["transformer.wte.weight"]
        self.wpe = tensors["transformer.wpe.weight"]
        self.head = tensors.get("lm_head.weight", self.wte)  # (V, E), tied to wte by default
        self.layers: list[tuple[Any, ...]] = []  # 12 tensors (LAYER_TENSORS) and a scale
        for i in range(weights.layer_count):
            by_depth = config["scale_attn_by_inverse_layer_idx"]
            scale = self.scale / (i + 1) if by_depth else self.scale
            block = [tensors[f"transformer.h.{i}.{name}"] for name in LAYER_TENSORS]
            self.layers.append((*block, scale))
        self.ln_f = (tensors["transformer.ln_f.weight"], tensors["transformer.ln_f.bias"])
        self.rows = rows
        self.length = min(self.context, max_length or self.context)
        self.cache = torch.empty(
            len(self.layers),
            2,
            rows,
            self.heads,
            self.length,
            self.head_dim,
            dtype=self.wte.dtype,
            device=self.wte.device,
        )  # (layers, key|value, B, H, L, D)
        self.keys = [layer[0] for layer in self.cache]  # (B, H, L, D) per layer
        self.values = [layer[1] for layer in self.cache]
        self.filled = 0  # positions of the cache in use
        on_host = self.wte.device.type == "cpu" and self.wte.dtype == torch.float32
        self.host = HostStep(self) if on_host else None  # numpy has no bfloat16

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, T, E) token embeddings (no position)."""
        import torch.nn.functional as F

        return F.embedding(ids, self.wte)

    def prefill(self, embeds: torch.Tensor) -> torch.Tensor:
        """A fresh cache from (B, T, E) token embeddings at positions 0..T-1 -> (B, V) logits
        of the last position."""
        import torch
        import torch.nn.functional as F

        rows, length, width = embeds.shape
        if rows != self.rows or length > self.length:
            raise ValueError(f"prefill of {tuple(embeds.shape)} into a cache of {self.rows} rows")
        x = embeds + self.wpe[:length]
        heads, dim = self.heads, self.head_dim
        for cache, layer in zip(self.cache, self.layers, strict=True):
            ln1w, ln1b, aw, ab, pw, pb, ln2w, ln2b, fw, fb, mw, mb, scale = layer
            h = F.layer_norm(x, (width,), ln1w, ln1b, self.eps)
            qkv = torch.addmm(ab, h.view(-1, width), aw).view(rows, length, 3, heads, dim)
            cache[:, :, :, :length] = qkv[:, :, 1:].permute(2, 0, 3, 1, 4)
            q = qkv[:, :, 0].transpose(1, 2)  # (B, H, T, D)
            a = F.scaled_dot_product_attention(
                q, cache[0, :, :, :length], cache[1, :, :, :length], is_causal=True, scale=scale
            )
            a = a.transpose(1, 2).reshape(rows * length, width)
            x = x + torch.addmm(pb, a, pw).view(rows, length, width)
            h = F.layer_norm(x, (width,), ln2w, ln2b, self.eps)
            h = F.gelu(torch.addmm(fb, h.view(-1, width), fw), approximate="tanh")
            x = x + torch.addmm(mb, h, mw).view(rows, length, width)
        self.filled = length
        return self._logits(x[:, -1])

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        """Feed one id per row (B,) at the next position -> (B, V) logits."""
        import torch

        if self.filled >= self.length:
            raise ValueError(f"the KV cache is full ({self.length} positions)")
        if self.host is not None:
            logits = torch.from_numpy(self.host.step(ids.numpy(), self.filled))
            self.filled += 1
            return logits
        pos = self.filled
        rows, width, heads, dim, eps = self.rows, self.embed, self.heads, self.head_dim, self.eps
        shape, qkv_shape = (width,), (rows, 3, heads, 1, dim)
        end = pos + 1
        # builtins rather than torch.nn.functional wrappers: a step is ~50 small ops
        x = torch.embedding(self.wte, ids).add_(self.wpe.select(0, pos))  # (B, E)
        for cache, keys, values, layer in zip(
            self.cache, self.keys, self.values, self.layers, strict=True
        ):
            ln1w, ln1b, aw, ab, pw, pb, ln2w, ln2b, fw, fb, mw, mb, scale = layer
            h = torch.layer_norm(x, shape, ln1w, ln1b, eps)
            qkv = torch.addmm(ab, h, aw).view(qkv_shape)  # (B, q|k|v, H, 1, D)
            cache.narrow(3, pos, 1).copy_(qkv.narrow(1, 1, 2).transpose(0, 1))
            a = torch._C._nn.scaled_dot_product_attention(
                qkv.select(1, 0),  # (B, H, 1, D)
                keys.narrow(2, 0, end),
                values.narrow(2, 0, end),
                scale=scale,
            )
            x = torch.addmm(pb, a.view(rows, width), pw).add_(x)
            h = torch.layer_norm(x, shape, ln2w, ln2b, eps)
            h = torch._C._nn.gelu(torch.addmm(fb, h, fw), approximate="tanh")
            x = torch.addmm(mb, h, mw).add_(x)
        self.filled = end
        return self._logits(x)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return F.linear(F.layer_norm(x, (self.embed,), *self.ln_f, self.eps), self.head)


class HostStep:
    """`LeanGPT2.step` on the CPU as one compiled function (`midimix.decode_kernel`), over the
    same KV cache as the torch code (so `LeanGPT2.prefill`, in torch, fills what the steps
    read) and a copy of the weights laid out for it: per kind stacked over the layers, each
    matrix stored (out, in). The copy costs the model's size again (13 MB for the default)."""

    def __init__(self, lean: LeanGPT2):
        import numpy as np

        from midimix import decode_kernel

        decode_kernel.warm()
        self.kernel: Callable[..., np.ndarray] = decode_kernel.step

        self.heads, self.eps = lean.heads, np.float32(lean.eps)
        self.wte, self.wpe = _view(lean.wte), _view(lean.wpe)
        self.layers, self.scales, self.ln_f, self.head, self.head_bias = _kernel_weights(lean)
        self.cache = _view(lean.cache)  # (layers, key|value, B, H, L, D), shared

    def step(self, ids: np.ndarray, pos: int) -> np.ndarray:
        """(B,) ids at position `pos` -> (B, V) logits; writes the cache at `pos`."""
        x = self.wte[ids] + self.wpe[pos]  # (B, E), a fresh array the kernel works in
        return self.kernel(
            x, pos, self.cache, *self.layers, self.scales, *self.ln_f, self.head,
            self.head_bias, self.eps, self.heads,
        )  # fmt: skip


def _view(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


# The kernel's copy of a model's weights, kept while the model lives: a sampling call builds a
# new LeanGPT2, and copying 13 MB each time cost 5-7 ms. Keyed by the embedding tensor; the
# tensors' version counters tell a model changed in place (trained further) since. (Not a
# WeakKeyDictionary: its lookups compare tensors with ==.)
_KERNEL_WEIGHTS: dict[int, tuple[weakref.ref[Any], tuple[int, ...], tuple[Any, ...]]] = {}


def _kernel_weights(lean: LeanGPT2) -> tuple[Any, ...]:
    """(per-kind stacked layer tensors, attention scales, ln_f, head (V, E), head bias)."""
    import numpy as np

    tensors = [lean.wte, lean.head, *lean.ln_f, *(t for layer in lean.layers for t in layer[:-1])]
    versions = tuple(t._version for t in tensors)
    kept = _KERNEL_WEIGHTS.get(id(lean.wte))
    if kept is not None and kept[0]() is lean.wte and kept[1] == versions:
        return kept[2]

    def stacked(index: int) -> np.ndarray:
        arrays = [_view(layer[index]) for layer in lean.layers]
        if index in (2, 4, 8, 10):  # c_attn, attn c_proj, c_fc, mlp c_proj: Conv1D's (in, out)
            arrays = [a.T for a in arrays]
        return np.ascontiguousarray(np.stack(arrays), dtype=np.float32)

    head = np.ascontiguousarray(_view(lean.head))  # (V, E): already (out, in)
    prepared = (
        [stacked(i) for i in range(len(LAYER_TENSORS))],
        np.array([layer[-1] for layer in lean.layers], dtype=np.float32),
        tuple(np.ascontiguousarray(_view(t)) for t in lean.ln_f),
        head,
        np.zeros(head.shape[0], dtype=np.float32),
    )
    if kept is None:  # forget the copy when the model goes
        weakref.finalize(lean.wte, _KERNEL_WEIGHTS.pop, id(lean.wte), None)
    _KERNEL_WEIGHTS[id(lean.wte)] = (weakref.ref(lean.wte), versions, prepared)
    return prepared
