"""prepare: clip counts, exact sample counts and padding, resampling, resume, bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from audio_fixtures import encode, peak_frequency_hz, tone, write_tone

from midimix.errors import ConfigError
from midimix.manifest import Manifest
from midimix.prepare import PrepareConfig, cut_clips, main, prepare

RATE = 22050
CLIP = 30 * RATE  # 661,500 samples


def clip_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.wav"))


def test_cut_clips_on_uneven_blocks() -> None:
    blocks = [np.ones(n, dtype=np.float32) for n in (3, 7, 1, 14)]  # 25 samples
    clips = list(cut_clips(iter(blocks), clip_samples=10, min_remainder_samples=5))
    assert [(i, len(c), pad) for i, c, pad in clips] == [(0, 10, 0), (1, 10, 0), (2, 10, 5)]
    assert clips[2][1][:5].tolist() == [1.0] * 5 and clips[2][1][5:].tolist() == [0.0] * 5
    short = list(cut_clips(iter(blocks), clip_samples=10, min_remainder_samples=6))
    assert len(short) == 2  # the 5-sample remainder is under the minimum


@pytest.fixture(scope="module")
def lengths_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("raw")
    for name, seconds in {"t0_5": 0.5, "t30": 30, "t31": 31, "t95": 95}.items():
        write_tone(raw / "lofi" / f"{name}.wav", seconds, RATE)
    return raw


@pytest.mark.parametrize(
    ("min_remainder_seconds", "expected"),
    [
        # source seconds -> padded samples of each clip, in order
        (
            0.0,
            {
                "t0_5": [CLIP - RATE // 2],
                "t30": [0],
                "t31": [0, CLIP - RATE],
                "t95": [0, 0, 0, CLIP - 5 * RATE],
            },
        ),
        (5.0, {"t30": [0], "t31": [0], "t95": [0, 0, 0, CLIP - 5 * RATE]}),
    ],
)
def test_clip_counts_and_exact_padding(
    lengths_dir: Path, tmp_path: Path, min_remainder_seconds: float, expected: dict[str, list[int]]
) -> None:
    config = PrepareConfig(min_remainder_seconds=min_remainder_seconds, progress=False)
    summary = prepare(lengths_dir, tmp_path, config)
    records = {r["id"]: r for r in summary.records}
    got = {
        sid: [c["padded_samples"] for c in r["clips"]] for sid, r in records.items() if r["clips"]
    }
    assert got == expected
    for sid, pads in expected.items():
        for index, padded in enumerate(pads):
            path = tmp_path / "lofi" / f"{sid}_{index:04d}.wav"
            samples, rate = sf.read(str(path), dtype="int16")
            assert rate == RATE and len(samples) == CLIP
            assert records[sid]["clips"][index]["start_seconds"] == 30.0 * index
            if padded:
                assert not samples[CLIP - padded :].any()  # exact zeros
                assert np.abs(samples[CLIP - padded - RATE // 10 : CLIP - padded]).max() > 10000
    if min_remainder_seconds:
        assert records["t0_5"]["status"] == "empty"
        assert "shorter than min_remainder_seconds=5" in records["t0_5"]["reason"]
    assert len(clip_files(tmp_path)) == sum(map(len, expected.values()))


@pytest.mark.parametrize(("rate_hz", "channels"), [(11025, 1), (44100, 2), (48000, 1)])
def test_resampling_keeps_440_hz(tmp_path: Path, rate_hz: int, channels: int) -> None:
    write_tone(tmp_path / "raw" / "lofi" / "tone.wav", 4.0, rate_hz, channels=channels)
    summary = prepare(
        tmp_path / "raw", tmp_path / "clips", PrepareConfig(clip_seconds=4, progress=False)
    )
    (record,) = summary.records
    assert record["duration_seconds"] == 4.0 and record["clips"][0]["padded_samples"] == 0
    samples, rate = sf.read(str(tmp_path / "clips" / "lofi" / "tone_0000.wav"))
    assert rate == RATE and len(samples) == 4 * RATE
    assert peak_frequency_hz(samples, RATE) == pytest.approx(440.0, abs=0.5)
    assert np.abs(samples[RATE:-RATE]).max() == pytest.approx(0.5, abs=0.01)  # level kept


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file's inode and time, but the manifest's lock (it records each run's pid)."""
    return {
        str(p): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file() and p.name != ".manifest.jsonl.lock"
    }


def test_rerun_writes_nothing(lengths_dir: Path, tmp_path: Path) -> None:
    config = PrepareConfig(progress=False)
    first = prepare(lengths_dir, tmp_path, config)
    assert first.done == 4 and first.failed == 0
    before = snapshot(tmp_path)
    again = prepare(lengths_dir, tmp_path, config)
    assert (again.done, again.skipped, again.records) == (0, 4, [])
    assert snapshot(tmp_path) == before
    changed = prepare(
        lengths_dir, tmp_path, PrepareConfig(min_remainder_seconds=0.0, progress=False)
    )
    assert changed.done == 4  # a changed option redoes every source ...
    assert sum(r["clips_written"] for r in changed.records) == 2  # ... writing only new clips
    assert len(clip_files(tmp_path)) == 8
    back = prepare(lengths_dir, tmp_path, config)
    assert sum(r["clips_written"] for r in back.records) == 0
    assert len(clip_files(tmp_path)) == 6  # the remainders kept by the other option are gone


def test_sigkill_then_resume_gives_every_clip_once(tmp_path: Path) -> None:
    raw, clips = tmp_path / "raw", tmp_path / "clips"
    sources = {f"s{k}": tone(40.0, RATE, 220.0 * (k + 1)) for k in range(3)}
    (raw / "lofi").mkdir(parents=True)
    for name, samples in sources.items():
        sf.write(str(raw / "lofi" / f"{name}.wav"), samples, RATE)
    command = [sys.executable, "-m", "midimix.prepare", "--raw-dir", str(raw), "--clips-dir",
               str(clips), "--clip-seconds", "1", "--no-progress"]  # fmt: skip
    process = subprocess.Popen(command, cwd=Path(__file__).parents[1], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not any((clips / "lofi").glob("s*.wav")) and time.monotonic() < deadline:
        time.sleep(0.001)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    survivors = snapshot(clips / "lofi")
    finished = [p for p in survivors if not Path(p).name.startswith(".")]
    assert 1 <= len(finished) < 120, "the kill should land in the middle of the job"

    summary = prepare(raw, clips, PrepareConfig(clip_seconds=1, progress=False))
    assert summary.failed == 0 and summary.done + summary.skipped == 3
    after = snapshot(clips / "lofi")
    assert not [p for p in after if Path(p).name.startswith(".")]  # no temporaries left
    assert len(after) == 120
    assert all(after[p] == survivors[p] for p in finished)  # finished clips not written again
    written = sum(r["clips_written"] for r in summary.records)
    assert written == 120 - len(finished)
    for name in sources:
        source, _ = sf.read(str(raw / "lofi" / f"{name}.wav"), dtype="int16")
        expected = source.reshape(40, RATE)  # a 16-bit source at 22,050 Hz passes unchanged
        for index in range(40):
            got, _ = sf.read(str(clips / "lofi" / f"{name}_{index:04d}.wav"), dtype="int16")
            assert np.array_equal(got, expected[index])
    records = Manifest(clips / "manifest.jsonl").records()
    assert sorted(len(records[name]["clips"]) for name in sources) == [40, 40, 40]


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A genre folder holding each kind of bad or unusual input."""
    src = tmp_path_factory.mktemp("src")
    genre = tmp_path_factory.mktemp("bad") / "lofi"
    genre.mkdir()
    (genre / "not_audio.wav").write_text("this is a text file, not audio\n" * 50)
    (genre / "empty.flac").write_bytes(b"")
    sf.write(str(genre / "zero_length.wav"), np.zeros((0, 2), dtype=np.float32), 44100)
    whole = write_tone(src / "whole.wav", 6.0, 44100, channels=2).read_bytes()
    (genre / "truncated.wav").write_bytes(whole[: len(whole) // 2])
    flac = write_tone(src / "whole.flac", 6.0, 44100, channels=2).read_bytes()
    (genre / "cut.flac").write_bytes(flac[: len(flac) // 2])
    mp3 = encode(src / "whole.wav", src / "whole.mp3").read_bytes()
    noise = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    (genre / "corrupt.mp3").write_bytes(mp3[:3000] + noise + mp3[7000:])
    write_tone(genre / "silence.wav", 6.0, 22050, amplitude=0.0)
    write_tone(genre / "rate_8k.wav", 6.0, 8000)
    write_tone(genre / "rate_96k.flac", 6.0, 96000, subtype="PCM_24")
    write_tone(genre / "bits_8.wav", 6.0, 22050, subtype="PCM_U8")
    write_tone(genre / "surround.wav", 6.0, 48000, channels=6)
    write_tone(genre / "Für Elise — 夜.wav", 6.0, 22050)
    encode(src / "whole.wav", genre / "compressed.m4a")
    return genre


FAILING = {
    "not_audio.wav": "not an audio file that libsndfile or ffmpeg can read",
    "empty.flac": "empty file (0 bytes)",
    "zero_length.wav": "the file holds no audio (0 samples)",
    "truncated.wav": "truncated WAV: the header promises 6.0 s but the file holds 3.0 s",
    "cut.flac": "corrupt or truncated: decoding failed",
    "corrupt.mp3": "corrupt or truncated",
}
GOOD = ("rate_8k.wav", "rate_96k.flac", "bits_8.wav", "surround.wav", "compressed.m4a",
        "Für Elise — 夜.wav")  # fmt: skip


def test_bad_inputs_get_reasons_and_the_run_goes_on(
    bad_inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--raw-dir", str(bad_inputs.parent), "--clips-dir", str(tmp_path),
            "--clip-seconds", "6", "--no-progress"]  # fmt: skip
    assert main(argv) == 1  # items failed
    printed = capsys.readouterr().out
    by_name = {
        Path(r["source"]).name: r for r in Manifest(tmp_path / "manifest.jsonl").records().values()
    }
    assert len(by_name) == len(FAILING) + len(GOOD) + 1
    for name, reason in FAILING.items():
        record = by_name[name]
        assert record["status"] == "failed" and record["reason"].startswith(reason), name
        assert f"failed {record['id']}: {record['reason']}" in printed
    silence = by_name["silence.wav"]
    assert silence["status"] == "empty" and silence["reason"].startswith("pure silence")
    assert f"empty silence: {silence['reason']}" in printed
    for name in GOOD:
        record = by_name[name]
        assert record["status"] == "ok" and len(record["clips"]) == 1, name
        samples, rate = sf.read(record["clips"][0]["path"])
        assert rate == RATE and len(samples) == 6 * RATE, name
        assert peak_frequency_hz(samples[: 5 * RATE], RATE) == pytest.approx(440.0, abs=0.5)
    assert by_name["surround.wav"]["notes"] == ["6 channels mixed down to mono"]
    assert by_name["rate_8k.wav"]["notes"][0].startswith("upsampled from 8000 Hz")
    assert re.fullmatch(r"Fur-Elise-[0-9a-f]{8}", by_name["Für Elise — 夜.wav"]["id"])
    written = sorted(p.name for p in tmp_path.rglob("*.wav"))
    assert len(written) == len(GOOD)  # nothing from a failed or silent source


def test_config_ranges() -> None:
    with pytest.raises(ConfigError, match=r"min_remainder_seconds must be in \[0, inf\], got -1"):
        PrepareConfig(min_remainder_seconds=-1)
    with pytest.raises(ConfigError, match="sample_rate_hz"):
        PrepareConfig(sample_rate_hz=10)


def test_settings_are_saved_and_given_back_with_config(tmp_path: Path) -> None:
    write_tone(tmp_path / "raw" / "lofi" / "a.wav", 3.0, RATE)
    clips, again = tmp_path / "clips", tmp_path / "again"
    first = ["--raw-dir", str(tmp_path / "raw"), "--clips-dir", str(clips), "--no-progress",
             "--clip-seconds", "2", "--silence-dbfs", "-50"]  # fmt: skip
    assert main(first) == 0
    assert len(clip_files(clips)) == 1  # the 1 s remainder is under the 5 s minimum
    saved = clips / "prepare.config.json"
    assert not (clips / "prepare.json").exists()
    settings = json.loads(saved.read_text())
    assert (settings["clip_seconds"], settings["silence_dbfs"]) == (2.0, -50.0)
    before = saved.stat().st_mtime_ns
    assert main(first) == 0
    assert saved.stat().st_mtime_ns == before  # unchanged settings: the file is not rewritten

    argv = ["--raw-dir", str(tmp_path / "raw"), "--clips-dir", str(again), "--no-progress",
            "--config", str(saved), "--min-remainder-seconds", "1"]  # fmt: skip
    assert main(argv) == 0
    assert len(clip_files(again)) == 2  # 2 s clips from the file, the remainder kept by the flag
    assert json.loads((again / "prepare.config.json").read_text()) == {
        **settings,
        "min_remainder_seconds": 1.0,
    }
