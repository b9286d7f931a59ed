"""Train a genre-conditioned GPT-2 on a token data set (`midimix tokenize` output).

    python -m midimix.train --tokens-dir data/tokens --run-dir runs/demo --preset small

The same command runs on one CPU, one GPU (bf16) or many processes: under `torchrun` or
`accelerate launch` each process trains on its share of every batch (DDP through
`accelerate.Accelerator`). What it writes in the run folder:

    best/              the checkpoint with the lowest validation loss (see midimix.model)
    last/              the full state to resume from (see midimix.train_state)
    log.csv            training loss, learning rate, tokens/s; validation loss per genre,
                       genre sensitivity (see midimix.train_log)
    train.config.json  the options of the last call (`--config` takes it back)

Resuming is exact: the data order of an epoch is a function of (seed, epoch) alone, so a
resumed run skips the batches it already used and continues with the same numbers.

The parts: midimix.train_config (the options), midimix.train_loop (the loop of one process),
midimix.train_state (last/), midimix.train_log (log.csv), midimix.validation (the scores).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from midimix.config import RUNS_DIR, TOKENS_DIR, save_config
from midimix.errors import MidimixError, cli_errors
from midimix.manifest import folder_lock
from midimix.options import add_config_arguments, config_from_args, stage_parser
from midimix.train_config import TrainConfig
from midimix.train_state import tidy_run_folder
from midimix.validation import genre_losses, genre_sensitivity, summarize_losses

__all__ = ["TrainConfig", "TrainResult", "main", "train"]
# Re-exported: the sweep reads the validation losses, docs/train.md names genre_sensitivity.
__all__ += ["genre_losses", "genre_sensitivity", "summarize_losses"]


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


def train(tokens_dir: Path, run_dir: Path, config: TrainConfig) -> TrainResult:
    """Train on tokens_dir's train split, validate on its validation split, write run_dir.
    A second training on the same run folder is refused while one runs (the first process
    of a distributed run holds the lock for all of them)."""
    run_dir = Path(run_dir)
    if int(os.environ.get("RANK", "0")) != 0:
        return _train(tokens_dir, run_dir, config)
    with folder_lock(run_dir / "log.csv", "train"):
        tidy_run_folder(run_dir)
        return _train(tokens_dir, run_dir, config)


def _train(tokens_dir: Path, run_dir: Path, config: TrainConfig) -> TrainResult:
    from midimix.train_loop import TrainingRun, load_data

    started = time.perf_counter()
    data = load_data(tokens_dir)
    if (run_dir / "last").exists() and not config.resume:
        raise MidimixError(
            f"{run_dir} already holds a run; pass --resume to continue it or pick a new --run-dir"
        )
    run = TrainingRun(data, run_dir, config)
    run.resume()
    if run.is_main:  # after the resume check: a refused resume leaves the run's options
        save_config(config, run_dir, "train")
    run.open_log()
    run.train()
    best = run.best
    return TrainResult(
        run_dir=run_dir,
        best_dir=run.best_dir,
        last_dir=run.last_dir,
        step=run.state["step"],
        total_steps=run.total_steps,
        finished=run.state["step"] >= run.total_steps,
        best_val_loss=float(best.get("val_loss", math.nan)),
        val_loss_per_genre=dict(best.get("val_loss_per_genre", {})),
        genre_sensitivity=float(best.get("genre_sensitivity", math.nan)),
        unigram_val_loss=run.unigram_val_loss,
        tokens_per_second=run.tokens_per_second,
        num_parameters=run.num_parameters,
        seconds=time.perf_counter() - started,
    )


# ---------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser("train", __doc__)
    parser.description = f"{parser.description} Runs unchanged under torchrun / accelerate launch."
    parser.add_argument(
        "--tokens-dir",
        type=Path,
        default=TOKENS_DIR,
        metavar="DIR",
        help="token data set written by `midimix tokenize` (default: %(default)s)",
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=RUNS_DIR / "default",
        metavar="DIR",
        help="output folder: best/, last/, log.csv, train.config.json (default: %(default)s)",
    )
    add_config_arguments(parser, TrainConfig)
    return parser


@cli_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(TrainConfig, args)
    result = train(args.tokens_dir, args.run_dir, config)
    if int(os.environ.get("RANK", "0")) == 0:
        print(result.text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
