"""Shared fixtures of the test suite."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """`tmpfs("64k")` mounts a small real tmpfs and returns its folder: a full disk (ENOSPC)
    as the kernel gives it, not an injected error. Needs root, which the set-up and CI run as;
    every mount is undone at the end of the test."""
    mounts: list[Path] = []

    def mount(size: str) -> Path:
        folder = tmp_path / f"disk{len(mounts)}"
        folder.mkdir()
        cmd = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]
        subprocess.run(cmd, check=True)
        mounts.append(folder)
        return folder

    try:
        yield mount
    finally:
        for folder in mounts:
            with contextlib.suppress(OSError):
                subprocess.run(["umount", "-l", str(folder)], check=False)
