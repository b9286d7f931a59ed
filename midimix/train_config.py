"""The settings of a training run, checked when the config is built.

Each field is also a flag of `midimix train` (see midimix.options): its comment is the flag's
help. Nothing here imports torch, so `midimix train --help` stays instant.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from midimix.config import check_choice, check_range
from midimix.model import PRESETS, ModelConfig
from midimix.options import option

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "bf16", "fp32")


def _choices(names: Iterable[str]) -> dict[str, Any]:
    """A flag that takes one of `names`, listed in its usage line."""
    names = tuple(names)
    return {"choices": names, "metavar": "{" + ",".join(names) + "}"}


# --help headings, in the order they are listed
_MODEL = option(group="model")
_LENGTH = option(group="run length (--max-steps or --epochs)", exclusive="length")
_OPTIMIZATION = option(group="optimization")
_CHECKPOINTS = option(group="checkpoints and logging")
_HARDWARE = option(group="hardware")


@dataclass
class TrainConfig:
    """How a run trains: model size, run length, optimizer, checkpoints, hardware."""

    preset: str = field(default="small", metadata=option(group="model", **_choices(PRESETS)))
    # model size: tiny (tests), small (CPU), base (GPU)
    max_steps: int = field(default=0, metadata=_LENGTH)
    # optimizer steps; 0: run --epochs passes over the training chunks
    epochs: int = field(default=10, metadata=_LENGTH)
    # passes over the training chunks, when --max-steps is 0
    batch_size: int = field(default=16, metadata=_OPTIMIZATION)
    # chunks per process per step
    lr: float = field(default=5e-4, metadata=_OPTIMIZATION)
    # peak AdamW learning rate; small GPT-2s train well at 3e-4..1e-3
    warmup_steps: int = field(default=100, metadata=_OPTIMIZATION)
    # linear warm-up steps, then cosine decay to 0; at most half the run
    weight_decay: float = field(default=0.1, metadata=_OPTIMIZATION)
    # AdamW weight decay, on weight matrices only, not on biases, norms or embeddings
    grad_clip: float = field(default=1.0, metadata=_OPTIMIZATION)
    # max gradient norm; 0 disables clipping
    dropout: float | None = field(default=None, metadata=_MODEL)
    # dropout; none: the preset's (0.1; 0 for tiny); more for little data
    any_prob: float = field(default=0.1, metadata=_OPTIMIZATION)
    # share of chunks whose genre token becomes Genre_any, for guidance
    max_seq_len: int = field(default=0, metadata=_MODEL)
    # tokens per chunk, BOS and genre included; 0: the preset's context
    seed: int = field(default=0, metadata=_OPTIMIZATION)
    # random seed: model init, data order, Genre_any choice, dropout
    eval_every: int = field(default=200, metadata=_CHECKPOINTS)
    # steps between validation + checkpoints, and at the end
    log_every: int = field(default=10, metadata=_CHECKPOINTS)
    # steps between training-loss rows of log.csv
    device: str = field(default="auto", metadata=option(group="hardware", **_choices(DEVICES)))
    # auto: CUDA (bf16 where supported) when present, else CPU
    precision: str = field(
        default="auto", metadata=option(group="hardware", **_choices(PRECISIONS))
    )
    # auto: bf16 mixed precision where the hardware computes bf16 natively (CUDA GPUs with
    # bf16, CPUs with AVX-512 BF16 or AMX; about 1.5x faster there), else fp32
    threads: int = field(default=0, metadata=_HARDWARE)
    # CPU threads per process; 0: the cores this process may use / processes
    resume: bool = field(default=False, metadata=_CHECKPOINTS)
    # continue run-dir/last exactly where it stopped
    stop_after_steps: int = field(default=0, metadata=_CHECKPOINTS)
    # stop after N steps of this call, state saved; 0: never
    progress: bool = field(default=True, metadata=_CHECKPOINTS)
    # progress bar with the loss and tokens/s

    def __post_init__(self) -> None:
        check_choice("preset", self.preset, tuple(PRESETS))
        check_range("max_steps", self.max_steps, 0)
        check_range("epochs", self.epochs, 1)
        check_range("batch_size", self.batch_size, 1, 65536)
        check_range("lr", self.lr, 1e-8, 1.0)
        check_range("warmup_steps", self.warmup_steps, 0)
        check_range("weight_decay", self.weight_decay, 0.0, 1.0)
        check_range("grad_clip", self.grad_clip, 0.0)
        check_range("any_prob", self.any_prob, 0.0, 1.0)
        if self.dropout is not None:
            check_range("dropout", self.dropout, 0.0, 0.9)
        context = PRESETS[self.preset].context_length
        if self.max_seq_len:
            check_range("max_seq_len", self.max_seq_len, 8, context)
        check_range("eval_every", self.eval_every, 1)
        check_range("log_every", self.log_every, 1)
        check_choice("device", self.device, DEVICES)
        check_choice("precision", self.precision, PRECISIONS)
        check_range("threads", self.threads, 0, 1024)
        check_range("stop_after_steps", self.stop_after_steps, 0)

    def model_config(self) -> ModelConfig:
        """The preset's size, with this run's dropout."""
        size = PRESETS[self.preset]
        return size if self.dropout is None else dataclasses.replace(size, dropout=self.dropout)

    @property
    def seq_len(self) -> int:
        """Tokens per training chunk: max_seq_len, or the preset's context."""
        return self.max_seq_len or PRESETS[self.preset].context_length
