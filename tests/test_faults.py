"""Faults through the real command lines: a SIGKILL mid-run, a full disk, two runs at once and
workers of a killed run. Afterwards every output is absent or complete, a re-run gives exactly
the outputs of an uninterrupted run, and no process is left behind."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from midimix.manifest import folder_lock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import fuzz_cli  # noqa: E402  (benchmarks/ is not a package; its seeds are made in code)

ENV = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")


def _cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "midimix", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        start_new_session=True,
    )


def _run(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "midimix", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout_s,
        check=False,
    )


def _tree(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Every visible file's bytes by relative path (manifests and configs left out)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".") and p.name not in skip
    }


def _raw_audio(root: Path, count: int, seconds: float = 6.0) -> Path:
    genre = root / "g"
    genre.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        t = np.arange(round(seconds * 44100)) / 44100
        tone = 0.3 * np.sin(2 * np.pi * (220 + 20 * i) * t) + 0.01 * rng.standard_normal(len(t))
        sf.write(str(genre / f"s{i:02d}.wav"), np.stack([tone, tone], 1), 44100, subtype="PCM_16")
    return root


def _kill_after_lines(path: Path, lines: int, process: subprocess.Popen[str]) -> int:
    """Kill the run's process group once `path` has `lines` records; return the records it
    had when it died (counted after the kill: the run keeps writing until the signal lands)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists() and path.read_text().count("\n") >= lines:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return path.read_text().count("\n")
        time.sleep(0.01)
    raise AssertionError(f"{path} never reached {lines} lines (exit {process.poll()})")


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                if handle.read().split(")")[-1].split()[0] != "Z":
                    alive.add(pid)
        except FileNotFoundError:
            pass
    return alive


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            children = (task / "children").read_text().split() if task.exists() else []
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return found


PREPARE = ("--clip-seconds", "2", "--min-remainder-seconds", "0.5", "--no-progress")


def test_sigkill_during_prepare_then_rerun_gives_the_uninterrupted_outputs(
    tmp_path: Path,
) -> None:
    raw = _raw_audio(tmp_path / "raw", 10)
    done = _run("prepare", "--raw-dir", str(raw), "--clips-dir", str(tmp_path / "a"), *PREPARE)
    assert done.returncode == 0, done.stderr
    clips = tmp_path / "b"
    process = _cli("prepare", "--raw-dir", str(raw), "--clips-dir", str(clips), *PREPARE)
    at_kill = _kill_after_lines(clips / "manifest.jsonl", 1, process)
    assert at_kill < 10  # killed mid-run
    # what is there is complete: every clip under its final name reads back whole
    for path in clips.rglob("*.wav"):
        if not path.name.startswith("."):
            assert len(sf.read(str(path))[0]) == 2 * 22050
    again = _run("prepare", "--raw-dir", str(raw), "--clips-dir", str(clips), *PREPARE)
    assert again.returncode == 0, again.stderr
    assert f"{at_kill} up to date" in again.stdout
    skip = ("manifest.jsonl",)
    assert _tree(clips, skip) == _tree(tmp_path / "a", skip)
    assert len([p for p in clips.rglob("*.wav") if not p.name.startswith(".")]) == 30


@pytest.mark.parametrize("stage", ["collect", "tokenize", "render"])
def test_sigkill_during_a_batch_stage_then_rerun_matches(tmp_path: Path, stage: str) -> None:
    """Killed after its first record, the stage's re-run redoes nothing it had finished and
    ends with exactly the files of an uninterrupted run."""
    count = 12 if stage == "render" else 120
    if stage == "collect":
        inputs: tuple[str, ...] = ("--genre", f"g={_raw_audio(tmp_path / 'in', count, 0.5) / 'g'}")
    elif stage == "tokenize":
        inputs = (f"g={_midi_set(tmp_path / 'in', count) / 'g'}",)
    else:
        midi = sorted(str(p) for p in (_midi_set(tmp_path / "in", count) / "g").glob("*.mid"))
        inputs = (*midi, "--genre-mix", "lofi=1", "--drums", "off")
    flag = {"collect": "--raw-dir", "tokenize": "--out", "render": "--out-dir"}[stage]

    def args(out: Path) -> tuple[str, ...]:
        return (*inputs, flag, str(out), *(("--no-progress",) if stage != "render" else ()))

    done = _run(stage, *args(tmp_path / "a"))
    assert done.returncode == 0, done.stderr
    out = tmp_path / "b"
    process = _cli(stage, *args(out))
    at_kill = _kill_after_lines(out / "manifest.jsonl", 1, process)
    assert at_kill < count  # killed mid-run
    again = _run(stage, *args(out))
    assert again.returncode == 0, again.stderr
    assert f"{at_kill} up to date" in again.stdout
    skip = ("manifest.jsonl", f"{stage}.config.json")
    assert _tree(out, skip) == _tree(tmp_path / "a", skip)


def test_sigkill_of_prepare_with_two_workers_leaves_no_process(tmp_path: Path) -> None:
    raw = _raw_audio(tmp_path / "raw", 8, seconds=20.0)
    clips = tmp_path / "clips"
    process = _cli(
        "prepare", "--raw-dir", str(raw), "--clips-dir", str(clips), "--workers", "2", *PREPARE
    )
    deadline = time.monotonic() + 60
    workers: set[int] = set()
    while time.monotonic() < deadline and len(workers) < 2 and process.poll() is None:
        workers = _children(process.pid)
        time.sleep(0.02)
    assert len(workers) >= 2, "the workers never started"
    process.send_signal(signal.SIGKILL)  # the parent only: its workers must follow it
    process.wait()
    deadline = time.monotonic() + 10
    while _alive(workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive(workers) == set()


def test_a_second_run_of_a_stage_on_the_same_folder_is_refused(tmp_path: Path) -> None:
    """While one run holds the folder (here: this process, through the same lock a running
    `midimix prepare` takes), a second command line is refused in one line and writes
    nothing; once the first lets go, the same command runs."""
    raw = _raw_audio(tmp_path / "raw", 6, seconds=20.0)
    clips = tmp_path / "clips"
    with folder_lock(clips / "manifest.jsonl", "prepare"):
        second = _run("prepare", "--raw-dir", str(raw), "--clips-dir", str(clips), *PREPARE)
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in second.stderr
    assert f"another midimix prepare run (pid {os.getpid()}) is writing to {clips}" in lines[0]
    assert not list(clips.rglob("*.wav"))
    third = _run("prepare", "--raw-dir", str(raw), "--clips-dir", str(clips), *PREPARE)
    assert third.returncode == 0 and "6 done" in third.stdout


@pytest.fixture
def small_disk(tmpfs: Callable[[str], Path]) -> Path:
    return tmpfs("96k")


def _midi_set(folder: Path, count: int) -> Path:
    genre = folder / "g"
    genre.mkdir(parents=True)
    seed = fuzz_cli.midi_seed()
    for i in range(count):
        data = seed
        for pitch in (60, 64, 67, 72, 62):
            for status in (0x90, 0x80):
                data = data.replace(bytes([status, pitch]), bytes([status, pitch - 12 + i % 24]))
        (genre / f"p{i:03d}.mid").write_bytes(data)
    return folder


def test_full_disk_during_tokenize_leaves_complete_files_and_a_rerun_finishes_identical(
    tmp_path: Path, small_disk: Path
) -> None:
    midi = _midi_set(tmp_path / "midi", 40)
    args = ("--no-progress", "--transpose-semitones", "2")
    reference = _run("tokenize", f"g={midi / 'g'}", "--out", str(tmp_path / "ref"), *args)
    assert reference.returncode == 0, reference.stderr
    out = small_disk / "tokens"
    full = _run("tokenize", f"g={midi / 'g'}", "--out", str(out), *args)
    assert full.returncode != 0  # 96 kB cannot hold the records of 40 pieces and 5 variants
    assert "Traceback" not in full.stderr
    assert "the disk is full writing to" in full.stderr or "failed" in full.stdout
    for path in out.rglob("*"):  # every file is absent or complete
        if path.name.startswith(".") or not path.is_file():
            continue
        text = path.read_text()
        if path.suffix == ".json":
            json.loads(text)
        else:
            assert text == "" or text.endswith("\n"), path
            for line in text.splitlines():
                json.loads(line)
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)
    again = _run("tokenize", f"g={midi / 'g'}", "--out", str(out), *args)
    assert again.returncode == 0, again.stderr
    skip = ("manifest.jsonl",)
    assert _tree(out, skip) == _tree(tmp_path / "ref", skip)


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _tiny_training(tmp_path: Path, steps: int) -> tuple[Path, tuple[str, ...]]:
    midi = _midi_set(tmp_path / "midi", 12)
    tokens = tmp_path / "tokens"
    made = _run("tokenize", f"g={midi / 'g'}", "--out", str(tokens), "--no-progress")
    assert made.returncode == 0, made.stderr
    args = ("--tokens-dir", str(tokens), "--preset", "tiny", "--max-steps", str(steps),
            "--eval-every", "1", "--log-every", "1", "--batch-size", "2", "--threads", "1",
            "--no-progress")  # fmt: skip
    reference = _run("train", "--run-dir", str(tmp_path / "ref"), *args)
    assert reference.returncode == 0, reference.stderr
    return tmp_path / "ref", args


def _log_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "log.csv") as handle:  # speed differs from run to run; the rest may not
        return [{k: v for k, v in row.items() if k != "tokens_per_second"}
                for row in csv.DictReader(handle)]  # fmt: skip


def _same_training(run_dir: Path, reference: Path) -> None:
    for name in ("best/model.safetensors", "last/model.safetensors", "last/optimizer.pt"):
        assert (run_dir / name).read_bytes() == (reference / name).read_bytes(), name
    assert _log_rows(run_dir) == _log_rows(reference)  # no step twice or lost
    assert sorted(p.name for p in run_dir.iterdir()) == [
        ".log.csv.lock",
        "best",
        "last",
        "log.csv",
        "train.config.json",
    ]


def test_full_disk_during_training_keeps_the_last_state_and_resume_matches(
    tmp_path: Path, tmpfs: Callable[[str], Path]
) -> None:
    """safetensors and torch word a full disk their own way; training stops in one line with
    the previous checkpoint and resume state whole, and after space is freed, --resume ends
    with exactly the weights, optimizer and log of an uninterrupted run."""
    reference, args = _tiny_training(tmp_path, 4)
    best, last = _folder_bytes(reference / "best"), _folder_bytes(reference / "last")
    # Room for the first best/ and last/ and a second best/, not for a second last/.
    disk = tmpfs(f"{(2 * best + last) // 1024 + 64}k")
    run_dir = disk / "run"
    full = _run("train", "--run-dir", str(run_dir), *args)
    assert full.returncode == 2, full.stderr
    assert full.stderr.strip().splitlines() == [
        f"error: could not save the resume state to {run_dir / 'last'}: the disk is full; the "
        "previous state there is unchanged; free some space and run again with --resume"
    ]
    assert json.loads((run_dir / "last" / "state.json").read_text())["state"]["step"] == 1
    subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
    again = _run("train", "--run-dir", str(run_dir), *args, "--resume")
    assert again.returncode == 0, again.stderr
    _same_training(run_dir, reference)  # and no half-written folder left beside them


def test_sigkill_during_training_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    """Killed at seeded random moments of a run that saves every step (so some kills land in
    a save), training resumes each time and ends with the uninterrupted run's weights,
    optimizer and log, and no half-written folder beside them."""
    reference, args = _tiny_training(tmp_path, 12)
    run_dir = tmp_path / "run"
    delays = np.random.default_rng(3).uniform(2.5, 5.0, size=4)
    kills = 0
    for delay in delays:
        resume = ("--resume",) if (run_dir / "last").exists() else ()
        process = _cli("train", "--run-dir", str(run_dir), *args, *resume)
        try:
            process.wait(timeout=float(delay))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            kills += 1
        process.communicate()
    assert kills >= 2  # the run was really cut, more than once
    again = _run("train", "--run-dir", str(run_dir), *args, "--resume")
    assert again.returncode == 0, again.stderr
    _same_training(run_dir, reference)


def test_a_kill_between_the_two_renames_of_a_save_is_undone(tmp_path: Path) -> None:
    """The one moment a kill leaves no last/: the old one moved aside, the new one not yet in
    place. The next run puts the old one back, drops the copies, and resumes exactly."""
    reference, args = _tiny_training(tmp_path, 6)
    run_dir = tmp_path / "run"
    stopped = _run("train", "--run-dir", str(run_dir), *args, "--stop-after-steps", "3")
    assert stopped.returncode == 0, stopped.stderr
    (run_dir / "last").rename(run_dir / ".last.old99999")  # what the kill left
    (run_dir / ".last.tmp99999").mkdir()
    (run_dir / ".last.tmp99999" / "optimizer.pt").write_bytes(b"half")
    (run_dir / ".best.tmp99998").mkdir()
    again = _run("train", "--run-dir", str(run_dir), *args, "--resume")
    assert again.returncode == 0, again.stderr
    _same_training(run_dir, reference)


def test_full_disk_during_transcribe_fails_items_in_one_line_and_a_rerun_matches(
    tmp_path: Path, tmpfs: Callable[[str], Path]
) -> None:
    """basic-pitch's notes reach a full disk: the items that could not be written are
    recorded as such (no traceback, no empty MIDI under its final name), the rest of the
    run goes on, and after space is freed a re-run writes exactly the uninterrupted MIDI."""
    clips = tmp_path / "clips" / "g"
    clips.mkdir(parents=True)
    t = np.arange(22050 * 5) / 22050
    for i in range(4):  # four notes a clip, each piece a step higher
        tone = sum((t >= k) * (t < k + 0.9) * np.sin(2 * np.pi * f * 2 ** (i / 12) * t)
                   for k, f in enumerate((261.6, 329.6, 392.0, 329.6)))  # fmt: skip
        sf.write(str(clips / f"c{i}.wav"), (0.2 * tone).astype(np.float32), 22050)
    args = ("--clips-dir", str(clips.parent), "--no-progress", "--threads", "1")
    reference = _run("transcribe", *args, "--midi-dir", str(tmp_path / "ref"))
    assert reference.returncode == 0, reference.stderr
    assert len(list((tmp_path / "ref" / "g").glob("*.mid"))) == 4
    disk = tmpfs("16k")  # the manifest, the config and one MIDI file fill it
    full = _run("transcribe", *args, "--midi-dir", str(disk / "midi"))
    assert full.returncode == 1 and "Traceback" not in full.stderr
    failed = [line for line in full.stdout.splitlines() if line.strip().startswith("failed")]
    assert failed and all("the disk is full writing" in line for line in failed), full.stdout
    for path in (disk / "midi" / "g").glob("*.mid"):  # whatever is there is whole
        assert path.read_bytes() == (tmp_path / "ref" / "g" / path.name).read_bytes()
    subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
    again = _run("transcribe", *args, "--midi-dir", str(disk / "midi"))
    assert again.returncode == 0, again.stderr
    assert _tree(disk / "midi" / "g") == _tree(tmp_path / "ref" / "g")


def test_a_second_training_on_the_same_run_folder_is_refused(tmp_path: Path) -> None:
    """The lock is taken before any data is read: a second `midimix train` on a run folder in
    use stops in one line and touches nothing there."""
    run_dir = tmp_path / "run"
    with folder_lock(run_dir / "log.csv", "train"):
        second = _run("train", "--tokens-dir", str(tmp_path / "no-tokens"), "--run-dir",
                      str(run_dir), "--max-steps", "1")  # fmt: skip
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"another midimix train run (pid {os.getpid()})" in lines[0]
    assert sorted(p.name for p in run_dir.iterdir()) == [".log.csv.lock"]


def test_a_run_saved_before_the_precision_option_resumes_in_fp32() -> None:
    from midimix.config import config_to_dict
    from midimix.errors import ConfigError
    from midimix.train_config import TrainConfig
    from midimix.train_state import check_resume

    old = config_to_dict(TrainConfig())
    old.pop("precision")  # what last/state.json held before the option
    saved = {"train_config": old, "data_sha256": {}, "world_size": 1}
    check_resume(saved, TrainConfig(precision="fp32"), {}, 1)
    with pytest.raises(ConfigError, match="precision: 'fp32' -> 'auto'"):
        check_resume(saved, TrainConfig(), {}, 1)


def _complete_audio(folder: Path) -> None:
    """Every finished audio file reads back whole; no 0-byte file sits under a final name."""
    for path in folder.rglob("*.wav"):
        if path.name.startswith("."):
            continue
        assert path.stat().st_size > 0, path
        data, _ = sf.read(path)
        assert len(data) > 0, path


@pytest.mark.parametrize("stage", ["collect", "prepare", "render"])
def test_full_disk_while_writing_audio_then_a_rerun_matches(
    tmp_path: Path, tmpfs: Callable[[str], Path], stage: str
) -> None:
    """A stage that writes audio onto a disk that fills up stops without a traceback, leaves
    every file absent or whole, and a re-run after space is freed gives what an uninterrupted
    run gives."""
    if stage == "collect":
        source = _raw_audio(tmp_path / "in", 6, seconds=6.0) / "g"

        def command(out: Path) -> list[str]:
            return ["collect", "--genre", f"g={source}", "--raw-dir", str(out), "--no-progress"]
    elif stage == "prepare":
        raw = _raw_audio(tmp_path / "raw", 6, seconds=6.0)

        def command(out: Path) -> list[str]:
            return ["prepare", "--raw-dir", str(raw), "--clips-dir", str(out), *PREPARE]
    else:
        midi = _midi_set(tmp_path / "midi", 6) / "g"
        inputs = sorted(str(p) for p in midi.glob("*.mid"))

        def command(out: Path) -> list[str]:
            return ["render", *inputs, "--out-dir", str(out), "--genre-mix", "lofi=1",
                    "--drums", "off"]  # fmt: skip

    reference = _run(*command(tmp_path / "ref"))
    assert reference.returncode == 0, reference.stderr
    disk = tmpfs("160k")  # room for a few files, not all
    out = disk / "out"
    full = _run(*command(out))
    assert full.returncode != 0
    assert "Traceback" not in full.stderr
    assert "disk is full" in full.stdout + full.stderr
    assert "unexpected" not in full.stdout
    _complete_audio(out)
    subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
    again = _run(*command(out))
    assert again.returncode == 0, again.stderr
    names = sorted(p.name for p in (tmp_path / "ref").rglob("*.wav"))
    assert sorted(p.name for p in out.rglob("*.wav") if not p.name.startswith(".")) == names
    for name in names:
        ref = next((tmp_path / "ref").rglob(name)).read_bytes()
        assert next(out.rglob(name)).read_bytes() == ref, name


def test_evaluate_on_a_full_disk_names_its_folder_and_a_rerun_writes_the_report(
    tmp_path: Path, tmpfs: Callable[[str], Path]
) -> None:
    from PIL import Image

    low, high = _midi_set(tmp_path / "low", 8) / "g", _midi_set(tmp_path / "high", 12) / "g"
    args = ("--generated", f"set={low}", "--reference", f"a={low}", "--reference", f"b={high}",
            "--cv-folds", "2")  # fmt: skip
    reference = _run("evaluate", *args, "--out-dir", str(tmp_path / "ref"))
    assert reference.returncode == 0, reference.stderr
    disk = tmpfs("40k")  # the classifier and one plot fit, not the rest
    full = _run("evaluate", *args, "--out-dir", str(disk / "report"))
    assert full.returncode == 2
    assert full.stderr.strip().splitlines() == [
        f"error: the disk is full writing {disk / 'report'}; free some space and run again "
        "(finished items are kept)"
    ]
    for path in (disk / "report").iterdir():  # whatever is there is whole
        if path.suffix == ".png":
            Image.open(path).load()
        elif path.suffix == ".json":
            json.loads(path.read_text())
    subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
    again = _run("evaluate", *args, "--out-dir", str(disk / "report"))
    assert again.returncode == 0, again.stderr
    ours = json.loads((disk / "report" / "report.json").read_text())
    theirs = json.loads((tmp_path / "ref" / "report.json").read_text())
    assert ours["generated"] == theirs["generated"] and ours["plots"] == theirs["plots"]


def test_generate_on_a_full_disk_stops_in_one_line(tmpfs: Callable[[str], Path]) -> None:
    out = tmpfs("4k") / "out"  # room for the MIDI file, not for its audio
    run = _run("generate", "--genre", "lofi", "--bars", "2", "--no-progress", "--out-dir", str(out))
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the disk is full writing")
    for path in out.iterdir():  # no empty or half-written file under a final name
        assert path.name.startswith(".") or path.stat().st_size > 0, path
    assert not list(out.glob("*.wav"))
