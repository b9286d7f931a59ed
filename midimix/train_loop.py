"""The training loop of one process: data order, the model, optimizer and schedule, the steps,
and validation with its checkpoints.

Every process runs the same loop (DDP through `accelerate.Accelerator`): each trains on its
share of every batch, the main process validates and writes. The data order of an epoch is a
function of (seed, epoch) alone, so a resumed run skips the batches it has used and continues
with the same numbers.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from midimix import performance
from midimix.config import config_to_dict
from midimix.errors import ConfigError, MidimixError
from midimix.genre_stats import compute_stats, stats_to_dict
from midimix.manifest import sha256_file
from midimix.train_log import CsvLog, Meter
from midimix.train_state import check_resume, read_state, restore, rng_state, save_last
from midimix.validation import unigram_loss, validate

if TYPE_CHECKING:
    import torch
    from transformers import GPT2LMHeadModel

    from midimix.tokenize import GenreTokenizer
    from midimix.train_config import TrainConfig


# ---------------------------------------------------------------------------------------
# Data and its order


@dataclasses.dataclass
class TrainData:
    tokenizer: GenreTokenizer
    train: list[tuple[str, list[int]]]
    validation: list[tuple[str, list[int]]]
    sha256: dict[str, str]  # of the token files, so that a resume can refuse other data
    originals: list[tuple[str, list[int]]]  # the training pieces without augmented copies
    # the token folder's performance.json (midimix.performance); {} for one made before it
    performance: dict[str, Any] = dataclasses.field(default_factory=dict)


def load_data(tokens_dir: Path) -> TrainData:
    """The tokenizer and the non-empty train and validation sequences of a token data set."""
    from midimix.tokenize import SEQUENCES_FILE, TOKENIZER_FILE, GenreTokenizer, load_sequences

    tokens_dir = Path(tokens_dir)
    if not tokens_dir.is_dir():
        raise MidimixError(
            f"token folder {tokens_dir} does not exist: run `midimix tokenize` first"
        )
    tokenizer = GenreTokenizer.load(tokens_dir)
    train = [(g, ids) for g, ids in load_sequences(tokens_dir, "train") if ids]
    validation = [(g, ids) for g, ids in load_sequences(tokens_dir, "validation") if ids]
    if not train:
        raise MidimixError(
            f"the training split of {tokens_dir} is empty: tokenize at least a few MIDI files "
            f"per genre (a few hours of music is a good start)"
        )
    if not validation:
        raise MidimixError(
            f"the validation split of {tokens_dir} is empty ({len(train)} training sequences): "
            f"the data set is too small to hold pieces out; tokenize at least 2 recordings per "
            f"genre (with --validation-fraction above 0)"
        )
    sha = {name: sha256_file(tokens_dir / name) for name in (SEQUENCES_FILE, TOKENIZER_FILE)}
    originals = [(g, ids) for g, ids in load_sequences(tokens_dir, "train", copies=False) if ids]
    played = tokens_dir / performance.FILE_NAME
    performances = json.loads(played.read_text()) if played.is_file() else {}
    performance.from_dict(performances, str(played))  # a broken file fails now, not at the end
    return TrainData(tokenizer, train, validation, sha, originals, performances)


def epoch_order(num_items: int, seed: int, epoch: int) -> list[int]:
    """The shuffled item order of one epoch: a function of (seed, epoch) only."""
    import torch

    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_items, generator=generator).tolist()


def batch_indices(
    order: Sequence[int], batch: int, batch_size: int, rank: int, world: int
) -> list[int]:
    """This process's items of global batch `batch`. The last batch of an epoch wraps around to
    the start of the order, so every batch is full and every process gets the same count."""
    global_size = batch_size * world
    start = batch * global_size + rank * batch_size
    return [order[(start + k) % len(order)] for k in range(batch_size)]


# ---------------------------------------------------------------------------------------
# Hardware and optimizer


def make_accelerator(device: str, precision: str = "auto") -> Any:
    """CUDA (unless `device` is cpu) or the CPU, in bf16 mixed precision (fp32 weights and
    optimizer, bf16 matrix products) where the hardware computes bf16 natively and `precision`
    is auto or bf16, else in fp32."""
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    use_cuda = device != "cpu" and torch.cuda.is_available()
    if device == "cuda" and not use_cuda:
        raise ConfigError(
            "device 'cuda' was asked for but no CUDA GPU is visible; use --device auto"
        )
    native = torch.cuda.is_bf16_supported() if use_cuda else cpu_has_bf16()
    if precision == "bf16" and not native:
        where = "this GPU" if use_cuda else "this CPU (it needs AVX-512 BF16 or AMX)"
        raise ConfigError(
            f"precision bf16 was asked for but {where} has no native bf16; use --precision auto"
        )
    bf16 = native and precision != "fp32"
    # accelerate keeps one precision per process: a call before this one (another precision,
    # or a Trainer) must not decide this run's. The process group, if any, is kept.
    AcceleratorState._reset_state()
    return Accelerator(cpu=not use_cuda, mixed_precision="bf16" if bf16 else "no")


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX-512 BF16 or AMX): there bf16
    autocast halves the time of the matrix products; elsewhere it would be emulated, slower."""
    import torch

    cpu = torch.cpu
    try:
        return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes: stay in fp32
        return False


def cpu_threads(threads: int, local_processes: int) -> int:
    """`threads`, or (when 0) the cores this process may use shared by the local processes."""
    if threads:
        return threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, local_processes))


def adamw(model: GPT2LMHeadModel, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW (betas 0.9/0.95) that decays weight matrices only: biases, layer norms and
    embeddings keep their scale."""
    import torch

    def decays(name: str, p: torch.nn.Parameter) -> bool:
        return p.dim() >= 2 and "wte" not in name and "wpe" not in name

    named = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in named if decays(n, p)], "weight_decay": weight_decay},
        {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0},
    ]
    # The fused kernel (one pass over all tensors) is faster on CPU and GPU alike.
    fused = all(p.device.type in ("cpu", "cuda") for p in model.parameters())
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), fused=fused)


# ---------------------------------------------------------------------------------------
# The run


class TrainingRun:
    """One call of `train` on this process: build, resume, train, validate and save.

    `state` is the data position (step, epoch, batch_in_epoch) and the best validation loss,
    saved in last/state.json; `best` is the record of the best checkpoint (best/midimix.json)."""

    def __init__(self, data: TrainData, run_dir: Path, config: TrainConfig) -> None:
        import torch

        self.data, self.tok, self.config = data, data.tokenizer, config
        self.best_dir, self.last_dir = run_dir / "best", run_dir / "last"
        self.log_path = run_dir / "log.csv"
        self.accelerator = make_accelerator(config.device, config.precision)
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        self.is_main, self.device = self.accelerator.is_main_process, self.accelerator.device
        if self.device.type == "cpu":
            local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
            torch.set_num_threads(cpu_threads(config.threads, local_processes))
        self._build()
        self.state: dict[str, Any] = dict(step=0, epoch=0, batch_in_epoch=0, best_val_loss=None)
        self.best: dict[str, Any] = {}
        self.unigram_val_loss = unigram_loss(
            [[*ids, self.tok.eos_id] for _, ids in data.train],
            [[*ids, self.tok.eos_id] for _, ids in data.validation],
            self.tok.vocab_size,
        )
        self.genre_stats = stats_to_dict(  # what generation keeps its pieces within
            compute_stats(
                data.train,
                [self.tok.base_tokens(i) for i in range(self.tok.vocab_size)],
                data.originals,
            )
        )
        self.log: CsvLog | None = None
        self.tokens_seen, self.step_seconds = 0, 0.0  # this call's training throughput
        self._order_epoch = -1  # the epoch whose shuffled order `_order` holds
        self._order: list[int] = []

    def _build(self) -> None:
        """The model (the same initial weights on every process), the data set, the optimizer
        and the schedule (linear warm-up, then cosine decay to 0)."""
        import torch
        from transformers import get_cosine_schedule_with_warmup

        from midimix.dataset import TokenDataset
        from midimix.model import build_model, count_parameters
        from midimix.train_kernels import speed_up_training

        config, tok = self.config, self.tok
        torch.manual_seed(config.seed)  # the same initial weights on every process
        model = build_model(
            tok.vocab_size, config.model_config(), tok.pad_id, tok.bos_id, tok.eos_id
        )
        torch.manual_seed(config.seed * 1000 + self.rank + 1)  # dropout differs between processes
        self.num_parameters = count_parameters(model)
        self.dataset = TokenDataset(
            self.data.train, tok, config.seq_len, config.any_prob, config.seed
        )
        self.steps_per_epoch = math.ceil(len(self.dataset) / (config.batch_size * self.world))
        self.total_steps = config.max_steps or config.epochs * self.steps_per_epoch
        # Training calls the model without an attention mask (see `_step`), which is exact for
        # right padding; transformers would warn that the ids may be padded.
        model.transformer.warn_if_padding_and_no_attention_mask = lambda *args: None  # type: ignore[method-assign]
        speed_up_training(model)  # faster equivalents of its ops (midimix.train_kernels)
        optimizer = adamw(model, config.lr, config.weight_decay)
        warmup = min(config.warmup_steps, self.total_steps // 2)
        self.scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, self.total_steps)
        # The scheduler stays unprepared: accelerate would step it once per process.
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.raw_model = self.accelerator.unwrap_model(self.model)

    def resume(self) -> None:
        """With `resume` and a last/ folder: check it comes from this run and load it."""
        if not (self.config.resume and self.last_dir.exists()):
            return
        saved = read_state(self.last_dir)
        check_resume(saved, self.config, self.data.sha256, self.world)
        restore(
            self.last_dir, self.raw_model, self.optimizer, self.scheduler, self.device, self.rank
        )
        self.state, self.best = saved["state"], saved["best"]

    def open_log(self) -> None:
        """log.csv (written by the main process), without rows past the resumed step."""
        self.log = CsvLog(self.log_path, self.tok.genres, self.is_main)
        self.log.truncate_after(self.state["step"])

    def train(self) -> None:
        """Steps until the schedule's end or `stop_after_steps`; validation and checkpoints
        every `eval_every` steps, at a stop and at the end."""
        from tqdm import tqdm

        config, state = self.config, self.state
        shown = self.is_main and config.progress
        bar = tqdm(total=self.total_steps, initial=state["step"], disable=not shown,
                   desc="train", unit="step", dynamic_ncols=True)  # fmt: skip
        meter = Meter(self.device)
        steps_this_call = 0
        self.model.train()
        while state["step"] < self.total_steps:
            tick = time.perf_counter()
            loss, tokens = self._step(self._next_batch())
            self.step_seconds += time.perf_counter() - tick
            meter.add(loss, tokens)
            self.tokens_seen += tokens
            state["step"] += 1
            state["batch_in_epoch"] += 1
            steps_this_call += 1
            bar.update(1)
            if state["step"] % config.log_every == 0:
                mean_loss, rate = meter.read()
                self._write_log(lr=self.scheduler.get_last_lr()[0], train_loss=mean_loss,
                                tokens_per_second=rate)  # fmt: skip
                bar.set_postfix(loss=f"{mean_loss:.3f}", tok_s=f"{rate:,.0f}")
                meter.reset()
            stop = bool(config.stop_after_steps) and steps_this_call >= config.stop_after_steps
            if stop or state["step"] >= self.total_steps or state["step"] % config.eval_every == 0:
                self.validate_and_save()
                meter.start = time.perf_counter()  # validation time is not training time
            if stop:
                break
        bar.close()
        if steps_this_call == 0 and not self.best:  # resumed a finished run that never validated
            self.validate_and_save()

    def _next_batch(self) -> list[int]:
        """This process's items of the next batch, moving on to the next epoch when one ends."""
        state = self.state
        if state["batch_in_epoch"] >= self.steps_per_epoch:
            state["epoch"], state["batch_in_epoch"] = state["epoch"] + 1, 0
        if self._order_epoch != state["epoch"]:  # a new epoch: its order and Genre_any draws
            self._order_epoch = state["epoch"]
            self._order = epoch_order(len(self.dataset), self.config.seed, state["epoch"])
            self.dataset.set_epoch(state["epoch"])
        size = self.config.batch_size
        return batch_indices(self._order, state["batch_in_epoch"], size, self.rank, self.world)

    def _step(self, indices: list[int]) -> tuple[torch.Tensor, int]:
        """One optimizer step on this process's items: (loss, tokens of all processes)."""
        from midimix.dataset import collate

        batch = collate([self.dataset[i] for i in indices], self.tok.pad_id)
        tokens = int(batch["attention_mask"].sum()) * self.world  # processes' batches are alike
        # No attention mask: padding is only ever on the right, where the causal mask already
        # keeps every real token from seeing it and the labels skip it, so the loss is the
        # same without the mask and the model skips building and checking one every step.
        # No key/value cache either: training never decodes.
        loss = self.model(
            input_ids=batch["input_ids"].to(self.device),
            labels=batch["labels"].to(self.device),
            use_cache=False,
        ).loss
        self.accelerator.backward(loss)
        if self.config.grad_clip:
            self.accelerator.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss, tokens

    def _write_log(self, **values: float) -> None:
        if self.log is not None:
            self.log.write(self.state["step"], epoch=self.state["epoch"], **values)

    def validate_and_save(self) -> None:
        """Validation and best/ (when it improved) on the main process; last/ always."""
        from accelerate.utils import gather_object

        if self.is_main:
            self._validate()
        rngs = gather_object([rng_state(self.device.type)])  # every process's, for an exact resume
        if self.is_main:
            resume_record = {"train_config": config_to_dict(self.config),
                             "data_sha256": self.data.sha256, "world_size": self.world,
                             "state": self.state, "best": self.best}  # fmt: skip
            save_last(self.last_dir, self.raw_model, self.optimizer, self.scheduler, rngs,
                      resume_record)  # fmt: skip
        self.accelerator.wait_for_everyone()

    def _validate(self) -> None:
        """Log the validation scores; save best/ when the loss improved."""
        from midimix.model import save_checkpoint

        state = self.state
        val_loss, per_genre, sensitivity = validate(
            self.raw_model, self.tok, self.data.validation, self.config.seq_len
        )
        per_genre_log = {f"val_loss_{g}": v for g, v in per_genre.items()}
        self._write_log(val_loss=val_loss, genre_sensitivity=sensitivity, **per_genre_log)
        if state["best_val_loss"] is None or val_loss < state["best_val_loss"]:
            state["best_val_loss"] = val_loss
            self.best = {**self._checkpoint_record(), "step": state["step"],
                         "epoch": state["epoch"], "val_loss": val_loss,
                         "val_loss_per_genre": per_genre,
                         "genre_sensitivity": sensitivity}  # fmt: skip
            save_checkpoint(self.raw_model, self.tok, self.best, self.best_dir)

    def _checkpoint_record(self) -> dict[str, Any]:
        """What best/midimix.json says about the run besides its scores."""
        config = self.config
        return {
            "train_config": config_to_dict(config),
            "model_config": {"preset": config.preset, **dataclasses.asdict(config.model_config())},
            "data_sha256": self.data.sha256,
            "max_seq_len": config.seq_len,
            "num_parameters": self.num_parameters,
            "unigram_val_loss": self.unigram_val_loss,
            "genre_stats": self.genre_stats,
            "performance": self.data.performance,
        }

    @property
    def tokens_per_second(self) -> float:
        """Training throughput of this call (all processes together)."""
        return self.tokens_seen / self.step_seconds if self.step_seconds else 0.0
