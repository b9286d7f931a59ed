"""Train a genre-conditioned GPT-2 on a token data set (`midimix tokenize` output).

    python -m midimix.train --tokens-dir data/tokens --run-dir runs/demo --preset small

The same command runs on one CPU, one GPU (bf16) or many processes: under `torchrun` or
`accelerate launch` each process trains on its share of every batch (DDP through
`accelerate.Accelerator`). What it writes in the run folder:

    best/      the checkpoint with the lowest validation loss (see midimix.model)
    last/      the full state to resume from: weights, optimizer, scheduler, RNG, data position
    log.csv    training loss, learning rate, tokens/s; validation loss per genre, sensitivity

Resuming is exact: the data order of an epoch is a function of (seed, epoch) alone, so a
resumed run skips the batches it already used and continues with the same numbers.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from midimix.config import RUNS_DIR, TOKENS_DIR, check_choice, check_range, config_to_dict
from midimix.errors import ConfigError, MidimixError, cli_errors
from midimix.manifest import atomic_path, atomic_write_json, sha256_file
from midimix.model import PRESETS, ModelConfig, quiet_transformers

if TYPE_CHECKING:
    import torch
    from transformers import GPT2LMHeadModel

    from midimix.tokenize import GenreTokenizer

DEVICES = ("auto", "cpu", "cuda")
STATE_FILE = "state.json"
# Options that may change between a run and its resumption without changing its numbers.
RESUMABLE_CHANGES = frozenset(
    {"resume", "stop_after_steps", "progress", "device", "threads", "eval_every", "log_every"}
)


@dataclass
class TrainConfig:
    preset: str = "small"  # model size: tiny (tests), small (CPU), base (GPU)
    max_steps: int = 0  # optimizer steps; 0: run `epochs` passes over the training chunks
    epochs: int = 10  # used when max_steps is 0
    batch_size: int = 16  # chunks per process per step
    lr: float = 5e-4  # peak learning rate (AdamW); small GPT-2s train well at 3e-4..1e-3
    warmup_steps: int = 100  # linear warm-up, then cosine decay to 0 (at most half the run)
    weight_decay: float = 0.1  # on weight matrices only, not on biases, norms or embeddings
    grad_clip: float = 1.0  # max gradient norm; 0 disables
    dropout: float | None = None  # None: the preset's (0.1; 0 for tiny); more for little data
    any_prob: float = 0.1  # share of chunks whose genre token becomes Genre_any (for guidance)
    max_seq_len: int = 0  # tokens per chunk, BOS and genre included; 0: the preset's context
    seed: int = 0  # model init, data order, Genre_any choice, dropout
    eval_every: int = 200  # steps between validation + checkpoints (and at the end)
    log_every: int = 10  # steps between training-loss rows of log.csv
    device: str = "auto"  # auto: CUDA (bf16 where supported) when present, else CPU
    threads: int = 0  # CPU threads per process; 0: the cores this process may use / processes
    resume: bool = False  # continue run_dir/last exactly where it stopped
    stop_after_steps: int = 0  # stop (state saved) after this many steps of this call; 0: never
    progress: bool = True  # progress bar

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
        check_range("threads", self.threads, 0, 1024)
        check_range("stop_after_steps", self.stop_after_steps, 0)

    def model_config(self) -> ModelConfig:
        """The preset's size, with this run's dropout."""
        size = PRESETS[self.preset]
        return size if self.dropout is None else dataclasses.replace(size, dropout=self.dropout)

    @property
    def seq_len(self) -> int:
        return self.max_seq_len or PRESETS[self.preset].context_length


@dataclass
class TrainResult:
    run_dir: Path
    best_dir: Path
    last_dir: Path
    step: int  # optimizer steps done in total (resumed runs included)
    total_steps: int
    finished: bool  # False when stop_after_steps ended the call early
    best_val_loss: float
    val_loss_per_genre: dict[str, float]
    genre_sensitivity: float
    unigram_val_loss: float  # the baseline: validation loss of token frequencies alone
    tokens_per_second: float  # training throughput of this call (all processes together)
    num_parameters: int
    seconds: float

    def text(self) -> str:
        state = "done" if self.finished else "stopped (resume with --resume)"
        per_genre = ", ".join(f"{g} {v:.3f}" for g, v in self.val_loss_per_genre.items())
        return (
            f"train: {state} at step {self.step}/{self.total_steps} in {self.seconds:.0f} s, "
            f"{self.tokens_per_second:,.0f} tokens/s; best val loss {self.best_val_loss:.3f} "
            f"({per_genre}; unigram {self.unigram_val_loss:.3f}), genre sensitivity "
            f"{self.genre_sensitivity:.2f} -> {self.best_dir}"
        )


# ---------------------------------------------------------------------------------------
# Pure helpers: data order, bar lines, baseline


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


def bar_starts(ids: Sequence[int], token_types: Sequence[str]) -> list[int]:
    """Indexes of the Bar tokens of `ids`: validation chunks start at bar lines, as in training."""
    return [i for i, t in enumerate(ids) if t < len(token_types) and token_types[t] == "Bar"]


def unigram_loss(
    train: Sequence[Sequence[int]], validation: Sequence[Sequence[int]], vocab_size: int
) -> float:
    """Cross-entropy (nats/token) of the validation tokens under the training token
    frequencies, add-one smoothed: what a model that ignores context would reach."""
    counts = Counter(t for ids in train for t in ids)
    total = sum(counts.values()) + vocab_size
    tokens = [t for ids in validation for t in ids]
    if not tokens:
        return float("nan")
    return -sum(math.log((counts[t] + 1) / total) for t in tokens) / len(tokens)


# ---------------------------------------------------------------------------------------
# Validation: loss of each sequence under every genre token


def genre_losses(
    model: GPT2LMHeadModel,
    tokenizer: GenreTokenizer,
    sequences: Sequence[tuple[str, Sequence[int]]],
    max_seq_len: int | None = None,
    batch_size: int = 32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(nll, count): nll[s, g] is the summed negative log-likelihood (nats) of sequence s's
    body and EOS when it is prefixed `BOS, Genre_g` (g in tokenizer.genres order); count[s] is
    its token count. The genre token itself is not scored: it is the condition, not data."""
    import torch
    import torch.nn.functional as F

    from midimix.dataset import chunk_bounds

    seq_len = max_seq_len or int(model.config.n_positions)
    types = tokenizer.token_types()
    genre_ids = [tokenizer.genre_id(g) for g in tokenizer.genres]
    rows: list[tuple[int, int, list[int]]] = []  # (sequence, genre index, ids)
    count = torch.zeros(len(sequences), dtype=torch.float64)
    for s, (genre, ids) in enumerate(sequences):
        tokenizer.genre_id(genre)  # a clear error for a genre the tokenizer lacks
        body = [*ids, tokenizer.eos_id]
        for start, end in chunk_bounds(body, bar_starts(body, types), seq_len - 2):
            piece = body[start:end]
            count[s] += len(piece)
            rows += [(s, g, [tokenizer.bos_id, gid, *piece]) for g, gid in enumerate(genre_ids)]
    nll = torch.zeros(len(sequences), len(genre_ids), dtype=torch.float64)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            longest = max(len(r[2]) for r in chunk)
            batch_ids = torch.full((len(chunk), longest), tokenizer.pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), longest), dtype=torch.long)
            for i, (_, _, row) in enumerate(chunk):
                batch_ids[i, : len(row)] = torch.tensor(row)
                mask[i, : len(row)] = 1
            logits = model(input_ids=batch_ids.to(device), attention_mask=mask.to(device)).logits
            # Position t predicts token t+1; score targets 2.. (the body), not the genre token.
            logp = F.log_softmax(logits[:, 1:-1].float(), dim=-1).cpu()  # (B, T-2, V)
            targets = batch_ids[:, 2:]
            token_nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, T-2)
            row_nll = (token_nll * mask[:, 2:]).sum(dim=1).double()
            for i, (s, g, _) in enumerate(chunk):
                nll[s, g] += row_nll[i]
    model.train(was_training)
    return nll, count


def summarize_losses(
    nll: torch.Tensor, count: torch.Tensor, true_genres: Sequence[int], genres: Sequence[str]
) -> tuple[float, dict[str, float], float]:
    """(validation loss per token, the same per genre, genre sensitivity) from genre_losses."""
    truth = list(true_genres)
    true_nll = [float(nll[s, g]) for s, g in enumerate(truth)]
    total = float(count.sum())
    val_loss = sum(true_nll) / total if total else float("nan")
    per_genre: dict[str, float] = {}
    for g, name in enumerate(genres):
        rows = [s for s, t in enumerate(truth) if t == g]
        tokens = sum(float(count[s]) for s in rows)
        if tokens:
            per_genre[name] = sum(true_nll[s] for s in rows) / tokens
    best = nll.argmin(dim=1).tolist()
    hits = sum(1 for s, g in enumerate(truth) if best[s] == g)
    return val_loss, per_genre, hits / len(truth) if truth else float("nan")


def genre_sensitivity(
    model: GPT2LMHeadModel,
    tokenizer: GenreTokenizer,
    sequences: Sequence[tuple[str, Sequence[int]]],
    max_seq_len: int | None = None,
) -> float:
    """Share of sequences (genre, body ids) whose own genre token gives them the lowest loss
    among all genre tokens: 1.0 = the model always knows which genre it is writing."""
    nll, count = genre_losses(model, tokenizer, sequences, max_seq_len)
    truth = [tokenizer.genres.index(genre) for genre, _ in sequences]
    return summarize_losses(nll, count, truth, tokenizer.genres)[2]


# ---------------------------------------------------------------------------------------
# Data and state files


@dataclass
class TrainData:
    tokenizer: GenreTokenizer
    train: list[tuple[str, list[int]]]
    validation: list[tuple[str, list[int]]]
    sha256: dict[str, str]


def load_data(tokens_dir: Path) -> TrainData:
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
    return TrainData(tokenizer, train, validation, sha)


def check_resume(
    saved: dict[str, Any], config: TrainConfig, sha: dict[str, str], world: int
) -> None:
    """The state in last/ must come from the same options, data and process count."""
    now = config_to_dict(config)
    changed = sorted(
        k for k in now if k not in RESUMABLE_CHANGES and saved["train_config"].get(k) != now[k]
    )
    if changed:
        diffs = ", ".join(f"{k}: {saved['train_config'].get(k)!r} -> {now[k]!r}" for k in changed)
        raise ConfigError(
            f"cannot resume with other options ({diffs}); use the run's options or a new --run-dir"
        )
    if saved["data_sha256"] != sha:
        raise MidimixError(
            "cannot resume: the token data changed since the run started (sequences.jsonl or "
            "tokenizer.json differ); train into a new --run-dir"
        )
    if saved["world_size"] != world:
        raise MidimixError(
            f"cannot resume: the run used {saved['world_size']} processes, this one {world}; "
            f"resume with the same number of processes"
        )


def swap_in(tmp: Path, folder: Path) -> None:
    """Replace `folder` by the finished `tmp` folder (the old one is removed only after)."""
    old = folder.with_name(f".{folder.name}.old{os.getpid()}")
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


class CsvLog:
    """log.csv: one row per training-log interval and per validation (blank where n/a)."""

    def __init__(self, path: Path, genres: Sequence[str], enabled: bool) -> None:
        self.path, self.enabled = path, enabled
        self.fields = ["step", "epoch", "lr", "train_loss", "tokens_per_second", "val_loss"]
        self.fields += [f"val_loss_{g}" for g in genres] + ["genre_sensitivity"]
        if enabled and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", newline="") as handle:
                csv.writer(handle).writerow(self.fields)
        self.board: Any = None
        if enabled:
            try:  # TensorBoard when installed; the CSV always
                from torch.utils.tensorboard import SummaryWriter

                self.board = SummaryWriter(str(path.parent / "tensorboard"))
            except ImportError:
                self.board = None

    def truncate_after(self, step: int) -> None:
        """Drop rows past `step`: a run killed after logging but before saving last/ redoes
        those steps on resume, and the log must hold each step once."""
        if not self.enabled or not self.path.exists():
            return
        with open(self.path, newline="") as handle:
            rows = list(csv.reader(handle))
        kept = rows[:1] + [row for row in rows[1:] if row and int(row[0]) <= step]
        if len(kept) < len(rows):
            with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as handle:
                csv.writer(handle).writerows(kept)

    def write(self, step: int, **values: float) -> None:
        if not self.enabled:
            return
        row = [step] + [values.get(k, "") for k in self.fields[1:]]
        with open(self.path, "a", newline="") as handle:
            csv.writer(handle).writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])
        if self.board is not None:
            for key, value in values.items():
                self.board.add_scalar(key, value, step)


# ---------------------------------------------------------------------------------------
# The stage


def _accelerator(device: str) -> Any:
    import torch
    from accelerate import Accelerator

    use_cuda = device != "cpu" and torch.cuda.is_available()
    if device == "cuda" and not use_cuda:
        raise ConfigError(
            "device 'cuda' was asked for but no CUDA GPU is visible; use --device auto"
        )
    bf16 = use_cuda and torch.cuda.is_bf16_supported()
    return Accelerator(cpu=not use_cuda, mixed_precision="bf16" if bf16 else "no")


def _cpu_threads(config: TrainConfig, local_processes: int) -> int:
    if config.threads:
        return config.threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, local_processes))


def _optimizer(model: GPT2LMHeadModel, config: TrainConfig) -> torch.optim.Optimizer:
    import torch

    # Decay weight matrices only: biases, layer norms and embeddings keep their scale.
    decay = [
        p for n, p in model.named_parameters() if p.dim() >= 2 and "wte" not in n and "wpe" not in n
    ]
    keep = [
        p
        for n, p in model.named_parameters()
        if not (p.dim() >= 2 and "wte" not in n and "wpe" not in n)
    ]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": keep, "weight_decay": 0.0},
    ]
    # The fused kernel (one pass over all tensors) is faster on CPU and GPU alike.
    fused = all(p.device.type in ("cpu", "cuda") for p in model.parameters())
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95), fused=fused)


class Meter:
    """Training loss and tokens/s over the current log interval (the loss stays on the device
    between log rows, so a GPU is not synchronised every step)."""

    def __init__(self, device: Any) -> None:
        import torch

        self.loss = torch.zeros((), device=device)
        self.reset()

    def reset(self) -> None:
        self.loss.zero_()
        self.steps, self.tokens, self.start = 0, 0, time.perf_counter()

    def add(self, loss: torch.Tensor, tokens: int) -> None:
        self.loss += loss.detach().float()
        self.steps += 1
        self.tokens += tokens

    def read(self) -> tuple[float, float]:
        """(mean loss, tokens/s) of the interval."""
        seconds = max(time.perf_counter() - self.start, 1e-9)
        return float(self.loss) / max(self.steps, 1), self.tokens / seconds


def _rng_state(device_type: str) -> dict[str, Any]:
    import torch

    rng = {"cpu": torch.get_rng_state()}
    if device_type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state()
    return rng


def _resume_error(last_dir: Path, error: BaseException) -> MidimixError:
    return MidimixError(
        f"cannot resume: the state in {last_dir} is incomplete or corrupt "
        f"({type(error).__name__}: {str(error)[:120]}); start a new --run-dir"
    )


def _read_state(last_dir: Path) -> dict[str, Any]:
    try:
        saved = json.loads((last_dir / STATE_FILE).read_text(encoding="utf-8"))
        keys = ("train_config", "data_sha256", "world_size", "state", "best")
        missing = [key for key in keys if key not in saved]
        if missing:
            raise KeyError(", ".join(missing))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise _resume_error(last_dir, error) from error
    return dict(saved)


def _restore(
    last_dir: Path, raw_model: Any, optimizer: Any, scheduler: Any, device: Any, rank: int
) -> None:
    """Load last/ into the model, optimizer, scheduler and this process's RNG."""
    import torch

    from midimix.model import load_weights

    try:
        load_weights(raw_model, last_dir / "model.safetensors")
        optimizer.load_state_dict(
            torch.load(last_dir / "optimizer.pt", map_location=device, weights_only=True)
        )
        scheduler.load_state_dict(torch.load(last_dir / "scheduler.pt", weights_only=True))
        rng = torch.load(last_dir / "rng.pt", weights_only=True)[rank]
    except (OSError, ValueError, KeyError, IndexError, RuntimeError, EOFError) as error:
        raise _resume_error(last_dir, error) from error
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])


def train(tokens_dir: Path, run_dir: Path, config: TrainConfig) -> TrainResult:
    """Train on tokens_dir's train split, validate on its validation split, write run_dir."""
    import torch
    from accelerate.utils import gather_object
    from tqdm import tqdm
    from transformers import get_cosine_schedule_with_warmup

    from midimix.dataset import TokenDataset, collate
    from midimix.model import build_model, count_parameters, save_checkpoint

    started = time.perf_counter()
    run_dir = Path(run_dir)
    best_dir, last_dir = run_dir / "best", run_dir / "last"
    data = load_data(tokens_dir)
    tok = data.tokenizer
    if last_dir.exists() and not config.resume:
        raise MidimixError(
            f"{run_dir} already holds a run; pass --resume to continue it or pick a new --run-dir"
        )
    accelerator = _accelerator(config.device)
    rank, world = accelerator.process_index, accelerator.num_processes
    main, device = accelerator.is_main_process, accelerator.device
    if device.type == "cpu":
        torch.set_num_threads(_cpu_threads(config, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))

    torch.manual_seed(config.seed)  # the same initial weights on every process
    size = config.model_config()
    model = build_model(tok.vocab_size, size, tok.pad_id, tok.bos_id, tok.eos_id)
    torch.manual_seed(config.seed * 1000 + rank + 1)  # dropout differs between processes
    seq_len = config.seq_len
    dataset = TokenDataset(data.train, tok, seq_len, config.any_prob, config.seed)
    steps_per_epoch = math.ceil(len(dataset) / (config.batch_size * world))
    total_steps = config.max_steps or config.epochs * steps_per_epoch
    optimizer = _optimizer(model, config)
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, min(config.warmup_steps, total_steps // 2), total_steps
    )
    # The scheduler stays unprepared: accelerate would step it once per process.
    model, optimizer = accelerator.prepare(model, optimizer)
    raw_model = accelerator.unwrap_model(model)

    state: dict[str, Any] = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best_val_loss": None}
    best_meta: dict[str, Any] = {}
    if config.resume and last_dir.exists():
        saved = _read_state(last_dir)
        check_resume(saved, config, data.sha256, world)
        _restore(last_dir, raw_model, optimizer, scheduler, device, rank)
        state, best_meta = saved["state"], saved["best"]

    log = CsvLog(run_dir / "log.csv", tok.genres, main)
    log.truncate_after(state["step"])
    truth = [tok.genres.index(g) for g, _ in data.validation]
    unigram = unigram_loss(
        [[*ids, tok.eos_id] for _, ids in data.train],
        [[*ids, tok.eos_id] for _, ids in data.validation],
        tok.vocab_size,
    )
    num_parameters = count_parameters(raw_model)
    base_meta = {
        "train_config": config_to_dict(config),
        "model_config": {"preset": config.preset, **dataclasses.asdict(size)},
        "data_sha256": data.sha256,
        "max_seq_len": seq_len,
        "num_parameters": num_parameters,
        "unigram_val_loss": unigram,
    }

    def evaluate_and_save() -> None:
        """Validation and best/ (when it improved) on the main process; last/ always."""
        nonlocal best_meta
        if main:
            nll, count = genre_losses(raw_model, tok, data.validation, seq_len)
            val_loss, per_genre, sensitivity = summarize_losses(nll, count, truth, tok.genres)
            per_genre_log = {f"val_loss_{g}": v for g, v in per_genre.items()}
            log.write(state["step"], epoch=state["epoch"], val_loss=val_loss,
                      genre_sensitivity=sensitivity, **per_genre_log)  # fmt: skip
            if state["best_val_loss"] is None or val_loss < state["best_val_loss"]:
                state["best_val_loss"] = val_loss
                best_meta = {**base_meta, "step": state["step"], "epoch": state["epoch"],
                             "val_loss": val_loss, "val_loss_per_genre": per_genre,
                             "genre_sensitivity": sensitivity}  # fmt: skip
                save_checkpoint(raw_model, tok, best_meta, best_dir)
        rngs = gather_object([_rng_state(device.type)])  # every process's, for an exact resume
        if main:
            resume_state = {"train_config": config_to_dict(config), "data_sha256": data.sha256,
                            "world_size": world, "state": state, "best": best_meta}  # fmt: skip
            _save_last(last_dir, raw_model, optimizer, scheduler, rngs, resume_state)
        accelerator.wait_for_everyone()

    bar = tqdm(total=total_steps, initial=state["step"], disable=not (main and config.progress),
               desc="train", unit="step", dynamic_ncols=True)  # fmt: skip
    meter = Meter(device)
    steps_this_call, step_seconds, tokens_seen = 0, 0.0, 0
    order_epoch, order = -1, []
    model.train()
    while state["step"] < total_steps:
        if state["batch_in_epoch"] >= steps_per_epoch:
            state["epoch"], state["batch_in_epoch"] = state["epoch"] + 1, 0
        if order_epoch != state["epoch"]:  # a new epoch: its order and its Genre_any draws
            order_epoch = state["epoch"]
            order = epoch_order(len(dataset), config.seed, order_epoch)
            dataset.set_epoch(order_epoch)
        tick = time.perf_counter()
        indices = batch_indices(order, state["batch_in_epoch"], config.batch_size, rank, world)
        batch = collate([dataset[i] for i in indices], tok.pad_id)
        tokens = int(batch["attention_mask"].sum()) * world  # processes' batches are alike
        loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
        accelerator.backward(loss)
        if config.grad_clip:
            accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step_seconds += time.perf_counter() - tick
        meter.add(loss, tokens)
        tokens_seen += tokens
        state["step"] += 1
        state["batch_in_epoch"] += 1
        steps_this_call += 1
        bar.update(1)
        if state["step"] % config.log_every == 0:
            mean_loss, rate = meter.read()
            log.write(state["step"], epoch=state["epoch"], lr=scheduler.get_last_lr()[0],
                      train_loss=mean_loss, tokens_per_second=rate)  # fmt: skip
            bar.set_postfix(loss=f"{mean_loss:.3f}", tok_s=f"{rate:,.0f}")
            meter.reset()
        stop = bool(config.stop_after_steps) and steps_this_call >= config.stop_after_steps
        if stop or state["step"] >= total_steps or state["step"] % config.eval_every == 0:
            evaluate_and_save()
            meter.start = time.perf_counter()  # validation time is not training time
        if stop:
            break
    bar.close()
    if steps_this_call == 0 and not best_meta:  # resumed a finished run that never validated
        evaluate_and_save()
    return TrainResult(
        run_dir=run_dir,
        best_dir=best_dir,
        last_dir=last_dir,
        step=state["step"],
        total_steps=total_steps,
        finished=state["step"] >= total_steps,
        best_val_loss=float(best_meta.get("val_loss", math.nan)),
        val_loss_per_genre=dict(best_meta.get("val_loss_per_genre", {})),
        genre_sensitivity=float(best_meta.get("genre_sensitivity", math.nan)),
        unigram_val_loss=unigram,
        tokens_per_second=tokens_seen / step_seconds if step_seconds else 0.0,
        num_parameters=num_parameters,
        seconds=time.perf_counter() - started,
    )


def _save_last(
    folder: Path, model: Any, optimizer: Any, scheduler: Any, rngs: list[Any], state: dict[str, Any]
) -> None:
    """run_dir/last: weights (safetensors), optimizer/scheduler/RNG (torch.save of tensors and
    numbers, read back with weights_only=True), state.json; written aside, then swapped in."""
    import torch

    tmp = folder.with_name(f".{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        with quiet_transformers():
            model.save_pretrained(tmp)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(rngs, tmp / "rng.pt")
        atomic_write_json(tmp / STATE_FILE, state)
        swap_in(tmp, folder)
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        raise MidimixError(
            f"could not save the resume state to {folder}: {error}; the previous state there "
            f"is unchanged; free some space and run again with --resume"
        ) from error


# ---------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m midimix.train",
        description="Train a genre-conditioned GPT-2 on a token data set (midimix tokenize). "
        "Runs unchanged under torchrun / accelerate launch.",
    )
    p.add_argument(
        "--tokens-dir", type=Path, default=TOKENS_DIR, help=f"token data set (default {TOKENS_DIR})"
    )
    p.add_argument(
        "--run-dir",
        type=Path,
        default=RUNS_DIR / "default",
        help="output folder: best/, last/, log.csv (default %(default)s)",
    )
    model = p.add_argument_group("model")
    model.add_argument(
        "--preset",
        default=d.preset,
        choices=list(PRESETS),
        help=f"model size: tiny (tests), small (CPU), base (GPU) (default {d.preset})",
    )
    model.add_argument(
        "--dropout",
        type=float,
        default=None,
        help="dropout; more for little data (default: the preset's, 0.1; 0 for tiny)",
    )
    model.add_argument(
        "--max-seq-len",
        type=int,
        default=d.max_seq_len,
        help="tokens per chunk, BOS and genre included; 0: the preset's context "
        "(default %(default)s)",
    )
    run_length = p.add_argument_group("run length (--max-steps or --epochs)")
    length = run_length.add_mutually_exclusive_group()
    length.add_argument(
        "--max-steps",
        type=int,
        default=d.max_steps,
        help="optimizer steps; 0: run --epochs passes (default %(default)s)",
    )
    length.add_argument(
        "--epochs",
        type=int,
        default=d.epochs,
        help=f"passes over the training chunks, when --max-steps is 0 (default {d.epochs})",
    )
    optim = p.add_argument_group("optimization")
    optim.add_argument(
        "--batch-size",
        type=int,
        default=d.batch_size,
        help=f"chunks per process per step (default {d.batch_size})",
    )
    optim.add_argument(
        "--lr", type=float, default=d.lr, help=f"peak AdamW learning rate (default {d.lr:g})"
    )
    optim.add_argument(
        "--warmup-steps",
        type=int,
        default=d.warmup_steps,
        help="linear warm-up steps, then cosine decay to 0; at most half the run "
        f"(default {d.warmup_steps})",
    )
    optim.add_argument(
        "--weight-decay",
        type=float,
        default=d.weight_decay,
        help="AdamW weight decay, on weight matrices only, not on biases, norms or embeddings "
        f"(default {d.weight_decay:g})",
    )
    optim.add_argument(
        "--grad-clip",
        type=float,
        default=d.grad_clip,
        help=f"max gradient norm, 0 off (default {d.grad_clip:g})",
    )
    optim.add_argument(
        "--any-prob",
        type=float,
        default=d.any_prob,
        help="share of chunks whose genre token becomes Genre_any, for guidance "
        f"(default {d.any_prob:g})",
    )
    optim.add_argument(
        "--seed",
        type=int,
        default=d.seed,
        help=f"random seed: model init, data order, Genre_any choice, dropout (default {d.seed})",
    )
    logs = p.add_argument_group("checkpoints and logging")
    logs.add_argument(
        "--eval-every",
        type=int,
        default=d.eval_every,
        help=f"steps between validation + checkpoints, and at the end (default {d.eval_every})",
    )
    logs.add_argument(
        "--log-every",
        type=int,
        default=d.log_every,
        help=f"steps between training-loss rows of log.csv (default {d.log_every})",
    )
    logs.add_argument(
        "--resume", action="store_true", help="continue run-dir/last exactly where it stopped"
    )
    logs.add_argument(
        "--stop-after-steps",
        type=int,
        default=0,
        help="stop after N steps of this call, state saved; 0: never (default %(default)s)",
    )
    logs.add_argument("--no-progress", action="store_true", help="no progress bar")
    hardware = p.add_argument_group("hardware")
    hardware.add_argument(
        "--device",
        default=d.device,
        choices=DEVICES,
        help="auto: CUDA (bf16 where supported) when present, else CPU (default %(default)s)",
    )
    hardware.add_argument(
        "--threads",
        type=int,
        default=d.threads,
        help="CPU threads per process; 0: the cores this process may use / processes "
        "(default %(default)s)",
    )
    return p


@cli_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = TrainConfig(
        preset=args.preset,
        max_steps=args.max_steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip,
        dropout=args.dropout,
        any_prob=args.any_prob,
        max_seq_len=args.max_seq_len,
        seed=args.seed,
        eval_every=args.eval_every,
        log_every=args.log_every,
        device=args.device,
        threads=args.threads,
        resume=args.resume,
        stop_after_steps=args.stop_after_steps,
        progress=not args.no_progress,
    )
    result = train(args.tokens_dir, args.run_dir, config)
    if int(os.environ.get("RANK", "0")) == 0:
        print(result.text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
