"""The model: a GPT-2 language model over genre-tagged token sequences, built from a config.

A training sequence reads `BOS, Genre_<g>, body..., [EOS]`: the genre token at position 1 is
the only conditioning, so one plain `GPT2LMHeadModel` learns every genre (and, through
`Genre_any`, the unconditional distribution). Nothing is downloaded: the model is built from a
`GPT2Config` and saved with `save_pretrained` (safetensors + config.json, never pickle).

A checkpoint folder holds:
    config.json, model.safetensors, generation_config.json   Hugging Face format
    tokenizer.json                                           GenreTokenizer.save
    midimix.json    {"genres", "train_config", "data_sha256", "step", "val_loss",
                     "val_loss_per_genre", "genre_sensitivity", ...}
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from midimix.config import check_range
from midimix.errors import ConfigError, MidimixError
from midimix.manifest import as_write_error, atomic_write_json

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel

    from midimix.fast_decode import GPT2Weights
    from midimix.tokenize import GenreTokenizer

META_FILE = "midimix.json"
TOKENIZER_FILE = "tokenizer.json"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CAUSAL_LM_LOSS = "ForCausalLM"  # transformers' loss name; GPT-2 leaves it unset and warns


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """No per-file progress bars from transformers while saving or loading a checkpoint."""
    from transformers.utils import logging

    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()


@dataclass(frozen=True)
class ModelConfig:
    """Size of the GPT-2. The context length bounds the chunk length the trainer uses."""

    n_layer: int = 4  # transformer blocks
    n_embd: int = 256  # width of the residual stream
    n_head: int = 4  # attention heads; n_embd must divide evenly among them
    context_length: int = 512  # tokens the model sees at once (GPT-2's n_positions)
    dropout: float = 0.1  # on embeddings, attention and residuals; 0 for tiny test models

    def __post_init__(self) -> None:
        check_range("n_layer", self.n_layer, 1, 96)
        check_range("n_embd", self.n_embd, 8, 16384)
        check_range("n_head", self.n_head, 1, 256)
        check_range("context_length", self.context_length, 8, 65536)
        check_range("dropout", self.dropout, 0.0, 0.9)
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head}); "
                f"for example n_embd={self.n_head * max(1, self.n_embd // self.n_head)}"
            )


# Named sizes (parameters for a 271-id REMI vocabulary). tiny: unit tests (0.13 M);
# small: a CPU (3.4 M); base: one GPU (26 M).
PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(n_layer=2, n_embd=64, n_head=2, context_length=128, dropout=0.0),
    "small": ModelConfig(n_layer=4, n_embd=256, n_head=4, context_length=512, dropout=0.1),
    "base": ModelConfig(n_layer=8, n_embd=512, n_head=8, context_length=1024, dropout=0.1),
}


def resolve_preset(preset: str | ModelConfig) -> ModelConfig:
    """A preset name or a ModelConfig -> ModelConfig (ConfigError listing the names if unknown)."""
    if isinstance(preset, ModelConfig):
        return preset
    if preset not in PRESETS:
        raise ConfigError(f"unknown model preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]


def build_model(
    vocab_size: int, preset: str | ModelConfig, pad_id: int, bos_id: int, eos_id: int
) -> GPT2LMHeadModel:
    """A freshly initialised GPT-2 of the given size over `vocab_size` token ids."""
    from transformers import GPT2Config, GPT2LMHeadModel

    size = resolve_preset(preset)
    check_range("vocab_size", vocab_size, 4)
    for name, token_id in (("pad_id", pad_id), ("bos_id", bos_id), ("eos_id", eos_id)):
        check_range(name, token_id, 0, vocab_size - 1)
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=size.context_length,
        n_embd=size.n_embd,
        n_layer=size.n_layer,
        n_head=size.n_head,
        resid_pdrop=size.dropout,
        embd_pdrop=size.dropout,
        attn_pdrop=size.dropout,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )
    model = GPT2LMHeadModel(config)
    model.loss_type = CAUSAL_LM_LOSS
    return model


def count_parameters(model: GPT2LMHeadModel) -> int:
    # Tied input/output embeddings are one tensor: count each tensor once.
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def _write_meta(folder: Path, meta: dict[str, Any]) -> None:
    atomic_write_json(folder / META_FILE, meta)


def save_checkpoint(
    model: GPT2LMHeadModel, tokenizer: GenreTokenizer, meta: dict[str, Any], folder: Path
) -> Path:
    """Write a checkpoint folder atomically: everything goes into a hidden folder beside it,
    which then replaces `folder`. If writing fails (disk full, killed), the checkpoint that
    was in `folder` before stays complete and usable."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp{os.getpid()}")
    old = folder.with_name(f".{folder.name}.old{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    meta = {"genres": list(tokenizer.genres), **meta}
    try:
        tmp.mkdir()
        with quiet_transformers():
            model.save_pretrained(tmp)
        tokenizer.save(tmp)
        _write_meta(tmp, meta)
        # Two renames: the old folder steps aside, the new one takes its name.
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
    except Exception as failure:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not folder.exists():
            os.replace(old, folder)
        error = save_failed(failure, tmp, f"the checkpoint to {folder}", "checkpoint")
        if error is failure:
            raise
        raise error from failure
    finally:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def save_failed(failure: Exception, tmp: Path, what: str, previous: str) -> Exception:
    """The error to raise when saving `what` into the folder `tmp` failed: a one-line
    MidimixError for a write error (a full disk however the library words it), else
    `failure` itself."""
    error = as_write_error(failure, tmp)
    if error is None:
        return failure
    reason = "the disk is full" if error.errno == errno.ENOSPC else str(error)
    return MidimixError(
        f"could not save {what}: {reason}; the previous {previous} there is unchanged; free "
        f"some space and run again with --resume"
    )


def read_meta(folder: Path) -> dict[str, Any]:
    """The midimix.json of a checkpoint folder, checked to be a JSON object."""
    path = Path(folder) / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MidimixError(
            f"checkpoint {folder} has no readable {META_FILE} ({error}); "
            f"it is not a complete midimix checkpoint: train again or pick another folder"
        ) from error
    if not isinstance(meta, dict):
        raise MidimixError(f"{path} should hold a JSON object, found {type(meta).__name__}")
    return meta


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise MidimixError(
            f"checkpoint folder {folder} does not exist; expected a folder written by "
            f"`python -m midimix.train` (runs/<name>/best)"
        )
    missing = [n for n in (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE, META_FILE)
               if not (folder / n).is_file()]  # fmt: skip
    if missing:
        raise MidimixError(
            f"checkpoint {folder} is incomplete: {', '.join(missing)} missing; "
            f"train again or pick a complete checkpoint folder"
        )


def load_weights(model: GPT2LMHeadModel, path: Path) -> None:
    """Load a model.safetensors into `model`, every tensor checked by name and shape (the
    output layer shares the input embedding, so it may be absent from the file)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(path)
        missing, unexpected = model.load_state_dict(state, strict=False)
    except (OSError, SafetensorError, RuntimeError) as error:
        raise MidimixError(
            f"{path} is corrupt or belongs to another model ({_first_line(error)}); "
            f"train again or use another checkpoint"
        ) from error
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        names = ", ".join((missing or unexpected)[:3])
        problem = "lacks" if missing else "has unknown"
        raise MidimixError(
            f"{path} {problem} tensors ({names}): it was not written for this model's config; "
            f"train again or use another checkpoint"
        )


def _first_line(error: BaseException, max_chars: int = 200) -> str:
    """An error's text on one line, cut short (state-dict errors span many lines)."""
    text = " ".join(str(error).split())
    return text[:max_chars] if text else type(error).__name__


# Sizes no midimix model comes near (the largest preset is a fraction of these): a config.json
# beyond them is broken or hostile, and is refused before anything is allocated from it.
CONFIG_LIMITS = {
    "n_positions": 65_536,
    "n_embd": 16_384,
    "n_layer": 256,
    "n_head": 256,
    "vocab_size": 1_048_576,
}


EXCESS_PARAMETERS = 1 << 24  # 64 MiB of float32 beyond what the weights file holds


def _safetensors_elements(path: Path) -> int:
    """How many numbers the weights file holds, from its header alone (nothing loaded)."""
    import json
    import math
    import struct

    try:
        with open(path, "rb") as handle:
            (header_bytes,) = struct.unpack("<Q", handle.read(8))
            if not 2 <= header_bytes <= min(100 << 20, path.stat().st_size - 8):
                raise ValueError(f"header length {header_bytes}")
            header = json.loads(handle.read(header_bytes))
        return sum(
            math.prod(int(d) for d in info["shape"])
            for name, info in header.items()
            if name != "__metadata__"
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, struct.error) as error:
        raise MidimixError(
            f"{path} is corrupt: not a safetensors file ({_first_line(error)}); train again or use "
            f"another checkpoint"
        ) from error


def check_config_sizes(config: Any, weights: Path) -> None:
    """Refuse a GPT-2 config whose sizes are absurd, or that describes a model far larger than
    the weights file, before `GPT2LMHeadModel(config)` allocates it (n_positions 200,000,000
    would ask for 200 GB)."""
    where = f"{Path(weights).parent / CONFIG_FILE}"
    sizes = {}
    for name, limit in CONFIG_LIMITS.items():
        value = getattr(config, name, None)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            raise MidimixError(
                f"{where}: {name} is {value!r}; expected a whole number from 1 to {limit:,}: "
                f"the file is broken; use another checkpoint"
            )
        sizes[name] = value
    if sizes["n_embd"] % sizes["n_head"]:
        raise MidimixError(
            f"{where}: n_embd {sizes['n_embd']} is not a multiple of n_head {sizes['n_head']}"
        )
    inner = getattr(config, "n_inner", None) or 4 * sizes["n_embd"]
    if isinstance(inner, bool) or not isinstance(inner, int) or not 1 <= inner <= 4 * 16_384:
        raise MidimixError(f"{where}: n_inner is {inner!r}; expected a whole number or null")
    embd = sizes["n_embd"]
    expected = (
        (sizes["vocab_size"] + sizes["n_positions"]) * embd
        + sizes["n_layer"] * (4 * embd * embd + 2 * embd * inner)  # attention + MLP weights
    )
    held = _safetensors_elements(Path(weights))
    # a small mismatch is left to load_weights, which names the tensor; refused here is one
    # that would allocate far more than the file holds
    if expected > 1.1 * held + EXCESS_PARAMETERS:
        raise MidimixError(
            f"{where} describes a model of about {expected:,} parameters but {Path(weights).name}"
            f" holds {held:,}: config and weights do not belong together; use another checkpoint"
        )


def _load_model(folder: Path) -> GPT2LMHeadModel:
    from transformers import GPT2Config, GPT2LMHeadModel

    try:
        config = GPT2Config.from_json_file(str(folder / CONFIG_FILE))
    except (OSError, ValueError) as error:  # JSONDecodeError is a ValueError
        raise MidimixError(
            f"checkpoint {folder} has an unreadable {CONFIG_FILE} ({_first_line(error)}); "
            f"train again or use another checkpoint"
        ) from error
    if getattr(config, "model_type", None) != "gpt2":
        raise MidimixError(f"{folder / CONFIG_FILE} is not a GPT-2 config; expected gpt2")
    check_config_sizes(config, folder / WEIGHTS_FILE)
    model = GPT2LMHeadModel(config)
    load_weights(model, folder / WEIGHTS_FILE)
    return model


def load_checkpoint(
    folder: Path, device: str = "cpu"
) -> tuple[GPT2LMHeadModel, GenreTokenizer, dict[str, Any]]:
    """(model in eval mode on `device`, its tokenizer, its midimix.json) from a checkpoint
    folder; a MidimixError names the problem for a missing, corrupt or mismatched one."""
    import torch

    folder = Path(folder)
    tokenizer, meta = _tokenizer_and_meta(folder)
    model = _load_model(folder)
    _check_match(folder, model.config.vocab_size, tokenizer, meta)
    model.loss_type = CAUSAL_LM_LOSS
    torch.nn.Module.to(model, device)  # (transformers' own `to` is typed for dtypes only)
    model.eval()
    return model, tokenizer, meta


def load_decoder(folder: Path) -> tuple[GPT2Weights, GenreTokenizer, dict[str, Any]]:
    """Like `load_checkpoint` on the CPU, for sampling only: the weights as plain tensors for
    midimix's lean decoding step, read without importing transformers (which costs a cold
    command line 2-4 s), with the same checks."""
    from safetensors.torch import load_file

    from midimix.fast_decode import CONFIG_FIELDS, GPT2Weights

    folder = Path(folder)
    tokenizer, meta = _tokenizer_and_meta(folder)
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, ValueError) as error:
        raise MidimixError(
            f"checkpoint {folder} has an unreadable {CONFIG_FILE} ({_first_line(error)}); "
            f"train again or use another checkpoint"
        ) from error
    if not isinstance(config, dict) or config.get("model_type") != "gpt2":
        raise MidimixError(f"{folder / CONFIG_FILE} is not a GPT-2 config; expected gpt2")
    check_config_sizes(types.SimpleNamespace(**config), folder / WEIGHTS_FILE)
    _check_match(folder, config["vocab_size"], tokenizer, meta)
    try:
        tensors = load_file(str(folder / WEIGHTS_FILE))
    except (OSError, ValueError, RuntimeError) as error:
        raise MidimixError(
            f"checkpoint {folder} has unreadable weights ({_first_line(error)}); train again"
        ) from error
    defaults = {"layer_norm_epsilon": 1e-5, "scale_attn_weights": True,
                "scale_attn_by_inverse_layer_idx": False}  # fmt: skip
    fields = {name: config.get(name, defaults.get(name)) for name in CONFIG_FIELDS}
    return GPT2Weights(fields, tensors), tokenizer, meta


def _tokenizer_and_meta(folder: Path) -> tuple[GenreTokenizer, dict[str, Any]]:
    from midimix.tokenize import GenreTokenizer

    _check_folder(folder)
    meta = read_meta(folder)
    try:
        tokenizer = GenreTokenizer.load(folder)
    except MidimixError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise MidimixError(
            f"checkpoint {folder} has an unreadable {TOKENIZER_FILE} ({_first_line(error)}); "
            f"train again or copy the tokenizer.json the model was trained with"
        ) from error
    return tokenizer, meta


def _check_match(
    folder: Path, vocab_size: int, tokenizer: GenreTokenizer, meta: dict[str, Any]
) -> None:
    """The tokenizer and midimix.json belong to these weights."""
    if vocab_size != tokenizer.vocab_size:
        raise MidimixError(
            f"checkpoint {folder}: the model has {vocab_size} token ids but "
            f"{TOKENIZER_FILE} has {tokenizer.vocab_size}; the tokenizer is not the one the "
            f"model was trained with: copy the tokenizer.json of the training data"
        )
    genres = meta.get("genres")
    if genres is not None and (
        not isinstance(genres, list) or not all(isinstance(g, str) for g in genres)
    ):
        raise MidimixError(f"checkpoint {folder}: {META_FILE} 'genres' is not a list of names")
    if genres is not None and list(genres) != list(tokenizer.genres):
        raise MidimixError(
            f"checkpoint {folder}: {META_FILE} lists genres {genres} but {TOKENIZER_FILE} has "
            f"{list(tokenizer.genres)}; the tokenizer is not the one the model was trained with"
        )
