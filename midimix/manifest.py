"""The stage contract, shared by every stage that processes a collection of files.

- outputs are written atomically (temporary file in the same folder, then `os.replace`);
- a JSON-lines manifest holds one record per item: id, genre, source, input hash, parameters,
  output, status and, for a failure, the reason in plain words;
- `run_items` skips items whose output is up to date (same input hash, same parameters),
  runs the rest in worker processes with a progress bar, keeps going past bad items and
  returns a summary that says how many failed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from midimix.errors import InputError, ItemError

STATUS_OK = "ok"
STATUS_EMPTY = "empty"  # processed, but nothing came out (silence, no notes): not a failure
STATUS_FAILED = "failed"


def sha256_file(path: Path, block_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(block_bytes):
            digest.update(block)
    return digest.hexdigest()


def params_hash(params: dict[str, Any]) -> str:
    """A short, stable hash of a stage's parameters (keys sorted, paths as strings)."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


FULL_DISK_BYTES = 1 << 20  # less free space than this where an output goes: a full disk


def disk_is_full(path: Path) -> bool:
    """True when the file system that `path` would be written to has (almost) no room left."""
    folder = Path(path).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free < FULL_DISK_BYTES
    except OSError:
        return False


def disk_full_error(path: Path) -> OSError:
    return OSError(errno.ENOSPC, "No space left on device", str(path))


def as_write_error(error: BaseException, path: Path) -> OSError | None:
    """The OSError behind a failed write to `path`: the error itself, or ENOSPC when a library
    words a full disk its own way (safetensors' SafetensorError, torch's RuntimeError,
    libsndfile's "System error."); None for any other failure."""
    if isinstance(error, OSError):
        return error
    return disk_full_error(path) if disk_is_full(path) else None


@contextlib.contextmanager
def atomic_path(final: Path, *, allow_empty: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it over `final` only if the block succeeds
    and wrote something.

    The temporary name keeps the suffix (soundfile and friends pick the format from it) and
    starts with '.', so a folder listing never mistakes it for a finished output. Some writers
    (symusic's `dump_midi`) write 0 bytes on a full disk without raising: an empty result is
    refused here, before the rename could make it look finished."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.stem}.tmp{os.getpid()}{final.suffix}")
    try:
        yield tmp
        if not allow_empty and (not tmp.exists() or tmp.stat().st_size == 0):
            raise disk_full_error(final)
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path, allow_empty=not data) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


class Manifest:
    """An append-only JSON-lines file; the last record of an id wins.

    Appending one line per finished item (flushed at once) means a killed run loses at most
    the items in flight; a torn last line is ignored when reading."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def records(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        if not self.path.exists():
            return out
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line torn by a kill
                if isinstance(record, dict) and "id" in record:
                    out[str(record["id"])] = record
        return out

    def append(self, record: dict[str, Any]) -> None:
        """Add one line. A line torn by a kill is closed first, so the new record starts on a
        line of its own; a write that fails (a full disk) is cut back off, so it tears nothing."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode("utf-8")
        with open(self.path, "a+b") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size:
                handle.seek(size - 1)
                if handle.read(1) != b"\n":
                    line = b"\n" + line
            try:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            except OSError:
                with contextlib.suppress(OSError):
                    handle.truncate(size)
                raise


@contextlib.contextmanager
def folder_lock(manifest_path: Path, stage: str) -> Iterator[None]:
    """Hold an exclusive lock beside a manifest while a stage writes there: a second run of the
    same stage on the same folder is refused with a clear line instead of interleaving."""
    lock_path = Path(manifest_path).with_name(f".{Path(manifest_path).name}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise InputError(
                f"another midimix {stage} run ({holder}) is writing to {lock_path.parent}; "
                f"wait for it to finish, or give this run another output folder"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to kill this (worker) process when its parent dies, so that a killed run
    leaves no workers behind still writing outputs. Elsewhere: nothing to do."""
    if sys.platform != "linux":
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before the request was made
        os._exit(1)


def _worker_start(initializer: Callable[[], None] | None) -> None:
    die_with_parent()
    if initializer is not None:
        initializer()


@dataclass
class Item:
    """One unit of work of a stage: an input file and where its output goes."""

    id: str
    genre: str
    source: Path
    output: Path
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageSummary:
    stage: str
    done: int = 0  # processed now
    skipped: int = 0  # already up to date
    empty: int = 0  # processed, nothing came out
    failed: int = 0
    out_of_shard: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (id, reason)
    records: list[dict[str, Any]] = field(default_factory=list)  # this run's new records
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def text(self) -> str:
        parts = [f"{self.stage}: {self.done} done", f"{self.skipped} up to date"]
        if self.empty:
            parts.append(f"{self.empty} empty")
        parts.append(f"{self.failed} failed")
        lines = [", ".join(parts) + f" ({self.seconds:.1f} s)"]
        lines += [f"  failed {item}: {reason}" for item, reason in self.failures[:20]]
        if len(self.failures) > 20:
            lines.append(f"  ... and {len(self.failures) - 20} more (see the manifest)")
        return "\n".join(lines)


def cores_per_worker(workers: int) -> int:
    """The machine's cores shared out among a stage's worker processes (at least one each)."""
    return max(1, (os.cpu_count() or 1) // workers)


def in_shard(item_id: str, shard: tuple[int, int]) -> bool:
    """Stable assignment of items to shards by a hash of the id (independent of order)."""
    k, n = shard
    if n == 1:
        return True
    return int(hashlib.md5(item_id.encode()).hexdigest(), 16) % n == k


# A process function takes an Item and returns the extra fields of its record; it raises
# ItemError (or one of the stage's known loading errors) for a bad item.
ProcessFn = Callable[[Item], dict[str, Any]]


def _failure_reason(
    error: BaseException, item: Item, known: tuple[type[BaseException], ...]
) -> str:
    """The manifest's one-line reason for an item whose work raised `error`: a full disk
    (however a library words it), the message of a `known` error, a lack of memory, another
    read or write error, or an error no check foresaw."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk is full writing {error.filename or item.output}"
    if isinstance(error, known):
        text = str(error).strip()
        return text.splitlines()[0] if text else type(error).__name__
    if isinstance(error, MemoryError):
        return "ran out of memory on this input"
    if isinstance(error, OSError):  # a file that vanished, a folder not writable
        return f"cannot write or read: {error}"
    if disk_is_full(item.output):  # libraries word ENOSPC their own way
        return f"the disk is full writing {item.output}"
    text = " ".join(str(error).split())[:160]
    return (
        f"unexpected {type(error).__name__} on this input: {text} (please report it with the file)"
    )


def _run_one(
    fn: ProcessFn, item: Item, known_errors: tuple[type[BaseException], ...]
) -> dict[str, Any]:
    start = time.perf_counter()
    known: tuple[type[BaseException], ...] = (ItemError, *known_errors)
    caught: tuple[type[BaseException], ...] = (Exception, *known)
    try:
        fields = fn(item)
        status = fields.pop("status", STATUS_OK)
        record = {"status": status, **fields}
    except caught as error:  # this item fails, not the run
        record = {"status": STATUS_FAILED, "reason": _failure_reason(error, item, known)}
    record["seconds"] = round(time.perf_counter() - start, 3)
    return record


def is_up_to_date(record: dict[str, Any] | None, input_hash: str, phash: str) -> bool:
    if not record or record.get("status") == STATUS_FAILED:
        return False
    if record.get("input_sha256") != input_hash or record.get("params_hash") != phash:
        return False
    outputs = record.get("outputs") or ([record["output"]] if record.get("output") else [])
    return all(Path(p).exists() for p in outputs)


F = TypeVar("F", bound=Callable[..., StageSummary])


def _holding_folder_lock(run: F) -> F:
    """Run a batch only while holding its output folder's lock (`folder_lock`)."""

    @functools.wraps(run)
    def wrapper(
        stage: str, items: Any, fn: Any, manifest: Manifest, *args: Any, **kwargs: Any
    ) -> StageSummary:
        with folder_lock(manifest.path, stage):
            return run(stage, items, fn, manifest, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


@_holding_folder_lock
def run_items(
    stage: str,
    items: Iterable[Item],
    fn: ProcessFn,
    manifest: Manifest,
    params: dict[str, Any],
    *,
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    known_errors: tuple[type[BaseException], ...] = (),
    initializer: Callable[[], None] | None = None,
    preload: Iterable[str] = (),
    progress: bool = True,
    hash_inputs: Callable[[Item], str] | None = None,
    start_method: str = "spawn",
) -> StageSummary:
    """Run `fn` over the items that are in this shard and not up to date; record each.

    `start_method` ("spawn", "fork" or "forkserver") starts the worker processes when
    workers > 1; with "forkserver", `preload` names modules the server imports once (the first
    time it starts in this process) so that every worker forked from it has them."""
    from tqdm import tqdm

    start = time.perf_counter()
    summary = StageSummary(stage)
    phash = params_hash(params)
    previous = manifest.records()
    todo: list[tuple[Item, str]] = []
    for item in items:
        if not in_shard(item.id, shard):
            summary.out_of_shard += 1
            continue
        try:
            digest = hash_inputs(item) if hash_inputs else sha256_file(item.source)
        except OSError as error:
            digest = ""
            record = _base_record(item, digest, phash, params)
            record.update(status=STATUS_FAILED, reason=f"cannot read input: {error.strerror}")
            _finish(summary, manifest, record)
            continue
        if is_up_to_date(previous.get(item.id), digest, phash):
            summary.skipped += 1
            continue
        todo.append((item, digest))

    bar = tqdm(total=len(todo), desc=stage, unit="item", disable=not progress, file=sys.stderr)
    if workers <= 1 or len(todo) <= 1:
        if initializer and todo:  # nothing to do: no model to load
            initializer()
        for item, digest in todo:
            record = _base_record(item, digest, phash, params)
            record.update(_run_one(fn, item, known_errors))
            _finish(summary, manifest, record)
            bar.update()
    else:
        # "spawn" by default: a forked child inherits the parent's FluidSynth, onnxruntime and
        # torch threads mid-state (render_many after a render in one process hung on fork).
        # Stages whose parent holds no such state pass "fork" and skip re-importing per worker;
        # "forkserver" with `preload` gives the same saving from a clean process.
        import multiprocessing  # 40-170 ms, so only when workers are used
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from concurrent.futures.process import BrokenProcessPool

        context = multiprocessing.get_context(start_method)
        if start_method == "forkserver" and preload:
            context.set_forkserver_preload(list(preload))
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_worker_start, initargs=(initializer,)
        ) as pool:
            futures = {pool.submit(_run_one, fn, item, known_errors): (item, d) for item, d in todo}
            for future in as_completed(futures):
                item, digest = futures[future]
                record = _base_record(item, digest, phash, params)
                try:
                    record.update(future.result())
                except BrokenProcessPool:  # a worker crashed (a segfault, the OOM killer)
                    record.update(
                        status=STATUS_FAILED,
                        reason="a worker process died while this item was pending (a crash "
                        "or out of memory); run again to retry it",
                    )
                _finish(summary, manifest, record)
                bar.update()
    bar.close()
    summary.seconds = time.perf_counter() - start
    return summary


def _base_record(item: Item, digest: str, phash: str, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": item.id,
        "genre": item.genre,
        "source": str(item.source),
        "input_sha256": digest,
        "params_hash": phash,
        "params": params,
        "output": str(item.output),
        **item.extra,
    }


def _finish(summary: StageSummary, manifest: Manifest, record: dict[str, Any]) -> None:
    manifest.append(record)
    summary.records.append(record)
    if record["status"] == STATUS_FAILED:
        summary.failed += 1
        summary.failures.append((record["id"], record.get("reason", "unknown")))
    elif record["status"] == STATUS_EMPTY:
        summary.empty += 1
        summary.done += 1
    else:
        summary.done += 1
