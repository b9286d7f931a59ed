"""The model file: presets, building, and checkpoints that save atomically and load with
clear errors for missing, corrupt or mismatched folders."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import torch
from transformers import GPT2LMHeadModel

import midimix.model as model_module
from midimix.errors import ConfigError, MidimixError
from midimix.model import (
    ModelConfig,
    build_model,
    count_parameters,
    load_checkpoint,
    resolve_preset,
    save_checkpoint,
)
from midimix.tokenize import GenreTokenizer, TokenizeConfig


@pytest.fixture(scope="module")
def tokenizer() -> GenreTokenizer:
    return GenreTokenizer.build(["high", "low"], TokenizeConfig())


def tiny(tokenizer: GenreTokenizer, seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    return build_model(
        tokenizer.vocab_size, "tiny", tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id
    )


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_build_model_follows_the_preset(tokenizer: GenreTokenizer) -> None:
    model = tiny(tokenizer)
    c = model.config
    assert (c.n_layer, c.n_embd, c.n_head, c.n_positions) == (2, 64, 2, 128)
    assert (c.vocab_size, c.pad_token_id, c.bos_token_id, c.eos_token_id) == (
        tokenizer.vocab_size,
        tokenizer.pad_id,
        tokenizer.bos_id,
        tokenizer.eos_id,
    )
    # embeddings (V + 128 positions) x 64, two blocks of 12*64^2 + 13*64, final norm 2*64
    v = tokenizer.vocab_size
    assert count_parameters(model) == (v + 128) * 64 + 2 * (12 * 64 * 64 + 13 * 64) + 2 * 64
    ids = torch.tensor([[tokenizer.bos_id, tokenizer.genre_id("low"), 10, 11, 12]])
    assert model(input_ids=ids).logits.shape == (1, 5, v)


def test_model_config_checks_its_values() -> None:
    assert resolve_preset("small") == ModelConfig(4, 256, 4, 512, 0.1)
    with pytest.raises(ConfigError, match="multiple of n_head"):
        ModelConfig(n_embd=100, n_head=3)
    with pytest.raises(ConfigError, match="tiny, small, base"):
        resolve_preset("huge")
    with pytest.raises(ConfigError, match="dropout"):
        ModelConfig(dropout=1.5)


def test_checkpoint_round_trip(tokenizer: GenreTokenizer, tmp_path: Path) -> None:
    model = tiny(tokenizer)
    meta = {"step": 7, "val_loss": 1.25, "val_loss_per_genre": {"high": 1.0, "low": 1.5}}
    save_checkpoint(model, tokenizer, meta, tmp_path / "best")
    names = sorted(p.name for p in (tmp_path / "best").iterdir())
    assert names == sorted(
        [
            "config.json",
            "generation_config.json",
            "model.safetensors",
            "tokenizer.json",
            "midimix.json",
        ]
    )
    assert [p.name for p in tmp_path.iterdir()] == ["best"]  # no temporary folders left
    loaded, loaded_tokenizer, loaded_meta = load_checkpoint(tmp_path / "best")
    assert same_weights(model, loaded)
    assert loaded.lm_head.weight.data_ptr() == loaded.transformer.wte.weight.data_ptr()  # tied
    assert loaded_meta == {"genres": ["high", "low"], **meta}
    assert loaded_tokenizer.vocab_size == tokenizer.vocab_size
    assert loaded_tokenizer.genre_ids == tokenizer.genre_ids
    ids = torch.tensor([[tokenizer.bos_id, tokenizer.genre_id("high"), 20, 21]])
    model.eval()
    assert torch.equal(model(input_ids=ids).logits, loaded(input_ids=ids).logits)


def test_failed_save_keeps_the_previous_checkpoint(
    tokenizer: GenreTokenizer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "best"
    first = tiny(tokenizer, seed=1)
    save_checkpoint(first, tokenizer, {"step": 1}, folder)

    def disk_full(folder: Path, meta: dict) -> None:  # weights are written, then the disk fills
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(model_module, "_write_meta", disk_full)
    with pytest.raises(MidimixError, match="disk is full.*previous checkpoint there is unchanged"):
        save_checkpoint(tiny(tokenizer, seed=2), tokenizer, {"step": 2}, folder)
    monkeypatch.undo()
    loaded, _, meta = load_checkpoint(folder)
    assert meta["step"] == 1
    assert same_weights(first, loaded)
    assert [p.name for p in tmp_path.iterdir()] == ["best"]


@pytest.fixture()
def saved(tokenizer: GenreTokenizer, tmp_path: Path) -> Path:
    return save_checkpoint(tiny(tokenizer), tokenizer, {"step": 3}, tmp_path / "best")


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(MidimixError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")


def test_incomplete_checkpoint(saved: Path) -> None:
    (saved / "model.safetensors").unlink()
    with pytest.raises(MidimixError, match="incomplete: model.safetensors missing"):
        load_checkpoint(saved)


@pytest.mark.parametrize("cut", [0, 10, 0.5])
def test_corrupt_weights(saved: Path, cut: float) -> None:
    weights = saved / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: int(cut * len(data)) if cut < 1 else int(cut)])
    with pytest.raises(MidimixError, match="is corrupt"):
        load_checkpoint(saved)


def test_corrupt_meta(saved: Path) -> None:
    (saved / "midimix.json").write_text('{"step": 3', encoding="utf-8")
    with pytest.raises(MidimixError, match="no readable midimix.json"):
        load_checkpoint(saved)


def test_weights_of_another_size(tokenizer: GenreTokenizer, saved: Path) -> None:
    from safetensors.torch import save_file

    other = build_model(tokenizer.vocab_size, ModelConfig(2, 32, 2, 128, 0.0), 0, 1, 2)
    state = {k: v.contiguous() for k, v in other.state_dict().items() if k != "lm_head.weight"}
    save_file(state, str(saved / "model.safetensors"))
    with pytest.raises(MidimixError, match="size mismatch"):
        load_checkpoint(saved)


def test_checkpoint_with_another_tokenizer(saved: Path) -> None:
    three = GenreTokenizer.build(["high", "low", "mid"], TokenizeConfig())  # one id more
    three.save(saved)
    with pytest.raises(MidimixError, match="not the one the model was trained with"):
        load_checkpoint(saved)
    swapped = GenreTokenizer.build(["alto", "bass"], TokenizeConfig())  # same size, other genres
    swapped.save(saved)
    with pytest.raises(MidimixError, match=r"lists genres \['high', 'low'\]"):
        load_checkpoint(saved)
    meta = json.loads((saved / "midimix.json").read_text())
    assert meta["genres"] == ["high", "low"]
