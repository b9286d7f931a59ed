"""Loudness: an ITU-R BS.1770 meter and the normalisation of a render to a target loudness,
with a limiter that keeps the sample peaks under a ceiling."""

from __future__ import annotations

import math

import numpy as np

from midimix.errors import ItemError
from midimix.lofi import db_to_gain


class LoudnessMeter:
    """ITU-R BS.1770-4 integrated loudness, vectorised: same filters and gates as pyloudnorm's
    Meter (whose K-weighting coefficients it borrows), ~20x faster on a 30 s stereo file
    because the 400 ms gating blocks come from one cumulative sum instead of a Python loop."""

    BLOCK_SECONDS = 0.4
    STEP_SECONDS = 0.1  # 75 % overlap
    ABSOLUTE_GATE_LUFS = -70.0
    RELATIVE_GATE_LU = -10.0

    def __init__(self, sample_rate_hz: int) -> None:
        from pyloudnorm.iirfilter import IIRfilter

        self.sample_rate_hz = sample_rate_hz
        stages = [
            IIRfilter(4.0, 1 / math.sqrt(2), 1500.0, sample_rate_hz, "high_shelf"),
            IIRfilter(0.0, 0.5, 38.0, sample_rate_hz, "high_pass"),
        ]
        # both biquads as one second-order-sections filter: one pass over the audio
        self.sos = np.array([[*stage.b, *stage.a] for stage in stages])

    def integrated_loudness(self, audio: np.ndarray) -> float:
        """LUFS of (samples, channels) audio; -inf for silence or audio shorter than 0.4 s."""
        from scipy import signal

        weighted = signal.sosfilt(self.sos, np.asarray(audio, dtype=np.float32), axis=0)
        block = int(round(self.BLOCK_SECONDS * self.sample_rate_hz))
        step = int(round(self.STEP_SECONDS * self.sample_rate_hz))
        if len(weighted) < block:
            return -math.inf
        power = np.concatenate(
            [np.zeros(1), np.cumsum(np.sum(weighted**2, axis=1), dtype=np.float64)]
        )
        starts = np.arange(0, len(weighted) - block + 1, step)
        block_power = (power[starts + block] - power[starts]) / block  # summed over channels
        with np.errstate(divide="ignore"):
            block_lufs = -0.691 + 10 * np.log10(block_power)
        gated = block_power[block_lufs > self.ABSOLUTE_GATE_LUFS]
        if not len(gated):
            return -math.inf
        relative_gate = -0.691 + 10 * math.log10(gated.mean()) + self.RELATIVE_GATE_LU
        gated = block_power[(block_lufs > relative_gate) & (block_lufs > self.ABSOLUTE_GATE_LUFS)]
        return float(-0.691 + 10 * math.log10(gated.mean()))


def normalise_loudness(
    audio: np.ndarray, sample_rate_hz: int, target_lufs: float, peak_dbfs: float
) -> tuple[np.ndarray, float]:
    """Gain to `target_lufs` (ITU-R BS.1770), peaks limited to `peak_dbfs`; (audio, LUFS)."""
    import pedalboard as pb

    meter = LoudnessMeter(sample_rate_hz)
    lufs = meter.integrated_loudness(audio)
    if not math.isfinite(lufs):
        raise ItemError("the rendered audio is silent; check that the notes have velocities > 0")
    out = (audio * db_to_gain(target_lufs - lufs)).astype(np.float32)
    ceiling = db_to_gain(peak_dbfs)
    # Limit, then regain to the target (limiting lowered the loudness a little); a second
    # round catches what the regain pushed back over.
    for _ in range(2):
        if float(np.max(np.abs(out))) <= ceiling:
            break
        limiter = pb.Limiter(threshold_db=peak_dbfs - 1.0, release_ms=80.0)
        out = limiter(np.ascontiguousarray(out.T), sample_rate_hz).T
        lufs = meter.integrated_loudness(out)
        out = (out * db_to_gain(target_lufs - lufs)).astype(np.float32)
    peak = float(np.max(np.abs(out)))
    if peak > ceiling:  # the last overshoots: a plain gain, a fraction of a dB
        out = out * (ceiling / peak)
    return out, meter.integrated_loudness(out)
