"""The lo-fi effects chain: a list of named steps you can read, reorder and edit.

Each step is a callable `(audio, sample_rate_hz) -> audio` on float32 arrays shaped
(channels, samples). Spotify's pedalboard supplies the effects it has (its plugins are such
callables); small numpy pieces supply what it lacks: wow and flutter (a delay line whose delay
moves slowly and quickly, so the pitch wobbles) and vinyl crackle and hiss.

`lofi_amount` scales every step from 0 (left out: the clean sound, bit for bit) to 1 (the
depths in `LofiConfig`). Example:

    chain = build_chain(LofiConfig(), amount=0.7, sample_rate_hz=44100)
    chain = [step for step in chain if step.name != "reverb"]   # drop a step
    wet = apply_chain(chain, dry, 44100)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from midimix.config import check_range

Effect = Callable[[np.ndarray, float], np.ndarray]
CENTS_PER_OCTAVE = 1200.0
OPEN_CUTOFF_HZ = 20_000.0  # a low-pass at amount 0 would sit here: above hearing


@dataclass
class LofiConfig:
    """Depth of each effect at lofi_amount = 1; each is scaled by the amount. 0 turns a step off."""

    lowpass_hz: float = 3_200.0  # Hz: warm, rolled-off highs (24 dB/octave ladder filter)
    resample_hz: float = 11_025.0  # Hz: rate of an old sampler, aliasing and all
    bit_depth: float = 10.0  # bit-depth reduction (24 bits at amount 0)
    saturation_db: float = 9.0  # tape saturation drive (tanh), level compensated
    wow_cents: float = 12.0  # slow pitch wobble: a warped record / stretched tape
    wow_hz: float = 0.5  # how often the slow wobble goes round, per second
    flutter_cents: float = 4.0  # fast pitch wobble of a tape transport
    flutter_hz: float = 6.0  # how often the fast wobble goes round, per second
    crackle_per_second: float = 8.0  # vinyl clicks per second
    crackle_db: float = -30.0  # peak level of the loudest clicks, dBFS
    hiss_db: float = -48.0  # RMS level of the hiss, dBFS
    compressor_ratio: float = 3.0  # gentle glue
    compressor_threshold_db: float = -24.0  # dBFS where the compressor starts to act
    chorus_mix: float = 0.25  # 0..1: a little detune and width
    reverb_wet: float = 0.18  # 0..1: level of a small room
    reverb_room_size: float = 0.35  # 0..1, pedalboard's Reverb room size
    seed: int = 0  # crackle and hiss are random, but the same for the same seed

    def __post_init__(self) -> None:
        check_range("lowpass_hz", self.lowpass_hz, 0, OPEN_CUTOFF_HZ)
        check_range("resample_hz", self.resample_hz, 0, 192_000)
        check_range("bit_depth", self.bit_depth, 0, 24)
        check_range("saturation_db", self.saturation_db, 0, 40)
        check_range("wow_cents", self.wow_cents, 0, 100)
        check_range("wow_hz", self.wow_hz, 0.01, 20)
        check_range("flutter_cents", self.flutter_cents, 0, 100)
        check_range("flutter_hz", self.flutter_hz, 0.01, 50)
        check_range("crackle_per_second", self.crackle_per_second, 0, 1000)
        check_range("crackle_db", self.crackle_db, -120, 0)
        check_range("hiss_db", self.hiss_db, -120, 0)
        check_range("compressor_ratio", self.compressor_ratio, 1, 20)
        check_range("compressor_threshold_db", self.compressor_threshold_db, -60, 0)
        check_range("chorus_mix", self.chorus_mix, 0, 1)
        check_range("reverb_wet", self.reverb_wet, 0, 1)
        check_range("reverb_room_size", self.reverb_room_size, 0, 1)


@dataclass
class Step:
    """One effect of the chain, named so that it can be found, dropped or replaced."""

    name: str
    effect: Effect

    def __call__(self, audio: np.ndarray, sample_rate_hz: float) -> np.ndarray:
        return self.effect(audio, sample_rate_hz)


def cents_to_ratio(cents: float) -> float:
    return float(2.0 ** (cents / CENTS_PER_OCTAVE))


def db_to_gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


class WowFlutter:
    """Pitch wobble from a time-varying delay line (read with linear interpolation).

    Reading a signal at t - d(t) scales its frequency by 1 - d'(t). For d(t) = A sin(2 pi f t),
    the largest ratio is 1 + 2 pi f A, so a depth of c cents needs
    A = (2^(c/1200) - 1) / (2 pi f) seconds. Slow (wow) and fast (flutter) terms add."""

    def __init__(
        self, wow_cents: float, wow_hz: float, flutter_cents: float, flutter_hz: float
    ) -> None:
        self.terms = [(c, f) for c, f in ((wow_cents, wow_hz), (flutter_cents, flutter_hz)) if c]

    def amplitudes_s(self) -> np.ndarray:
        """Each term's delay amplitude in seconds: a depth of c cents at f Hz."""
        return np.array(
            [
                (cents_to_ratio(cents) - 1.0) / (2 * math.pi * rate_hz)
                for cents, rate_hz in self.terms
            ]
        )

    def delay_seconds(self, t_seconds: np.ndarray) -> np.ndarray:
        delay = np.zeros_like(t_seconds)
        for amplitude_s, (_, rate_hz) in zip(self.amplitudes_s(), self.terms, strict=True):
            # offset by the amplitude so the delay never goes negative (never reads the future)
            delay += amplitude_s * (1.0 + np.sin(2 * math.pi * rate_hz * t_seconds))
        return delay

    def __call__(self, audio: np.ndarray, sample_rate_hz: float) -> np.ndarray:
        from midimix import lofi_kernel  # numba: loaded when a chain first wobbles

        lofi_kernel.warm()
        rates_hz = np.array([rate_hz for _, rate_hz in self.terms], dtype=np.float64)
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        return lofi_kernel.read_delayed(audio, self.amplitudes_s(), rates_hz, float(sample_rate_hz))

    def read_with_numpy(self, audio: np.ndarray, sample_rate_hz: float) -> np.ndarray:
        """What `__call__` computes, in numpy (a dozen passes; the test's reference)."""
        n = audio.shape[-1]
        t_seconds = np.arange(n, dtype=np.float64) / sample_rate_hz
        read_at = np.arange(n) - self.delay_seconds(t_seconds) * sample_rate_hz
        read_at = np.clip(read_at, 0, n - 1)
        index = np.minimum(read_at.astype(np.int64), n - 2)
        frac = (read_at - index).astype(np.float32)
        # linear interpolation between neighbours, all channels at once
        return audio[:, index] * (1 - frac) + audio[:, index + 1] * frac


class VinylNoise:
    """Vinyl crackle (sparse, decaying clicks) and a soft bed of hiss, seeded."""

    def __init__(
        self, crackle_per_second: float, crackle_db: float, hiss_db: float | None, seed: int
    ) -> None:
        self.crackle_per_second = crackle_per_second
        self.crackle_gain = db_to_gain(crackle_db)
        self.hiss_gain = 0.0 if hiss_db is None else db_to_gain(hiss_db)
        self.seed = seed

    def noise(self, n: int, sample_rate_hz: float) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        out = np.zeros(n)
        clicks = rng.poisson(self.crackle_per_second * n / sample_rate_hz)
        if clicks:
            at = rng.integers(0, n, clicks)
            # click heights spread over ~20 dB, half of them inverted
            out[at] = (
                self.crackle_gain * rng.choice([-1.0, 1.0], clicks) * rng.uniform(0.1, 1, clicks)
            )
            # each click rings down with a 0.3 ms time constant: a one-pole filter's impulse
            # response, added at each (sparse) click instead of filtering every sample
            pole = math.exp(-1.0 / (0.0003 * sample_rate_hz))
            ring = pole ** np.arange(max(1, math.ceil(math.log(1e-12) / math.log(pole))))
            starts = np.flatnonzero(out)  # one click per sample (draws may repeat a sample)
            heights = out[starts]
            out[:] = 0.0
            for start, height in zip(starts.tolist(), heights.tolist(), strict=True):
                stop = min(n, start + len(ring))
                out[start:stop] += height * ring[: stop - start]
        if self.hiss_gain:
            out += self.hiss_gain * rng.standard_normal(n, dtype=np.float32)
        return out.astype(np.float32)

    def __call__(self, audio: np.ndarray, sample_rate_hz: float) -> np.ndarray:
        return audio + self.noise(audio.shape[-1], sample_rate_hz)[np.newaxis, :]


def saturation(drive_db: float) -> Effect:
    """Soft tanh saturation with its small-signal gain taken back out, so the level stays.

    The same curve as pedalboard's Distortion followed by Gain(-drive_db), in numpy: one
    vectorised tanh is several times faster than the two plugins."""
    drive = db_to_gain(drive_db)

    def saturate(audio: np.ndarray, sample_rate_hz: float) -> np.ndarray:
        return np.tanh(audio * drive) / drive

    return saturate


def _scaled_log(full: float, open_value: float, amount: float) -> float:
    """Move from open_value (amount 0) to full (amount 1) on a log scale, as ears hear."""
    return float(open_value * (full / open_value) ** amount)


def build_chain(config: LofiConfig, amount: float, sample_rate_hz: float) -> list[Step]:
    """The lo-fi chain for `amount` in [0, 1]. Steps at zero depth are left out."""
    import pedalboard as pb  # here, not at the top: LofiConfig and --help stay light

    check_range("lofi_amount", amount, 0, 1)
    if amount == 0:
        return []
    nyquist_hz = sample_rate_hz / 2
    c = config
    steps: list[Step] = []
    if c.saturation_db:
        steps.append(Step("saturation", saturation(c.saturation_db * amount)))
    if c.wow_cents or c.flutter_cents:
        wobble = WowFlutter(c.wow_cents * amount, c.wow_hz, c.flutter_cents * amount, c.flutter_hz)
        steps.append(Step("wow_flutter", wobble))
    if c.compressor_ratio > 1:
        ratio = 1 + (c.compressor_ratio - 1) * amount
        comp = pb.Compressor(c.compressor_threshold_db, ratio, attack_ms=15, release_ms=200)
        steps.append(Step("compressor", comp))
    if c.chorus_mix:
        steps.append(Step("chorus", pb.Chorus(rate_hz=0.8, depth=0.15, mix=c.chorus_mix * amount)))
    if c.reverb_wet:
        room = pb.Reverb(room_size=c.reverb_room_size, wet_level=c.reverb_wet * amount, dry_level=1)
        steps.append(Step("reverb", room))
    if c.resample_hz and c.resample_hz < sample_rate_hz:
        target_hz = _scaled_log(c.resample_hz, sample_rate_hz, amount)
        # zero-order hold: the stair-step aliasing of an old sampler is the point
        quality = pb.Resample.Quality.ZeroOrderHold
        steps.append(Step("resample", pb.Resample(target_sample_rate=target_hz, quality=quality)))
    if c.bit_depth:
        bits = 24 - (24 - c.bit_depth) * amount
        steps.append(Step("bitcrush", pb.Bitcrush(bit_depth=bits)))
    if c.crackle_per_second or c.hiss_db > -120:
        hiss_db = c.hiss_db + 20 * math.log10(amount)  # quieter hiss for a lighter touch
        vinyl = VinylNoise(c.crackle_per_second * amount, c.crackle_db, hiss_db, c.seed)
        steps.append(Step("vinyl", vinyl))
    if c.lowpass_hz:
        cutoff_hz = min(_scaled_log(c.lowpass_hz, OPEN_CUTOFF_HZ, amount), 0.45 * sample_rate_hz)
        steps.append(lowpass_step(min(cutoff_hz, nyquist_hz)))
    return steps


def lowpass_step(cutoff_hz: float) -> Step:
    """The chain's low-pass alone (24 dB/octave; pedalboard's LowpassFilter is only 6)."""
    import pedalboard as pb

    mode = pb.LadderFilter.Mode.LPF24
    return Step("lowpass", pb.LadderFilter(mode=mode, cutoff_hz=cutoff_hz, resonance=0, drive=1))


def apply_chain(steps: list[Step], audio: np.ndarray, sample_rate_hz: float) -> np.ndarray:
    """Run `audio` (channels, samples) through the steps in order; float32 in, float32 out."""
    out = np.ascontiguousarray(audio, dtype=np.float32)
    for step in steps:
        out = np.ascontiguousarray(step(out, sample_rate_hz), dtype=np.float32)
    return out
