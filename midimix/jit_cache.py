"""A per-user JIT cache for numba (librosa's compiled functions), outside the environment.

By default numba caches compiled code next to the sources, inside site-packages, shared by
every process of every user of the environment; several processes compiling librosa's
functions at once there left a cache file that crashed later runs (a segmentation fault in
`librosa.util.peak_pick`). `use_user_cache()` points numba at ~/.cache/midimix/numba (under
$XDG_CACHE_HOME when set) unless NUMBA_CACHE_DIR is set already. It must run before librosa is
imported: the transcribe stage calls it when it is imported, so the stage's workers, forked
from a server started after that, inherit it. numba writes each cache file to a temporary
name and renames it, but that was not enough: two processes compiling from a cold cache at
once still crashed in a cached gufunc (a segmentation fault in librosa's peak picking or beat
tracking, most rounds of benchmarks/bench_jit_cache.py). So `compile_once` lets one process at
a time fill a cold cache (a file lock and a marker per numba and librosa version, used by
`midimix.transcribe.warm_jit_cache` and the decoding step's `midimix.decode_kernel.warm`), and
the drum onsets are picked in numpy."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "midimix" / "numba"


def use_user_cache() -> str:
    """Set NUMBA_CACHE_DIR (if unset) to the per-user folder; returns the folder in use."""
    folder = os.environ.get("NUMBA_CACHE_DIR")
    if not folder:
        folder = str(user_cache_dir())
        os.environ["NUMBA_CACHE_DIR"] = folder
    with contextlib.suppress(OSError):  # numba falls back to its own places if it cannot
        Path(folder).mkdir(parents=True, exist_ok=True)
    numba_config: Any = sys.modules.get("numba.core.config")
    if numba_config is not None and not getattr(numba_config, "CACHE_DIR", ""):
        numba_config.CACHE_DIR = folder  # numba imported already (but not librosa, we hope)
    return folder


def compile_once(tag: str, compile_: Callable[[], None]) -> None:
    """Run `compile_` (calls that compile and cache numba code) in one process at a time, once
    per `tag` (name it after the versions the cached code depends on): the first process takes
    an exclusive lock in the cache folder, compiles and leaves a marker; one that waited on
    the lock finds the marker and loads a complete cache. With the marker there (every run
    after the first) this costs one stat. A folder that cannot be written: `compile_` runs
    unlocked (numba then compiles in memory only)."""
    import fcntl

    folder = Path(os.environ.get("NUMBA_CACHE_DIR") or use_user_cache())
    marker = folder / f"midimix-warm-{tag}"
    if marker.exists():
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / ".midimix-warm.lock", "a")  # noqa: SIM115
    except OSError:
        compile_()
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            if not marker.exists():
                compile_()
                with contextlib.suppress(OSError):
                    marker.touch()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
