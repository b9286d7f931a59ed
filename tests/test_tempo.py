"""Tempo without octave errors, drums only where there are drums, and a JIT cache per user.

The audio is rendered by the render stage's synthesizer from known scores (benchmarks/
tempo_set.py); no basic-pitch runs here except in the concurrency test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from midimix.transcribe import TranscribeConfig
from midimix.transcribe_beats import (
    MIN_DRUM_SHARE,
    drum_hits,
    fold_tempo,
    percussive_share,
    pick_peaks,
    track_beats,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import tempo_set as ts  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def lofi_70() -> np.ndarray:
    """A rule-made lo-fi piece (swung, with drums) set to 70 BPM, 30 s, rendered."""
    from midimix.corpus.lofi import generate_lofi

    score, traits = generate_lofi(1000)
    assert traits.swing > 0.55 and any(t.is_drum for t in score.tracks)
    piece = ts.TempoPiece("lofi70", "lofi", 70.0, ts._set_tempo(score, 70.0), "lofi")
    return ts.render_clean(piece)


@pytest.fixture(scope="module")
def chorale_100() -> np.ndarray:
    """A Bach chorale on the piano at 100 BPM (no drums), 30 s, rendered."""
    pieces = ts.build_pieces(n_lofi=0, n_nodrums=0, n_fast=0, n_chorales=1, n_jazz=0)
    piece = pieces[0]
    piece.score = ts._set_tempo(piece.score, 100.0)
    return ts.render_clean(piece)


def test_fold_tempo_moves_by_octaves_into_the_range() -> None:
    assert fold_tempo(140.0, (60.0, 90.0)) == 70.0
    assert fold_tempo(35.0, (60.0, 90.0)) == 70.0
    assert fold_tempo(80.0, (60.0, 90.0)) == 80.0
    assert fold_tempo(100.0, (60.0, 90.0)) == 100.0  # nearer to 90 than 50 is to 60


def test_tempo_range_config_is_checked() -> None:
    assert TranscribeConfig(tempo_range="60-90").tempo_bounds() == (60.0, 90.0)
    assert TranscribeConfig().tempo_bounds() is None
    for bad in ("90-60", "fast", "0-90", "60-nan"):
        with pytest.raises(Exception, match="tempo_range"):
            TranscribeConfig(tempo_range=bad)


@pytest.mark.parametrize("condition", ["clean", "lofi100"])
def test_swung_lofi_at_70_bpm_with_a_range_comes_back_at_70(
    lofi_70: np.ndarray, condition: str
) -> None:
    audio = ts.degrade(lofi_70, condition)
    beats = track_beats(audio, ts.SAMPLE_RATE_HZ, tempo_range=(60.0, 90.0))
    assert beats.tempo_bpm == pytest.approx(70.0, rel=0.04)


def test_chorale_at_100_bpm_is_not_doubled_or_halved(chorale_100: np.ndarray) -> None:
    beats = track_beats(chorale_100, ts.SAMPLE_RATE_HZ)
    assert beats.tempo_bpm == pytest.approx(100.0, rel=0.04)


def test_drum_free_piano_gets_no_drum_track(chorale_100: np.ndarray) -> None:
    share = percussive_share(chorale_100, ts.SAMPLE_RATE_HZ)
    assert share < MIN_DRUM_SHARE
    seconds = len(chorale_100) / ts.SAMPLE_RATE_HZ
    hits = drum_hits(chorale_100, ts.SAMPLE_RATE_HZ) if share >= MIN_DRUM_SHARE else []
    assert len(hits) <= seconds / 10


def test_lofi_with_drums_passes_the_drum_gate(lofi_70: np.ndarray) -> None:
    assert percussive_share(ts.degrade(lofi_70, "lofi100"), ts.SAMPLE_RATE_HZ) >= MIN_DRUM_SHARE


PEAK_SETTINGS = [(1, 1, 4, 5, 0.07, 1), (3, 3, 10, 10, 0.2, 4), (3, 3, 10, 10, 0.4, 4)]
LIBROSA_PEAKS = """
import json, sys
import numpy as np
import librosa
data = np.load(sys.argv[1])
settings = json.loads(sys.argv[2])
print(json.dumps([[librosa.util.peak_pick(x, pre_max=a, post_max=b, pre_avg=c, post_avg=d,
                                          delta=e, wait=f).tolist() for x in data["x"]]
                  for a, b, c, d, e, f in settings]))
"""


def test_numpy_peak_picking_picks_librosas_frames(tmp_path: Path) -> None:
    """The drum bands' peak picker gives librosa.util.peak_pick's frames (with the drum bands'
    windows and with onset_detect's defaults), without its numba gufunc and disk cache.
    librosa runs in a child with a cache folder of its own: a gufunc compiled into a shared
    cache by two processes at once can crash every later load of it (numba issue 10128)."""
    import json
    import subprocess

    rng = np.random.default_rng(0)
    signals = (rng.random((20, 400)) ** 3).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=signals)
    child = subprocess.run(
        [sys.executable, "-c", LIBROSA_PEAKS, str(tmp_path / "x.npz"), json.dumps(PEAK_SETTINGS)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")},
    )  # fmt: skip
    assert child.returncode == 0, child.stderr
    theirs = json.loads(child.stdout)
    for setting, frames in zip(PEAK_SETTINGS, theirs, strict=True):
        for x, expected in zip(signals, frames, strict=True):
            ours = pick_peaks(x, *setting)
            assert ours.tolist() == expected and len(ours) > 5
