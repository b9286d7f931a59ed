"""inspect: the four views of a piece of audio that people learn audio with, as PNG files.

- waveform: amplitude over time (the time domain);
- spectrum: magnitude of the DFT of the whole excerpt, in dB over Hz;
- spectrogram: short-time Fourier transform (STFT), dB, over time and Hz;
- mel spectrogram: the STFT's power pooled into mel bands (closer to how pitch is heard), dB.

One PNG each plus one combined figure. Given two files (before and after, e.g. a render
without and with the lo-fi chain) it draws their spectrograms side by side on one dB scale.

    python -m midimix.inspect data/clips/lofi/3f2a9c0d1e4b5a6c_0000.wav --out-dir out/inspect
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from midimix.config import OUT_DIR, check_range
from midimix.errors import ConfigError, InputError, cli_errors
from midimix.manifest import atomic_path
from midimix.options import add_config_arguments, config_from_args, stage_parser

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

VIEWS = ("waveform", "spectrum", "spectrogram", "mel")
TIME_LABEL = "Time (s)"
FREQ_LABEL = "Frequency (Hz)"
DB_FLOOR = -100.0  # dB below the loudest bin where plots stop: below the 16-bit noise floor


@dataclass
class InspectConfig:
    sample_rate_hz: int | None = None  # resample to this rate; none: the file's own (spectra
    # reach its Nyquist)
    offset_seconds: float = 0.0  # where the excerpt starts, in seconds from the file's start
    max_seconds: float = 30.0  # excerpt length: one clip; plots of hours are unreadable
    n_fft: int = 2048  # STFT window in samples: 93 ms at 22,050 Hz, a usual music resolution
    hop_length: int = 512  # STFT step in samples: a quarter window, smooth in time
    n_mels: int = 128  # mel bands of the mel spectrogram (128: librosa's default)
    dpi: int = 100  # resolution of the PNG files, dots per inch

    def __post_init__(self) -> None:
        if self.sample_rate_hz is not None:
            check_range("sample_rate_hz", self.sample_rate_hz, 1000, 384000)
        check_range("offset_seconds", self.offset_seconds, 0)
        check_range("max_seconds", self.max_seconds, 0.01, 3600)
        check_range("n_fft", self.n_fft, 16, 1 << 16)
        check_range("hop_length", self.hop_length, 1, self.n_fft)
        check_range("n_mels", self.n_mels, 1, 512)
        check_range("dpi", self.dpi, 20, 600)


def _figure(width_in: float = 8.0, height_in: float = 3.5) -> Figure:
    # A bare Figure renders with the Agg canvas and touches no pyplot global state, so
    # this works without a display and in worker processes.
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), layout="constrained")


def draw_waveform(ax: Axes, samples: np.ndarray, sample_rate_hz: int) -> None:
    times = np.arange(len(samples)) / sample_rate_hz
    ax.plot(times, samples, linewidth=0.5)
    ax.set(xlabel=TIME_LABEL, ylabel="Amplitude (full scale)", title="Waveform")
    ax.set_xlim(0, max(len(samples) / sample_rate_hz, 1 / sample_rate_hz))
    ax.set_ylim(-1.05, 1.05)


def spectrum_db(samples: np.ndarray, sample_rate_hz: int) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies in Hz, DFT magnitude in dB relative to the peak) of a Hann-windowed signal."""
    window = np.hanning(len(samples)) if len(samples) > 1 else np.ones(len(samples))
    magnitude = np.abs(np.fft.rfft(samples * window))
    db = 20 * np.log10(np.maximum(magnitude, 1e-12) / max(float(magnitude.max()), 1e-12))
    return np.fft.rfftfreq(len(samples), 1 / sample_rate_hz), np.maximum(db, DB_FLOOR)


def draw_spectrum(ax: Axes, samples: np.ndarray, sample_rate_hz: int) -> None:
    freqs_hz, db = spectrum_db(samples, sample_rate_hz)
    ax.plot(freqs_hz, db, linewidth=0.5)
    ax.set(xlabel=FREQ_LABEL, ylabel="Magnitude (dB re peak)", title="Spectrum (DFT)")
    ax.set_xlim(0, sample_rate_hz / 2)


def _stft_db(samples: np.ndarray, config: InspectConfig) -> np.ndarray:
    import librosa

    power = np.abs(librosa.stft(samples, n_fft=config.n_fft, hop_length=config.hop_length)) ** 2
    return np.asarray(librosa.power_to_db(power, ref=np.max, top_db=-DB_FLOOR))


def _mel_db(samples: np.ndarray, sample_rate_hz: int, config: InspectConfig) -> np.ndarray:
    import librosa

    mel = librosa.feature.melspectrogram(
        y=samples, sr=sample_rate_hz, n_fft=config.n_fft, hop_length=config.hop_length,
        n_mels=config.n_mels,
    )  # fmt: skip
    return np.asarray(librosa.power_to_db(mel, ref=np.max, top_db=-DB_FLOOR))


def _show(
    ax: Axes, db: np.ndarray, sample_rate_hz: int, config: InspectConfig, y_axis: str
) -> None:
    import librosa.display

    image = librosa.display.specshow(
        db, sr=sample_rate_hz, hop_length=config.hop_length, n_fft=config.n_fft,
        x_axis="time", y_axis=y_axis, ax=ax, vmin=DB_FLOOR, vmax=0.0,
    )  # fmt: skip
    ax.figure.colorbar(image, ax=ax, format="%+.0f dB", label="Level (dB re peak)")
    ax.set_xlabel(TIME_LABEL)


def draw_spectrogram(
    ax: Axes, samples: np.ndarray, sample_rate_hz: int, config: InspectConfig
) -> None:
    _show(ax, _stft_db(samples, config), sample_rate_hz, config, "log")
    ax.set(ylabel=FREQ_LABEL, title="Spectrogram (STFT)")


def draw_mel(ax: Axes, samples: np.ndarray, sample_rate_hz: int, config: InspectConfig) -> None:
    _show(ax, _mel_db(samples, sample_rate_hz, config), sample_rate_hz, config, "mel")
    ax.set(ylabel="Frequency (Hz, mel scale)", title=f"Mel spectrogram ({config.n_mels} bands)")


def view_figure(
    view: str, samples: np.ndarray, sample_rate_hz: int, config: InspectConfig
) -> Figure:
    """One view as its own figure."""
    figure = _figure()
    _draw(view, figure.add_subplot(), samples, sample_rate_hz, config)
    return figure


def combined_figure(samples: np.ndarray, sample_rate_hz: int, config: InspectConfig) -> Figure:
    """The four views in a 2 x 2 grid."""
    figure = _figure(14.0, 8.0)
    for ax, view in zip(figure.subplots(2, 2).flat, VIEWS, strict=True):
        _draw(view, ax, samples, sample_rate_hz, config)
    return figure


def _draw(view: str, ax: Axes, samples: np.ndarray, rate_hz: int, config: InspectConfig) -> None:
    if view == "waveform":
        draw_waveform(ax, samples, rate_hz)
    elif view == "spectrum":
        draw_spectrum(ax, samples, rate_hz)
    elif view == "spectrogram":
        draw_spectrogram(ax, samples, rate_hz, config)
    else:
        draw_mel(ax, samples, rate_hz, config)


def compare_figure(
    before: tuple[np.ndarray, int], after: tuple[np.ndarray, int], labels: tuple[str, str],
    config: InspectConfig,
) -> Figure:  # fmt: skip
    """Spectrograms of two signals side by side, on the same dB scale and frequency axis."""
    figure = _figure(14.0, 4.5)
    for ax, (samples, rate_hz), label in zip(
        figure.subplots(1, 2), (before, after), labels, strict=True
    ):
        draw_spectrogram(ax, samples, rate_hz, config)
        ax.set_title(f"Spectrogram (STFT): {label}")
    return figure


def load_excerpt(path: Path, config: InspectConfig) -> tuple[np.ndarray, int]:
    from midimix.audio import AudioError, read_mono

    try:
        samples, rate_hz = read_mono(
            path, config.sample_rate_hz, config.offset_seconds, config.max_seconds
        )
    except AudioError as error:
        raise InputError(f"{path}: {error}") from error
    if len(samples) < 2:
        raise InputError(
            f"{path}: no audio after offset_seconds={config.offset_seconds:g}; "
            "lower --offset-seconds"
        )
    return samples, rate_hz


def save_figure(figure: Figure, path: Path, dpi: int) -> Path:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, format="png")
    return path


def inspect(audio_path: Path | Sequence[Path], out_dir: Path, config: InspectConfig) -> list[Path]:
    """Write `<stem>_<view>.png` for the four views and `<stem>_views.png` combining them.

    With two paths (before, after) write `<before>_vs_<after>_spectrogram.png` instead."""
    paths = [Path(audio_path)] if isinstance(audio_path, str | Path) else list(audio_path)
    out_dir = Path(out_dir)
    if len(paths) == 2:
        before, after = (load_excerpt(p, config) for p in paths)
        labels = (paths[0].name, paths[1].name)
        figure = compare_figure(before, after, labels, config)
        name = f"{paths[0].stem}_vs_{paths[1].stem}_spectrogram.png"
        return [save_figure(figure, out_dir / name, config.dpi)]
    if len(paths) != 1:
        raise ConfigError(f"inspect takes one audio file, or two to compare; got {len(paths)}")
    samples, rate_hz = load_excerpt(paths[0], config)
    stem = paths[0].stem
    written = [
        save_figure(
            view_figure(view, samples, rate_hz, config), out_dir / f"{stem}_{view}.png", config.dpi
        )
        for view in VIEWS
    ]
    combined = combined_figure(samples, rate_hz, config)
    written.append(save_figure(combined, out_dir / f"{stem}_views.png", config.dpi))
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser("inspect", __doc__)
    parser.add_argument("audio", type=Path, nargs="+", help="one audio file, or two to compare")
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=OUT_DIR / "inspect",
        help="folder the PNG files are written to (default: %(default)s)",
    )
    add_config_arguments(parser, InspectConfig)
    return parser


@cli_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(InspectConfig, args)
    for path in args.audio:
        if not path.is_file():
            raise InputError(f"{path} does not exist; expected an audio file")
    written = inspect(args.audio, args.out_dir, config)
    print(f"inspect: wrote {len(written)} PNG files to {args.out_dir}")
    for path in written:
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
