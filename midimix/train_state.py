"""run_dir/last: the full state a training run resumes from, exactly.

    model.safetensors   the weights
    optimizer.pt        AdamW's moments      (torch.save of tensors and numbers only,
    scheduler.pt        the learning-rate     read back with weights_only=True)
    rng.pt              every process's RNG state
    state.json          the options, the data's sha256, the process count, the data position
                        and the best checkpoint's record

The folder is written aside and then swapped in, so a run killed while saving leaves the
previous state complete. A resume is refused when the options that change the numbers, the
data or the process count differ from the run's.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from midimix.config import config_to_dict
from midimix.errors import ConfigError, MidimixError
from midimix.manifest import atomic_write_json
from midimix.model import quiet_transformers, save_failed

if TYPE_CHECKING:
    from midimix.train_config import TrainConfig

STATE_FILE = "state.json"
# Options that may change between a run and its resumption without changing its numbers.
RESUMABLE_CHANGES = frozenset(
    {"resume", "stop_after_steps", "progress", "device", "threads", "eval_every", "log_every"}
)


SETTINGS_BEFORE_THEY_EXISTED = {"precision": "fp32"}  # runs saved before --precision: fp32


def check_resume(
    saved: dict[str, Any], config: TrainConfig, sha: dict[str, str], world: int
) -> None:
    """The state in last/ must come from the same options, data and process count."""
    now = config_to_dict(config)
    # a run saved before an option existed ran as that option's value then
    before = {**SETTINGS_BEFORE_THEY_EXISTED, **saved["train_config"]}
    changed = sorted(k for k in now if k not in RESUMABLE_CHANGES and before.get(k) != now[k])
    if changed:
        diffs = ", ".join(f"{k}: {before.get(k)!r} -> {now[k]!r}" for k in changed)
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


def tidy_run_folder(run_dir: Path) -> None:
    """Undo what a training killed while saving left behind. Call it holding the run folder's
    lock (no other training is saving there): a best/ or last/ that was moved aside but not
    yet replaced comes back (it is the state that matches the rest of the run), and the
    half-written or set-aside copies beside it go."""
    for name in ("best", "last"):
        aside = sorted(run_dir.glob(f".{name}.old*"))
        if aside and not (run_dir / name).exists():
            os.replace(aside.pop(0), run_dir / name)
        for stale in [*aside, *run_dir.glob(f".{name}.tmp*")]:
            shutil.rmtree(stale, ignore_errors=True)


def rng_state(device_type: str) -> dict[str, Any]:
    """This process's torch RNG state (CPU, and CUDA when training there)."""
    import torch

    rng = {"cpu": torch.get_rng_state()}
    if device_type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state()
    return rng


def save_last(
    folder: Path, model: Any, optimizer: Any, scheduler: Any, rngs: list[Any], state: dict[str, Any]
) -> None:
    """Write the resume state (`rngs`: one per process, in rank order) and swap it in."""
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
    except Exception as failure:
        shutil.rmtree(tmp, ignore_errors=True)
        error = save_failed(failure, tmp, f"the resume state to {folder}", "state")
        if error is failure:
            raise
        raise error from failure


def _resume_error(last_dir: Path, error: BaseException) -> MidimixError:
    return MidimixError(
        f"cannot resume: the state in {last_dir} is incomplete or corrupt "
        f"({type(error).__name__}: {' '.join(str(error).split())[:120]}); start a new --run-dir"
    )


def read_state(last_dir: Path) -> dict[str, Any]:
    """state.json of last/, with every key a resume needs (one clear error otherwise)."""
    try:
        saved = json.loads((last_dir / STATE_FILE).read_text(encoding="utf-8"))
        keys = ("train_config", "data_sha256", "world_size", "state", "best")
        missing = [key for key in keys if key not in saved]
        if missing:
            raise KeyError(", ".join(missing))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise _resume_error(last_dir, error) from error
    return dict(saved)


def restore(
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
    except (
        OSError, ValueError, KeyError, IndexError, RuntimeError, EOFError, TypeError,
        AttributeError, pickle.UnpicklingError,  # a file that is not a torch save at all
    ) as error:  # fmt: skip
        raise _resume_error(last_dir, error) from error
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
