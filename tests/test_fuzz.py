"""Bad input: a bounded run of the CLI fuzz (benchmarks/fuzz_cli.py) with a fixed seed, and the
hostile inputs it and users found, each checked where it used to go wrong."""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from midimix.errors import InputError, MidimixError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import fuzz_cli  # noqa: E402  (benchmarks/ is not a package)


def test_bounded_cli_fuzz_has_no_crash_hang_or_unrecorded_input(tmp_path: Path) -> None:
    """About 300 mutated files through collect, prepare, tokenize and evaluate (the fast
    stages; render, transcribe and prompts run in the full fuzz)."""
    lines: list[str] = []
    results = fuzz_cli.run_fuzz(
        300, 7, fuzz_cli.FAST_STAGES, tmp_path, timeout_s=60, log=lines.append
    )
    assert sum(s.cases for s in results.values()) >= 290
    problems = [line for line in lines if line.startswith("  ")]
    assert problems == [], "\n".join(problems)
    for stats in results.values():
        assert not (stats.crashes or stats.hangs or stats.unexpected or stats.unrecorded)
        assert stats.peak_kib < 2 << 20  # 2 GiB
    # the mutations hit both sides: some inputs pass, many are refused with a reason
    assert results["prepare"].statuses["ok"] > 0 and results["prepare"].statuses["failed"] > 0


# ---------------------------------------------------------------------------- audio


def _wav(path: Path, samples: np.ndarray, rate_hz: int = 22050, subtype: str = "FLOAT") -> Path:
    sf.write(str(path), samples, rate_hz, subtype=subtype, format="WAV")
    return path


def _tone(seconds: float, rate_hz: int = 22050) -> np.ndarray:
    t = np.arange(round(seconds * rate_hz)) / rate_hz
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def _prepare(raw: Path, clips: Path) -> dict[str, dict]:
    from midimix.manifest import Manifest
    from midimix.prepare import PrepareConfig, prepare

    config = PrepareConfig(clip_seconds=1.0, min_remainder_seconds=0.2, progress=False)
    prepare(raw, clips, config)
    return Manifest(clips / "manifest.jsonl").records()


@pytest.mark.parametrize(
    ("channels", "reason"),
    [(1000, "claims 1000 channels (at most 256 are read)"), (32767, "Too many channels")],
)
def test_wav_header_claiming_absurd_channels_is_refused_before_reading(
    tmp_path: Path, channels: int, reason: str
) -> None:
    """A block of 20 s at 32767 channels would be 115 GB: the count is checked first."""
    raw = tmp_path / "raw" / "g"
    raw.mkdir(parents=True)
    path = _wav(raw / "wide.wav", _tone(1.0), subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[22:24] = struct.pack("<H", channels)
    path.write_bytes(bytes(data))
    record = _prepare(tmp_path / "raw", tmp_path / "clips")["wide"]
    assert record["status"] == "failed"
    assert reason in record["reason"]


@pytest.mark.parametrize(
    ("rate_hz", "reason"),
    [(0, "SF_INFO struct incomplete"), (7, "sample rate of 7 Hz"), (2**31 - 1, "2147483647 Hz")],
)
def test_wav_with_absurd_sample_rate_is_refused(tmp_path: Path, rate_hz: int, reason: str) -> None:
    from midimix.audio import AudioError, probe

    path = _wav(tmp_path / "rate.wav", _tone(0.5), subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[24:28] = struct.pack("<I", rate_hz)
    path.write_bytes(bytes(data))
    with pytest.raises(AudioError, match=reason):
        probe(path)


def test_blocks_of_many_channels_stay_bounded(tmp_path: Path) -> None:
    from midimix.audio import MAX_BLOCK_BYTES, iter_blocks, iter_mono, probe

    path = tmp_path / "wide.wav"
    sf.write(str(path), np.zeros((22050, 200), dtype=np.float32), 22050, subtype="PCM_16")
    info = probe(path)
    sizes = [len(b) for b in iter_mono(path, info, 22050, block_seconds=3600)]
    assert sum(sizes) == 22050 and max(sizes) * 200 * 4 <= MAX_BLOCK_BYTES
    assert sum(len(b) for b in iter_blocks(path, info, 1000)) == 22050


def test_nan_stretch_is_repaired_and_counted_not_taken_for_silence(tmp_path: Path) -> None:
    """0.1 s of NaN used to make the whole clip NaN, whose peak read as silence."""
    raw = tmp_path / "raw" / "g"
    raw.mkdir(parents=True)
    samples = _tone(1.0)
    samples[1000:3205] = np.nan
    _wav(raw / "nan.wav", samples)
    record = _prepare(tmp_path / "raw", tmp_path / "clips")["nan"]
    assert record["status"] == "ok"
    assert record["nonfinite_samples"] == 2205
    assert any("2205 samples were NaN or infinite" in note for note in record["notes"])
    clip, _ = sf.read(record["clips"][0]["path"])
    assert np.all(np.isfinite(clip))
    assert np.all(clip[1000:3205] == 0) and np.max(np.abs(clip[:1000])) > 0.4


def test_all_nan_file_is_empty_with_the_count_in_its_reason(tmp_path: Path) -> None:
    raw = tmp_path / "raw" / "g"
    raw.mkdir(parents=True)
    _wav(raw / "void.wav", np.full(22050, np.nan, dtype=np.float32))
    record = _prepare(tmp_path / "raw", tmp_path / "clips")["void"]
    assert record["status"] == "empty"
    assert "22050 NaN or infinite samples" in record["reason"]


def test_truncated_ogg_is_refused_not_read_as_a_shorter_file(tmp_path: Path) -> None:
    from midimix.audio import AudioError, probe

    whole = tmp_path / "whole.ogg"
    sf.write(str(whole), _tone(3.0), 22050, format="OGG", subtype="VORBIS")
    probe(whole)  # a complete file passes
    cut = tmp_path / "cut.ogg"
    data = whole.read_bytes()
    for keep in (len(data) // 2, len(data) - 10):
        cut.write_bytes(data[:keep])
        with pytest.raises(AudioError, match="truncated Ogg"):
            probe(cut)


@pytest.mark.parametrize("stage", ["collect", "prepare"])
def test_link_loops_folders_and_pipes_named_like_audio_are_recorded(
    tmp_path: Path, stage: str
) -> None:
    from midimix.manifest import Manifest

    genre = tmp_path / "in" / "g"
    genre.mkdir(parents=True)
    _wav(genre / "good.wav", _tone(1.0), subtype="PCM_16")
    (genre / "loop.wav").symlink_to("loop.wav")
    (genre / "broken.wav").symlink_to("nowhere.wav")
    (genre / "folder.wav").mkdir()
    os.mkfifo(genre / "pipe.wav")
    out = tmp_path / "out"
    if stage == "collect":
        from midimix.collect import CollectConfig, collect

        summary = collect({"g": [genre]}, out, CollectConfig(progress=False))
        records = Manifest(out / "manifest.jsonl").records().values()
    else:
        summary = None
        records = _prepare(tmp_path / "in", out).values()
    by_source = {Path(r["source"]).name: r for r in records}
    assert by_source["good.wav"]["status"] == "ok"
    reasons = {
        "loop.wav": "loops back on itself",
        "broken.wav": "broken symbolic link",
        "folder.wav": "a folder, not a file",
        "pipe.wav": "not a regular file",
    }
    for name, reason in reasons.items():
        assert by_source[name]["status"] == "failed", name
        assert reason in by_source[name]["reason"], by_source[name]["reason"]
    if summary is not None:
        assert summary.failed == 4 and summary.done == 1


# ---------------------------------------------------------------------------- MIDI


def _midi(path: Path, pitches: list[int], tpq: int = 96) -> Path:
    data = fuzz_cli.midi_seed()
    for old, new in zip((60, 64, 67, 72, 62), pitches, strict=False):
        for status in (0x90, 0x80):
            data = data.replace(bytes([status, old]), bytes([status, new]))
    data = data[:12] + struct.pack(">H", tpq) + data[14:]
    path.write_bytes(data)
    return path


def test_notes_all_outside_the_pitch_range_tokenize_as_empty_with_a_reason(
    tmp_path: Path,
) -> None:
    from midimix.manifest import Manifest
    from midimix.tokenize import TokenizeConfig, tokenize

    folder = tmp_path / "midi" / "g"
    folder.mkdir(parents=True)
    _midi(folder / "low.mid", [5, 8, 12, 17, 10])
    _midi(folder / "fine.mid", [60, 64, 67, 72, 62])
    result = tokenize(
        {"g": folder},
        tmp_path / "tokens",
        TokenizeConfig(progress=False, validation_fraction=0.0),
    )
    records = Manifest(tmp_path / "tokens" / "manifest.jsonl").records()
    assert records["g/low"]["status"] == "empty"
    assert "lie outside the tokenizer's range 21-108" in records["g/low"]["reason"]
    assert "(5-17)" in records["g/low"]["reason"]
    assert records["g/fine"]["status"] == "ok"
    assert result.summary.empty == 1


def test_tokenize_where_no_file_has_notes_finishes_with_empty_sequences(tmp_path: Path) -> None:
    """Used to end in 'nothing was written (is the disk full?)': an empty sequences file is
    a valid result, not a failed write."""
    from midimix.tokenize import TokenizeConfig, tokenize

    folder = tmp_path / "midi" / "g"
    folder.mkdir(parents=True)
    (folder / "broken.mid").write_bytes(b"MThd" + bytes(10))
    result = tokenize({"g": folder}, tmp_path / "tokens", TokenizeConfig(progress=False))
    assert result.summary.failed == 1 and result.num_sequences == 0
    assert (tmp_path / "tokens" / "sequences.jsonl").read_bytes() == b""


def test_features_of_a_score_with_time_signature_denominator_0_is_an_item_error() -> None:
    from symusic import Note, Score, TimeSignature, Track

    from midimix.errors import ItemError
    from midimix.features import extract_features

    score: Any = Score(96)  # symusic's stubs know no attributes
    score.time_signatures.append(TimeSignature(0, 4, 0))
    track: Any = Track("piano", 0, False)
    track.notes.append(Note(0, 96, 60, 90))
    score.tracks.append(track)
    with pytest.raises(ItemError, match="time signature 4/0"):
        extract_features(score)


def test_prompt_with_no_notes_in_range_is_refused_in_one_line(tmp_path: Path) -> None:
    from midimix.generate.prompt import prompt_ids
    from midimix.tokenizer import GenreTokenizer, TokenizeConfig

    tokenizer = GenreTokenizer.build(["a", "b"], TokenizeConfig())
    low = _midi(tmp_path / "low.mid", [1, 2, 3, 4, 5])
    with pytest.raises(InputError, match="none of its 8 notes lies in the model's pitch range"):
        prompt_ids(low, tokenizer, tmp_path)
    silent = tmp_path / "silent.mid"
    data = fuzz_cli.midi_seed()
    header_and_meta = data[: 14 + 8 + struct.unpack(">I", data[18:22])[0]]
    empty_track = b"MTrk" + struct.pack(">I", 4) + b"\x00\xff\x2f\x00"
    silent.write_bytes(header_and_meta + empty_track)
    with pytest.raises(InputError, match="has no notes to continue"):
        prompt_ids(silent, tokenizer, tmp_path)
    assert len(prompt_ids(_midi(tmp_path / "ok.mid", [60, 62, 64]), tokenizer, tmp_path)) > 8


# ---------------------------------------------------------------------------- model folders


def _copy_default_model(tmp_path: Path) -> Path:
    import shutil

    import midimix.model

    source = Path(midimix.model.__file__).parent / "default_model"
    folder = tmp_path / "model"
    shutil.copytree(source, folder)
    return folder


def test_genre_token_with_a_path_in_a_model_tokenizer_is_refused(tmp_path: Path) -> None:
    from midimix.model import load_checkpoint

    folder = _copy_default_model(tmp_path)
    text = (folder / "tokenizer.json").read_text()
    assert "Genre_lofi" in text
    (folder / "tokenizer.json").write_text(text.replace("Genre_lofi", "Genre_/some/dir/x"))
    with pytest.raises(MidimixError, match="genre token that is refused.*'/some/dir/x'"):
        load_checkpoint(folder)


def test_model_config_with_absurd_n_positions_is_refused_before_allocation(
    tmp_path: Path,
) -> None:
    from midimix.model import load_checkpoint

    folder = _copy_default_model(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["n_positions"] = 200_000_000
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(MidimixError, match="n_positions is 200000000; expected a whole number"):
        load_checkpoint(folder)
    config["n_positions"] = 60_000  # within the limit, but far beyond the weights file
    config["n_embd"], config["n_head"] = 4096, 4
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(MidimixError, match="config and weights do not belong together"):
        load_checkpoint(folder)


def test_bad_optimizer_state_on_resume_is_one_clear_error(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from midimix.train_state import restore

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    last = tmp_path / "last"
    last.mkdir()
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, last / "model.safetensors"
    )
    torch.save(scheduler.state_dict(), last / "scheduler.pt")
    torch.save([{"cpu": torch.get_rng_state()}], last / "rng.pt")
    for garbage in (b"not a torch file at all", b"\x80\x04K\x01.", b""):
        (last / "optimizer.pt").write_bytes(garbage)
        with pytest.raises(MidimixError, match="cannot resume: the state in .* is incomplete"):
            restore(last, model, optimizer, scheduler, "cpu", 0)


def test_a_note_at_an_absurd_tick_is_refused_not_tokenized_for_minutes(tmp_path: Path) -> None:
    """One note ending at tick 2**28 gave 1.4 million Bar tokens per variant (a minute)."""
    from midimix.manifest import Manifest
    from midimix.tokenize import TokenizeConfig, tokenize

    folder = tmp_path / "midi" / "g"
    folder.mkdir(parents=True)
    data = fuzz_cli.midi_seed().replace(
        b"\x60\x80\x48\x00", fuzz_cli._vlq(0x0FFFFFFF) + b"\x80H\x00"
    )
    (folder / "far.mid").write_bytes(fuzz_cli._fix_track_lengths(data))
    _midi(folder / "fine.mid", [60, 64, 67, 72, 62])
    tokenize({"g": folder}, tmp_path / "tokens", TokenizeConfig(progress=False))
    record = Manifest(tmp_path / "tokens" / "manifest.jsonl").records()["g/far"]
    assert record["status"] == "failed"
    assert "beats long" in record["reason"] and record["seconds"] < 5
