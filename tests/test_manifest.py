"""The stage contract shared by all stages: atomic writes, manifests, skips, shards."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from midimix.errors import InputError, ItemError
from midimix.manifest import (
    Item,
    Manifest,
    atomic_path,
    atomic_write_text,
    folder_lock,
    in_shard,
    params_hash,
    run_items,
)


def _double(item: Item) -> dict[str, Any]:
    """A toy stage: the output holds the input's text twice; 'bad' inputs fail."""
    text = item.source.read_text()
    if text == "bad":
        raise ItemError("input says bad")
    atomic_write_text(item.output, text * 2)
    return {"chars": len(text) * 2}


def _items(tmp_path: Path, texts: dict[str, str]) -> list[Item]:
    items = []
    for name, text in texts.items():
        src = tmp_path / "in" / f"{name}.txt"
        src.parent.mkdir(parents=True, exist_ok=True)
        if not src.exists() or src.read_text() != text:
            src.write_text(text)
        items.append(Item(name, "g", src, tmp_path / "out" / f"{name}.txt"))
    return items


def test_run_items_records_failures_and_skips_up_to_date(tmp_path: Path) -> None:
    manifest = Manifest(tmp_path / "out" / "manifest.jsonl")
    items = _items(tmp_path, {"a": "x", "b": "bad", "c": "yz"})
    first = run_items("toy", items, _double, manifest, {"p": 1}, progress=False)
    assert (first.done, first.failed, first.skipped) == (2, 1, 0)
    assert first.failures == [("b", "input says bad")]
    assert first.exit_code == 1
    assert (tmp_path / "out" / "c.txt").read_text() == "yzyz"

    again = run_items("toy", items, _double, manifest, {"p": 1}, progress=False)
    # done items are skipped; the failed one is retried (and fails again)
    assert (again.done, again.skipped, again.failed) == (0, 2, 1)

    changed = _items(tmp_path, {"a": "new", "b": "bad", "c": "yz"})
    third = run_items("toy", changed, _double, manifest, {"p": 1}, progress=False)
    assert (third.done, third.skipped) == (1, 1)  # only the changed input is redone
    assert (tmp_path / "out" / "a.txt").read_text() == "newnew"

    other_params = run_items("toy", changed, _double, manifest, {"p": 2}, progress=False)
    assert other_params.done == 2  # new parameters redo everything


def test_missing_output_is_redone(tmp_path: Path) -> None:
    manifest = Manifest(tmp_path / "m.jsonl")
    items = _items(tmp_path, {"a": "x"})
    run_items("toy", items, _double, manifest, {}, progress=False)
    (tmp_path / "out" / "a.txt").unlink()
    assert run_items("toy", items, _double, manifest, {}, progress=False).done == 1


def test_workers_give_same_records(tmp_path: Path) -> None:
    manifest = Manifest(tmp_path / "m.jsonl")
    items = _items(tmp_path, {f"i{n}": "ab" * n for n in range(1, 6)})
    summary = run_items("toy", items, _double, manifest, {}, workers=2, progress=False)
    assert summary.done == 5
    records = manifest.records()
    assert sorted(records) == [f"i{n}" for n in range(1, 6)]
    assert records["i3"]["chars"] == 12


def test_manifest_ignores_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"id": "a", "status": "ok"}) + "\n" + '{"id": "b", "sta')
    assert list(Manifest(path).records()) == ["a"]


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    final = tmp_path / "x.wav"
    final.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert final.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.wav"]


def test_shards_partition_items() -> None:
    ids = [f"clip{n}" for n in range(200)]
    shards = [{i for i in ids if in_shard(i, (k, 3))} for k in range(3)]
    assert set().union(*shards) == set(ids)
    assert sum(len(s) for s in shards) == len(ids)
    assert all(40 < len(s) < 95 for s in shards)


def test_params_hash_is_order_independent() -> None:
    assert params_hash({"a": 1, "b": Path("x")}) == params_hash({"b": "x", "a": 1})
    assert params_hash({"a": 1}) != params_hash({"a": 2})


def test_initializer_runs_only_when_there_is_work(tmp_path: Path) -> None:
    manifest = Manifest(tmp_path / "m.jsonl")
    items = _items(tmp_path, {"a": "x"})
    calls: list[str] = []
    run_items("toy", items, _double, manifest, {}, initializer=lambda: calls.append("init"))
    assert calls == ["init"]
    again = run_items("toy", items, _double, manifest, {}, initializer=lambda: calls.append("2"))
    assert (again.skipped, calls) == (1, ["init"])  # all up to date: no model loaded for nothing


def test_forkserver_workers_with_preload_give_same_records(tmp_path: Path) -> None:
    manifest = Manifest(tmp_path / "m.jsonl")
    items = _items(tmp_path, {f"i{n}": "ab" * n for n in range(1, 5)} | {"b": "bad"})
    summary = run_items(
        "toy", items, _double, manifest, {}, workers=2, progress=False,
        start_method="forkserver", preload=("json",),
    )  # fmt: skip
    assert (summary.done, summary.failed) == (4, 1)
    assert manifest.records()["i4"]["chars"] == 16


# ------------------------------------------------------------------ faults: full disk, torn lines


@pytest.fixture
def tiny_disk(tmpfs: Callable[[str], Path]) -> Path:
    return tmpfs("64k")


def _fill(folder: Path) -> None:
    with contextlib.suppress(OSError), open(folder / "filler", "wb") as handle:
        while True:
            handle.write(b"\0" * 4096)
            handle.flush()


def test_full_disk_leaves_no_empty_output_under_its_final_name(tiny_disk: Path) -> None:
    _fill(tiny_disk)
    final = tiny_disk / "piece.mid"
    with pytest.raises(OSError), atomic_path(final) as tmp:
        tmp.touch()  # what symusic's dump_midi leaves on a full disk: 0 bytes, no error
    assert not final.exists()
    assert [p.name for p in tiny_disk.iterdir()] == ["filler"]


def test_manifest_append_on_a_full_disk_tears_no_line(tiny_disk: Path) -> None:
    manifest = Manifest(tiny_disk / "manifest.jsonl")
    manifest.append({"id": "a", "status": "ok"})
    _fill(tiny_disk)
    with pytest.raises(OSError):
        manifest.append({"id": "b", "status": "ok", "pad": "x" * 8192})
    (tiny_disk / "filler").unlink()
    manifest.append({"id": "c", "status": "ok"})
    assert sorted(manifest.records()) == ["a", "c"]
    assert manifest.path.read_text().count("\n") == 2


def test_append_after_a_torn_line_keeps_the_new_record(tmp_path: Path) -> None:
    manifest = Manifest(tmp_path / "m.jsonl")
    manifest.append({"id": "a", "status": "ok"})
    with open(manifest.path, "a") as handle:
        handle.write('{"id": "b", "sta')  # a kill mid-line
    manifest.append({"id": "c", "status": "ok"})
    assert sorted(manifest.records()) == ["a", "c"]


def _explode(item: Item) -> dict[str, Any]:
    if item.id == "b":
        raise ZeroDivisionError("float division by zero")
    return _double(item)


@pytest.mark.parametrize("workers", [1, 2], ids=["in-process", "two-workers"])
def test_an_unforeseen_error_fails_one_item_not_the_run(tmp_path: Path, workers: int) -> None:
    items = _items(tmp_path, {"a": "x", "b": "y", "c": "z"})
    summary = run_items(
        "toy",
        items,
        _explode,
        Manifest(tmp_path / "m.jsonl"),
        {},
        workers=workers,
        progress=False,
    )
    assert (summary.done, summary.failed) == (2, 1)
    assert summary.failures[0][0] == "b"
    assert "ZeroDivisionError" in summary.failures[0][1]


def test_a_second_run_on_the_same_folder_is_refused(tmp_path: Path) -> None:
    manifest = Manifest(tmp_path / "m.jsonl")
    with folder_lock(manifest.path, "toy"), pytest.raises(InputError, match="another midimix toy"):
        run_items("toy", _items(tmp_path, {"a": "x"}), _double, manifest, {}, progress=False)
    summary = run_items("toy", _items(tmp_path, {"a": "x"}), _double, manifest, {}, progress=False)
    assert summary.done == 1


def test_a_full_disk_ends_a_command_line_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import errno

    from midimix.errors import cli_errors

    @cli_errors
    def main() -> int:
        raise OSError(errno.ENOSPC, "No space left on device", "data/clips/x.wav")

    assert main() == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "disk is full writing data/clips/x.wav" in err


def test_output_names_stay_inside_the_output_folder() -> None:
    from midimix.generate import GenerateConfig, output_stem

    stem = output_stem(GenerateConfig(name="../../etc/passwd"), {"lofi": 1.0}, 0)
    assert "/" not in stem and not stem.startswith(".")
