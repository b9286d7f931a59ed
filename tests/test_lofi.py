"""The lo-fi chain, measured on test signals: white noise, a 440 Hz tone, silence."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from midimix.errors import ConfigError
from midimix.lofi import (
    LofiConfig,
    VinylNoise,
    WowFlutter,
    apply_chain,
    build_chain,
    lowpass_step,
)

RATE_HZ = 44_100


def white_noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((2, int(seconds * RATE_HZ)))).astype(np.float32)


def tone(freq_hz: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE_HZ)) / RATE_HZ
    mono = 0.5 * np.sin(2 * np.pi * freq_hz * t)
    return np.stack([mono, mono]).astype(np.float32)


def attenuation_db(dry: np.ndarray, wet: np.ndarray, freq_hz: float) -> float:
    """How far `wet` sits below `dry` at `freq_hz` (Welch power spectra)."""
    f, p_dry = signal.welch(dry[0], RATE_HZ, nperseg=4096)
    _, p_wet = signal.welch(wet[0], RATE_HZ, nperseg=4096)
    return float(-10 * np.log10(np.interp(freq_hz, f, p_wet) / np.interp(freq_hz, f, p_dry)))


def pitch_deviation_cents(audio: np.ndarray, freq_hz: float) -> np.ndarray:
    """Instantaneous frequency (Hilbert phase) of a tone, as cents away from `freq_hz`."""
    phase = np.unwrap(np.angle(signal.hilbert(audio[0].astype(np.float64))))
    inst_hz = np.diff(phase) * RATE_HZ / (2 * np.pi)
    inst_hz = np.convolve(inst_hz, np.ones(441) / 441, mode="valid")  # 10 ms: remove ripple
    trim = RATE_HZ // 2  # the ends of a Hilbert transform ring
    return 1200 * np.log2(inst_hz[trim:-trim] / freq_hz)


@pytest.mark.parametrize("cutoff_hz", [1_000.0, 3_200.0])
def test_lowpass_leaves_white_noise_20_db_down_at_twice_the_cutoff(cutoff_hz: float) -> None:
    noise = white_noise(2.0)
    wet = apply_chain([lowpass_step(cutoff_hz)], noise, RATE_HZ)
    assert attenuation_db(noise, wet, 2 * cutoff_hz) >= 20.0
    assert attenuation_db(noise, wet, cutoff_hz / 4) < 1.5  # the pass band is left alone


def test_chain_lowpass_at_full_amount_uses_the_configured_cutoff() -> None:
    steps = build_chain(LofiConfig(lowpass_hz=2_000.0), amount=1.0, sample_rate_hz=RATE_HZ)
    lowpass = [step for step in steps if step.name == "lowpass"]
    noise = white_noise(2.0)
    wet = apply_chain(lowpass, noise, RATE_HZ)
    assert attenuation_db(noise, wet, 4_000.0) >= 20.0


@pytest.mark.parametrize(("wow_cents", "flutter_cents"), [(20.0, 0.0), (0.0, 8.0), (12.0, 4.0)])
def test_wow_and_flutter_move_the_pitch_by_the_set_depth(
    wow_cents: float, flutter_cents: float
) -> None:
    wobble = WowFlutter(wow_cents, 0.5, flutter_cents, 6.0)
    deviation = pitch_deviation_cents(wobble(tone(440.0, 5.0), RATE_HZ), 440.0)
    depth = wow_cents + flutter_cents  # the peaks of the two add up within 5 s
    assert np.max(np.abs(deviation)) == pytest.approx(depth, abs=0.1 * depth + 0.5)
    assert np.max(deviation) > 0.8 * depth and np.min(deviation) < -0.8 * depth


def test_compiled_delay_line_gives_the_numpy_samples_bit_for_bit() -> None:
    wobble = WowFlutter(12.0, 0.5, 4.0, 6.0)
    noise = white_noise(3.0)
    wet = wobble(noise, RATE_HZ)
    assert wet.dtype == np.float32 and wet.shape == noise.shape
    assert np.array_equal(wet, wobble.read_with_numpy(noise, RATE_HZ))
    assert not np.array_equal(wet, noise)  # it did move the samples
    one = noise[:, :1]
    assert np.array_equal(wobble(one, RATE_HZ), one)  # one sample: nothing to read between


def test_wow_depth_follows_the_lofi_amount() -> None:
    config = LofiConfig(wow_cents=20.0, flutter_cents=0.0)
    steps = build_chain(config, amount=0.5, sample_rate_hz=RATE_HZ)
    wobble = [step for step in steps if step.name == "wow_flutter"]
    deviation = pitch_deviation_cents(apply_chain(wobble, tone(440.0, 5.0), RATE_HZ), 440.0)
    assert np.max(np.abs(deviation)) == pytest.approx(10.0, abs=1.0)


def test_amount_zero_is_an_empty_chain_and_leaves_audio_untouched() -> None:
    noise = white_noise(0.5)
    assert build_chain(LofiConfig(), amount=0.0, sample_rate_hz=RATE_HZ) == []
    assert np.array_equal(apply_chain([], noise, RATE_HZ), noise)


def test_high_frequencies_fall_as_the_amount_rises() -> None:
    noise = white_noise(1.0)
    losses = []
    for amount in (0.25, 0.5, 1.0):
        wet = apply_chain(build_chain(LofiConfig(), amount, RATE_HZ), noise, RATE_HZ)
        losses.append(attenuation_db(noise, wet, 8_000.0))
    assert losses[0] < losses[1] < losses[2]


def test_vinyl_noise_is_seeded_and_hiss_sits_at_its_level() -> None:
    silence = np.zeros((2, RATE_HZ * 2), dtype=np.float32)
    hiss_only = VinylNoise(0.0, -30.0, -40.0, seed=3)(silence, RATE_HZ)
    rms_db = 20 * np.log10(np.sqrt(np.mean(hiss_only**2)))
    assert rms_db == pytest.approx(-40.0, abs=0.5)
    crackle = VinylNoise(10.0, -30.0, None, seed=3)
    assert np.array_equal(crackle(silence, RATE_HZ), crackle(silence, RATE_HZ))
    other = VinylNoise(10.0, -30.0, None, seed=4)(silence, RATE_HZ)
    assert not np.array_equal(crackle(silence, RATE_HZ), other)
    assert np.max(np.abs(other)) <= 10 ** (-30 / 20) + 1e-6  # no click above its peak level


def test_bad_settings_name_the_field_and_range() -> None:
    with pytest.raises(ConfigError, match=r"bit_depth must be in \[0, 24\], got 30"):
        LofiConfig(bit_depth=30)
    with pytest.raises(ConfigError, match="lofi_amount"):
        build_chain(LofiConfig(), amount=1.5, sample_rate_hz=RATE_HZ)
