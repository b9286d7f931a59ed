"""One GPT-2 decoding step on the CPU as a single compiled function (numba).

The sampling loop feeds one token per row per step to a 4 x 256 model: a step is about 50
small array operations, and in numpy each is a Python-level call with its own allocation;
their overhead was a third of the step. Compiled as one function the step makes no calls back
into Python, and a matrix is read once for every row of the step: a two-genre mix (two rows)
reads each weight once, where BLAS's general product for 2-3 rows is 2-3x slower than as many
matrix-vector products on one AMD CPU we measured and faster on an Intel one.

`step` computes what `LeanGPT2.step` does (pre-norm blocks, fused QKV, softmax attention over
the KV cache, tanh GELU, the tied head), up to float rounding: sums are vectorised
(`fastmath`), so they add in another order than BLAS. Weight matrices are stored (layers, out,
in), so that every output is a dot product over one contiguous row. From 4 rows on the
products go to BLAS (`np.dot`), which wins once a row of the matrix serves many.

The compiled code is cached on disk (midimix.jit_cache): about 2 s to compile the first time
on a machine; after that a new process spends about 0.45 s importing numba and loading it.
"""

from __future__ import annotations

import math

import numpy as np

from midimix.jit_cache import compile_once, use_user_cache

use_user_cache()  # before numba is imported: the cache goes to the user's folder

import numba  # noqa: E402

# compiled once and cached on disk; sums vectorised; no bounds checks, no GIL held
_jit = numba.njit(cache=True, nogil=True, fastmath=True, boundscheck=False)
BLAS_ROWS = 4  # from this many rows on, the products go to BLAS


@_jit
def _layer_norm(x, weight, bias, eps, out):
    rows, width = x.shape
    for r in range(rows):
        mean = np.float32(0.0)
        for i in range(width):
            mean += x[r, i]
        mean /= width
        variance = np.float32(0.0)
        for i in range(width):
            d = x[r, i] - mean
            variance += d * d
        inverse = np.float32(1.0) / np.sqrt(variance / width + eps)
        for i in range(width):
            out[r, i] = (x[r, i] - mean) * inverse * weight[i] + bias[i]


@_jit
def _project(x, weight_t, bias, out):
    """out = x @ weight_t.T + bias, weight_t (out, in): each matrix row read once for all rows."""
    rows, size = x.shape
    outputs = weight_t.shape[0]
    if rows >= BLAS_ROWS:
        out[:] = np.dot(x, weight_t.T)
        for r in range(rows):
            for j in range(outputs):
                out[r, j] += bias[j]
        return
    if rows == 2:  # a two-genre mix: both rows in one pass over the matrix row
        x0, x1 = x[0], x[1]
        for j in range(outputs):
            w = weight_t[j]
            s0 = np.float32(0.0)
            s1 = np.float32(0.0)
            for k in range(size):
                s0 += w[k] * x0[k]
                s1 += w[k] * x1[k]
            out[0, j] = s0 + bias[j]
            out[1, j] = s1 + bias[j]
        return
    for j in range(outputs):
        w = weight_t[j]
        for r in range(rows):
            s = np.float32(0.0)
            for k in range(size):
                s += w[k] * x[r, k]
            out[r, j] = s + bias[j]


@_jit
def _attend(qkv, pos, keys, values, scale, heads, scores, out):
    """Write this position's keys and values into the cache (B, H, L, D), then softmax
    attention of the queries over positions 0..pos -> out (B, E)."""
    rows, width = out.shape
    dim = width // heads
    for r in range(rows):
        for h in range(heads):
            base = h * dim
            key_cache, value_cache = keys[r, h], values[r, h]
            for d in range(dim):
                key_cache[pos, d] = qkv[r, width + base + d]
                value_cache[pos, d] = qkv[r, 2 * width + base + d]
            top = np.float32(-np.inf)
            for t in range(pos + 1):
                s = np.float32(0.0)
                key = key_cache[t]
                for d in range(dim):
                    s += key[d] * qkv[r, base + d]
                s *= scale
                scores[t] = s
                top = max(top, s)
            total = np.float32(0.0)
            for t in range(pos + 1):
                e = np.exp(scores[t] - top)
                scores[t] = e
                total += e
            for d in range(dim):
                out[r, base + d] = 0.0
            for t in range(pos + 1):
                p = scores[t] / total
                value = value_cache[t]
                for d in range(dim):
                    out[r, base + d] += p * value[d]


@_jit
def _gelu_tanh(h):
    """GPT-2's `gelu_new` in place: 0.5 h (1 + tanh(sqrt(2/pi) (h + 0.044715 h^3))), with
    1 + tanh(u) written as 2 / (1 + exp(-2u)): one exp instead of libm's tanh, half the time."""
    c = np.float32(2.0 * math.sqrt(2.0 / math.pi))
    rows, width = h.shape
    for r in range(rows):
        for i in range(width):
            v = h[r, i]
            inner = max(c * (v + np.float32(0.044715) * v * v * v), np.float32(-80.0))
            h[r, i] = v / (1 + np.exp(-inner))  # (-80: no overflow; the result is ~0 there)


@_jit
def step(
    x, pos, cache, ln1_w, ln1_b, attn_w, attn_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b,
    out_w, out_b, scales, lnf_w, lnf_b, head_w, head_b, eps, heads,
):  # fmt: skip
    """x (B, E): the embeddings of this position's ids (consumed) -> (B, V) logits. The
    per-layer tensors are stacked on a first axis of layers; cache (layers, key|value, B, H,
    L, D) gets this position's keys and values."""
    rows, width = x.shape
    normed = np.empty((rows, width), np.float32)
    qkv = np.empty((rows, 3 * width), np.float32)
    attended = np.empty((rows, width), np.float32)
    delta = np.empty((rows, width), np.float32)
    hidden = np.empty((rows, fc_w.shape[1]), np.float32)
    scores = np.empty(pos + 1, np.float32)
    for layer in range(attn_w.shape[0]):
        _layer_norm(x, ln1_w[layer], ln1_b[layer], eps, normed)
        _project(normed, attn_w[layer], attn_b[layer], qkv)
        keys, values = cache[layer, 0], cache[layer, 1]
        _attend(qkv, pos, keys, values, scales[layer], heads, scores, attended)
        _project(attended, proj_w[layer], proj_b[layer], delta)
        x += delta
        _layer_norm(x, ln2_w[layer], ln2_b[layer], eps, normed)
        _project(normed, fc_w[layer], fc_b[layer], hidden)
        _gelu_tanh(hidden)
        _project(hidden, out_w[layer], out_b[layer], delta)
        x += delta
    _layer_norm(x, lnf_w, lnf_b, eps, normed)
    logits = np.empty((rows, head_w.shape[0]), np.float32)
    _project(normed, head_w, head_b, logits)
    return logits


def warm() -> None:
    """Compile (or load from the disk cache) `step` for every row count, one process at a
    time on a cold cache: a tiny two-layer model's step for 1, 2 and `BLAS_ROWS` rows."""
    compile_once(f"decode-numba{numba.__version__}", _compile)


def _compile() -> None:
    layers, width, heads, length, vocab = 2, 8, 2, 4, 5
    rng = np.random.default_rng(0)

    def stacked(*shape: int) -> np.ndarray:
        return rng.standard_normal((layers, *shape)).astype(np.float32)

    for rows in (1, 2, BLAS_ROWS):
        cache = np.zeros((layers, 2, rows, heads, length, width // heads), np.float32)
        x = rng.standard_normal((rows, width)).astype(np.float32)
        step(
            x, 0, cache, stacked(width), stacked(width), stacked(3 * width, width),
            stacked(3 * width), stacked(width, width), stacked(width), stacked(width),
            stacked(width), stacked(4 * width, width), stacked(4 * width),
            stacked(width, 4 * width), stacked(width), np.ones(layers, np.float32),
            np.ones(width, np.float32), np.zeros(width, np.float32),
            np.ones((vocab, width), np.float32), np.zeros(vocab, np.float32),
            np.float32(1e-5), heads,
        )  # fmt: skip
