"""What a training run reports as it goes: log.csv (and TensorBoard when installed), and the
meter that averages the training loss and counts tokens/s between log rows."""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from midimix.manifest import atomic_path

if TYPE_CHECKING:
    import torch


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
