"""inspect: four PNG views with labelled axes, a combined figure and a before/after comparison."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from audio_fixtures import tone, write_tone

from midimix.errors import InputError
from midimix.inspect import VIEWS, InspectConfig, inspect, main, spectrum_db, view_figure

RATE = 22050
CONFIG = InspectConfig(n_fft=1024, hop_length=256, n_mels=64, dpi=40)
LABELS = {
    "waveform": ("Time (s)", "Amplitude (full scale)"),
    "spectrum": ("Frequency (Hz)", "Magnitude (dB re peak)"),
    "spectrogram": ("Time (s)", "Frequency (Hz)"),
    "mel": ("Time (s)", "Frequency (Hz, mel scale)"),
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("view", VIEWS)
def test_each_view_has_labelled_axes(view: str) -> None:
    figure = view_figure(view, tone(1.0, RATE), RATE, CONFIG)
    ax = figure.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == LABELS[view]
    if view in ("spectrogram", "mel"):  # the colour bar gives the dB scale
        assert figure.axes[1].get_ylabel() == "Level (dB re peak)"


def test_spectrum_peaks_at_the_tone() -> None:
    freqs_hz, db = spectrum_db(tone(1.0, RATE, frequency_hz=1000.0), RATE)
    assert freqs_hz[np.argmax(db)] == pytest.approx(1000.0, abs=1.0)
    assert db.max() == 0.0 and db.min() >= -100.0


def test_inspect_writes_four_views_and_a_combined_png(tmp_path: Path) -> None:
    clip = write_tone(tmp_path / "clip.wav", 1.5, RATE)
    written = inspect(clip, tmp_path / "png", CONFIG)
    assert [p.name for p in written] == [f"clip_{v}.png" for v in VIEWS] + ["clip_views.png"]
    for path in written:
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 2000


def test_compare_two_files(tmp_path: Path) -> None:
    before = write_tone(tmp_path / "dry.wav", 1.0, 44100)
    after = write_tone(tmp_path / "wet.flac", 1.0, 22050, frequency_hz=220.0)
    (path,) = inspect([before, after], tmp_path, CONFIG)
    assert path.name == "dry_vs_wet_spectrogram.png"
    assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_not_audio_is_a_clear_error(tmp_path: Path) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("not audio\n" * 30)
    with pytest.raises(InputError, match="notes.wav: not an audio file"):
        inspect(text, tmp_path, CONFIG)


def test_command_line_writes_the_views_with_the_flags_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = write_tone(tmp_path / "clip.wav", 1.0, RATE)
    out = tmp_path / "png"
    assert main([str(clip), "--out-dir", str(out), "--n-fft", "512", "--dpi", "30"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"clip_{v}.png" for v in VIEWS] + ["clip_views.png"]
    )
    assert "inspect: wrote 5 PNG files" in capsys.readouterr().out
    # a hop longer than the window is refused by the config's own check, as one line
    assert main([str(clip), "--out-dir", str(out), "--n-fft", "512", "--hop-length", "1024"]) == 2
    assert "hop_length must be in [1, 512], got 1024" in capsys.readouterr().err
