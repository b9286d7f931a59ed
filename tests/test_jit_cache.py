"""compile_once: one process at a time compiles, once per tag; a marker records it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from midimix.jit_cache import compile_once


def test_compile_runs_once_per_tag_and_leaves_a_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "cache"))
    calls: list[str] = []
    compile_once("a-1.0", lambda: calls.append("a"))
    compile_once("a-1.0", lambda: calls.append("a again"))
    compile_once("b-2.0", lambda: calls.append("b"))
    assert calls == ["a", "b"]
    assert (tmp_path / "cache" / "midimix-warm-a-1.0").is_file()


def test_a_failed_compile_leaves_no_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "cache"))

    def broken() -> None:
        raise RuntimeError("no compiler")

    with pytest.raises(RuntimeError):
        compile_once("c-1.0", broken)
    assert not (tmp_path / "cache" / "midimix-warm-c-1.0").exists()
    calls: list[int] = []
    compile_once("c-1.0", lambda: calls.append(1))  # tried again, then marked
    assert calls == [1]


def test_an_unwritable_cache_folder_still_compiles(tmp_path: Path, monkeypatch) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(blocked / "cache"))
    calls: list[int] = []
    compile_once("d-1.0", lambda: calls.append(1))
    compile_once("d-1.0", lambda: calls.append(2))  # no marker could be left: compiled again
    assert calls == [1, 2] and not os.path.exists(blocked / "cache")
