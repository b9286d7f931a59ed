"""Sine-tone fixtures for the audio stages, generated in code."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf


def tone(
    seconds: float,
    sample_rate_hz: int = 22050,
    frequency_hz: float = 440.0,
    channels: int = 1,
    amplitude: float = 0.5,
) -> np.ndarray:
    """A sine tone, shape (frames,) for mono or (frames, channels)."""
    frames = round(seconds * sample_rate_hz)
    wave = amplitude * np.sin(2 * np.pi * frequency_hz * np.arange(frames) / sample_rate_hz)
    wave = wave.astype(np.float32)
    return wave if channels == 1 else np.repeat(wave[:, None], channels, axis=1)


def write_tone(
    path: Path,
    seconds: float,
    sample_rate_hz: int = 22050,
    frequency_hz: float = 440.0,
    channels: int = 1,
    amplitude: float = 0.5,
    subtype: str | None = None,
) -> Path:
    """Write a tone; the format comes from the suffix, `subtype` picks the sample format."""
    samples = tone(seconds, sample_rate_hz, frequency_hz, channels, amplitude)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, sample_rate_hz, subtype=subtype)
    return path


def encode(source: Path, target: Path, *options: str) -> Path:
    """Encode with ffmpeg (mp3, m4a, ...), format from the target's suffix."""
    target.parent.mkdir(parents=True, exist_ok=True)
    command = ["ffmpeg", "-v", "error", "-y", "-i", str(source), *options, str(target)]
    subprocess.run(command, check=True)
    return target


def peak_frequency_hz(samples: np.ndarray, sample_rate_hz: int) -> float:
    """The frequency of the largest DFT magnitude (Hann window)."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / sample_rate_hz)[int(np.argmax(spectrum))])
