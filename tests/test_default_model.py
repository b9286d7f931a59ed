"""The embedded default model: what a user gets right after set-up, with no data and no training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
from symusic import Score

from midimix.evaluate import GenreClassifier
from midimix.generate import DEFAULT_MODEL_DIR, GenerateConfig, generate
from midimix.generate.__main__ import audio_renderer
from midimix.model import load_checkpoint

MAX_MODEL_BYTES = 25 * 1024 * 1024
TARGET_LUFS = -16.0  # the render stage's default


def test_default_model_ships_complete_and_small() -> None:
    for name in ("model.safetensors", "config.json", "tokenizer.json", "midimix.json"):
        assert (DEFAULT_MODEL_DIR / name).is_file(), name
    assert (DEFAULT_MODEL_DIR / "MODEL_CARD.md").is_file()
    assert (DEFAULT_MODEL_DIR / "model.safetensors").stat().st_size <= MAX_MODEL_BYTES
    model, tokenizer, meta = load_checkpoint(DEFAULT_MODEL_DIR)
    assert sorted(tokenizer.genres) == ["classical", "lofi"]
    assert meta["genre_sensitivity"] >= 0.9
    assert meta["val_loss"] < meta["unigram_val_loss"]


def test_default_mix_is_midi_with_notes_and_audio_at_the_target_loudness(tmp_path: Path) -> None:
    config = GenerateConfig(genre_mix={"lofi": 0.7, "classical": 0.3}, bars=4, seed=3)
    (piece,) = generate(out_dir=tmp_path, config=config, render_audio=audio_renderer())
    assert piece.bars == 4
    assert Score(str(piece.midi_path)).note_num() == piece.notes > 0
    assert piece.audio_path is not None
    audio, rate = sf.read(piece.audio_path, dtype="float64")
    peak_dbfs = 20 * np.log10(np.max(np.abs(audio)))
    assert peak_dbfs <= -1.0 + 0.05  # unclipped, with the render stage's -1 dBFS headroom
    assert np.sqrt(np.mean(audio**2)) > 1e-3  # not silent
    lufs = pyloudnorm.Meter(rate).integrated_loudness(audio)
    assert abs(lufs - TARGET_LUFS) <= 1.0
    record = json.loads(piece.provenance_path.read_text())
    assert record["weights"] == {"lofi": 0.7, "classical": 0.3}


@pytest.fixture(scope="module")
def p_lofi_by_weight(tmp_path_factory: pytest.TempPathFactory) -> dict[float, float]:
    """Mean P(lofi), by the classifier shipped with the model, of 6 pieces per lo-fi weight."""
    classifier = GenreClassifier.load(DEFAULT_MODEL_DIR / "genre_classifier.json")
    out: dict[float, float] = {}
    for weight in (0.0, 0.5, 1.0):
        mix = {"lofi": weight, "classical": 1.0 - weight}
        config = GenerateConfig(genre_mix=mix, bars=4, num_samples=6, seed=11, render=False)
        folder = tmp_path_factory.mktemp(f"w{weight:g}")
        pieces = generate(out_dir=folder, config=config)  # the embedded model by default
        probs = classifier.predict_proba([p.midi_path for p in pieces])
        out[weight] = float(np.mean([p["lofi"] for p in probs]))
    return out


def test_single_genre_outputs_are_recognised_as_their_genre(
    p_lofi_by_weight: dict[float, float],
) -> None:
    assert p_lofi_by_weight[1.0] > 0.5
    assert p_lofi_by_weight[0.0] < 0.5


def test_half_mix_lands_between_the_genres(p_lofi_by_weight: dict[float, float]) -> None:
    assert p_lofi_by_weight[0.0] < p_lofi_by_weight[0.5] < p_lofi_by_weight[1.0]
