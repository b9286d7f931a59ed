"""The wow-and-flutter delay line as one compiled loop (numba).

In numpy the delay line is a dozen passes over the piece (a time axis, two sines, the read
positions, their clipping, two gathers per channel, the interpolation): 0.13 s of a 45 s
piece's 1.0 s render. One loop that computes each read position and interpolates every channel
there takes about 0.05 s and gives the same samples: the same float64 read positions (up to the
last bit of libm's sine against numpy's) and the same float32 interpolation, with no fused or
reordered arithmetic (no `fastmath`). Cached on disk like the decoding step (midimix.jit_cache).
"""

from __future__ import annotations

import math

import numpy as np

from midimix.jit_cache import compile_once, use_user_cache

use_user_cache()  # before numba is imported: the cache goes to the user's folder

import numba  # noqa: E402


@numba.njit(cache=True, nogil=True, boundscheck=False)
def read_delayed(
    audio: np.ndarray, amplitudes_s: np.ndarray, rates_hz: np.ndarray, sample_rate_hz: float
) -> np.ndarray:
    """`audio` (channels, samples) read at t - d(t), d(t) = sum_k A_k (1 + sin(2 pi f_k t)),
    with linear interpolation between neighbouring samples."""
    channels, n = audio.shape
    out = np.empty_like(audio)
    if n < 2:
        out[:] = audio
        return out
    one = np.float32(1.0)
    for i in range(n):
        t = i / sample_rate_hz
        delay = 0.0
        for k in range(amplitudes_s.shape[0]):
            delay += amplitudes_s[k] * (1.0 + math.sin(2 * math.pi * rates_hz[k] * t))
        read_at = min(max(i - delay * sample_rate_hz, 0.0), n - 1.0)
        index = min(int(read_at), n - 2)
        frac = np.float32(read_at - index)
        for c in range(channels):
            out[c, i] = audio[c, index] * (one - frac) + audio[c, index + 1] * frac
    return out


def warm() -> None:
    """Compile (or load from the disk cache) `read_delayed`, one process at a time."""
    compile_once(f"lofi-numba{numba.__version__}", _compile)


def _compile() -> None:
    read_delayed(np.zeros((2, 4), np.float32), np.ones(2), np.ones(2), 4.0)
