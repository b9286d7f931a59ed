"""The one-command pipeline: bad inputs stop it before any work; it runs end to end on MIDI
folders and on audio folders of mixed rates, channels and formats; killed with SIGKILL during
transcription and during training, a re-run finishes with the outputs of an uninterrupted run."""

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
from midi_fixtures import LINE_GENRES, scale_line
from symusic.core import ScoreTick

from midimix.manifest import sha256_file
from midimix.pipeline import PipelineConfig, PipelineResult, main, run

SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
CLIP_SAMPLES = 30 * 22050  # every clip: 30 s at 22,050 Hz, zero-padded
# One audio file per row: sample rate, channels, format; two recordings per genre.
AUDIO = {
    "lofi": [(44100, 2, "wav"), (16000, 1, "flac")],
    "classical": [(48000, 2, "flac"), (22050, 1, "wav")],
}
MAX_STEPS = 6
# Small enough for this shared 2-core machine; eval_every 2 writes last/ every two steps.
CLI_OPTIONS = [
    "--preset", "tiny", "--max-steps", str(MAX_STEPS), "--batch-size", "4", "--eval-every", "2",
    "--min-pieces", "2", "--bars", "2", "--no-plots", "--no-render", "--no-progress",
]  # fmt: skip


def tiny_config(data_dir: Path, **changes: object) -> PipelineConfig:
    options: dict[str, object] = dict(
        data_dir=data_dir, preset="tiny", max_steps=MAX_STEPS, batch_size=4, eval_every=2,
        min_pieces_per_genre=2, bars=2, plots=False, render=False, progress=False,
    )  # fmt: skip
    options.update(changes)
    return PipelineConfig(**options)  # type: ignore[arg-type]


def write_midi_folders(root: Path, per_genre: int) -> dict[str, Path]:
    for genre in LINE_GENRES:
        (root / genre).mkdir(parents=True)
        for i in range(per_genre):
            scale_line(genre, i, bars=3).dump_midi(root / genre / f"{genre}{i}.mid")
    return {g: root / g for g in LINE_GENRES}


@pytest.fixture(scope="module")
def midi_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_midi_folders(tmp_path_factory.mktemp("midi-in"), 4)


@pytest.fixture(scope="module")
def audio_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """MIDI made here, rendered with the fluidsynth CLI at each row's rate; mono rows are
    the channel mean."""
    root = tmp_path_factory.mktemp("audio-in")
    for genre, rows in AUDIO.items():
        (root / genre).mkdir()
        for i, (rate_hz, channels, fmt) in enumerate(rows):
            mid, wav = root / f"{genre}{i}.mid", root / f"{genre}{i}-fs.wav"
            scale_line(genre, i, bars=3).dump_midi(mid)
            command = ["fluidsynth", "-ni", "-q", "-F", str(wav), "-r", str(rate_hz)]
            subprocess.run([*command, SOUNDFONT, str(mid)], check=True, capture_output=True)
            samples, _ = sf.read(wav)
            sf.write(
                root / genre / f"take{i}.{fmt}",
                samples.mean(axis=1) if channels == 1 else samples,
                rate_hz,
            )
    return {g: root / g for g in AUDIO}


@pytest.fixture(scope="module")
def audio_run(
    audio_folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, PipelineResult]:
    """The uninterrupted run on audio that the killed run is compared with."""
    data = tmp_path_factory.mktemp("audio-run")
    return data, run(audio_folders, tiny_config(data))


# -- bad input: one line, non-zero exit, nothing done -----------------------------------------


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no-audio", "no audio"),
        ("missing", "does not exist"),
        ("one-genre", "mixing needs two genres, got 1"),
        ("twice", "genre 'lofi' is given twice"),
    ],
)
def test_bad_input_one_line_before_any_work(
    case: str,
    expected: str,
    midi_folders: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not music")
    lofi, classical = f"lofi={midi_folders['lofi']}", f"classical={midi_folders['classical']}"
    genres = {
        "no-audio": [lofi, f"classical={tmp_path / 'notes'}"],
        "missing": [lofi, f"classical={tmp_path / 'absent'}"],
        "one-genre": [lofi],
        "twice": [lofi, classical, f"lofi={midi_folders['classical']}"],
    }[case]
    data = tmp_path / "data"
    argv = [a for g in genres for a in ("--genre", g)]
    assert main([*argv, "--data-dir", str(data), *CLI_OPTIONS]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0]
    assert not data.exists()  # stopped before any stage wrote anything


def test_too_little_material_says_how_much(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folders = write_midi_folders(tmp_path / "in", 1)
    argv = [a for g, p in folders.items() for a in ("--genre", f"{g}={p}")]
    assert (
        main([*argv, "--data-dir", str(tmp_path / "data"), "--min-pieces", "3", "--no-progress"])
        == 2
    )
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert "'lofi' has 1 piece(s) with notes" in err and "'classical' has 1" in err
    assert "needs at least 3" in err


# -- end to end --------------------------------------------------------------------------------


def test_end_to_end_on_midi_folders(midi_folders: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = run(
        midi_folders, tiny_config(data, render=True, genre_mix={"lofi": 0.7, "classical": 0.3})
    )
    # the audio stages have nothing to do; the 8 user files are copied and tokenized
    assert list(result.summaries) == ["midi", "tokenize", "train", "generate", "evaluate"]
    assert result.summaries["midi"].startswith("midi: 8 done")
    assert result.summaries["tokenize"].startswith("tokenize: 8 done")
    assert result.failures == {}
    meta = json.loads((result.model_dir / "midimix.json").read_text())
    assert meta["genres"] == ["classical", "lofi"] and meta["step"] == MAX_STEPS
    assert set(meta["val_loss_per_genre"]) == {"classical", "lofi"}
    assert set(meta["performance"]) == {"classical", "lofi"}  # tokenize fitted, train stored
    assert "classical" in result.train_text and "genre sensitivity" in result.train_text
    (midi,) = result.pieces
    assert (
        midi.name == "mix-lofi70-classical30-seed0.mid"
        and ScoreTick.from_file(str(midi)).note_num() > 0
    )
    audio, rate_hz = sf.read(midi.with_suffix(".wav"))
    assert rate_hz == 44100 and np.abs(audio).max() > 0.01
    report = json.loads((data / "out" / "report" / "report.json").read_text())
    assert report["generated"]["mix"]["pieces"] == 1
    assert report["reference"]["lofi"]["pieces"] == 4
    text = result.text()
    assert f"model:  {result.model_dir}" in text and f"piece:  {midi}" in text

    # Run again: nothing is redone.
    again = run(
        midi_folders, tiny_config(data, render=True, genre_mix={"lofi": 0.7, "classical": 0.3})
    )
    assert again.summaries["midi"].startswith("midi: 0 done, 8 up to date")
    assert again.summaries["tokenize"].startswith("tokenize: 0 done, 8 up to date")
    assert again.summaries["generate"].endswith("(up to date)")
    assert again.summaries["evaluate"].endswith("(up to date)")
    assert f"at step {MAX_STEPS}/{MAX_STEPS}" in again.train_text


def test_end_to_end_on_mixed_audio(audio_run: tuple[Path, PipelineResult]) -> None:
    data, result = audio_run
    assert result.summaries["collect"].startswith("collect: 4 done")
    assert result.failures == {}
    for genre in AUDIO:  # one zero-padded 30 s mono clip per recording, whatever it came as
        clips = sorted((data / "clips" / genre).glob("*.wav"))
        assert len(clips) == 2
        for clip in clips:
            info = sf.info(clip)
            assert (info.samplerate, info.channels, info.frames) == (22050, 1, CLIP_SAMPLES)
    pitch = {
        g: [
            n.pitch
            for p in (data / "midi" / g).glob("*.mid")
            for n in ScoreTick.from_file(str(p)).tracks[0].notes
        ]
        for g in AUDIO
    }
    # the transcriptions keep the genres apart: lo-fi was played from C3, classical from C5
    assert np.median(pitch["lofi"]) < 60 <= np.median(pitch["classical"])
    assert json.loads((result.model_dir / "midimix.json").read_text())["step"] == MAX_STEPS


# -- SIGKILL and re-run ------------------------------------------------------------------------


def run_until(argv: list[str], killed: Callable[[], bool], timeout_s: float = 120.0) -> None:
    """Start the pipeline command and SIGKILL it (and its workers) once `killed()` holds."""
    process = subprocess.Popen(
        [sys.executable, "-m", "midimix.pipeline", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout_s
    while not killed():
        assert process.poll() is None, "the pipeline finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def manifest_ids(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["id"] for line in path.read_text().splitlines() if line.endswith("}")]


def trained_step(run_dir: Path) -> int:
    try:  # last/ is swapped in by renames: it may be missing for a moment
        return int(json.loads((run_dir / "last" / "state.json").read_text())["state"]["step"])
    except FileNotFoundError:
        return 0


def digests(folder: Path, pattern: str) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in folder.rglob(pattern)}


def test_sigkill_in_transcription_and_training_then_rerun_matches(
    audio_folders: dict[str, Path],
    audio_run: tuple[Path, PipelineResult],
    tmp_path: Path,
) -> None:
    reference, reference_result = audio_run
    data = tmp_path / "data"
    argv = [a for g, p in audio_folders.items() for a in ("--genre", f"{g}={p}")]
    argv += ["--data-dir", str(data), *CLI_OPTIONS]
    midi_manifest = data / "midi" / "manifest.jsonl"

    run_until(argv, lambda: len(manifest_ids(midi_manifest)) >= 1)
    transcribed_before = manifest_ids(midi_manifest)
    assert 1 <= len(transcribed_before) < 4

    run_dir = data / "runs" / "model"
    run_until(argv, lambda: 2 <= trained_step(run_dir) < MAX_STEPS)
    step_at_kill = trained_step(run_dir)
    assert 2 <= step_at_kill < MAX_STEPS

    assert main(argv) == 0
    # transcription redid nothing it had finished: every clip is in its manifest once
    ids = manifest_ids(midi_manifest)
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 4
    # same clips, same MIDI, and training continued from last/ to the same weights
    assert digests(data / "clips", "*.wav") == digests(reference / "clips", "*.wav")
    assert digests(data / "midi", "*.mid") == digests(reference / "midi", "*.mid")
    with open(run_dir / "log.csv") as handle:
        steps = [int(row["step"]) for row in csv.DictReader(handle) if row["val_loss"]]
    assert steps == list(range(2, MAX_STEPS + 1, 2))  # each validation once: resumed, not redone
    model = "runs/model/best/model.safetensors"
    assert sha256_file(data / model) == sha256_file(reference / model)
    piece = reference_result.pieces[0].name
    assert sha256_file(data / "out" / piece) == sha256_file(reference / "out" / piece)


def test_pipeline_settings_come_back_through_config(tmp_path: Path) -> None:
    from midimix.config import save_config
    from midimix.options import config_from_args
    from midimix.pipeline import PipelineConfig, build_parser

    saved = PipelineConfig(bars=4, tempo_ranges={"lofi": "55-95"}, genre_mix={"lofi": 1.0})
    path = save_config(saved, tmp_path, "pipeline")
    args = build_parser().parse_args(["--genre", "a=x", "--config", str(path), "--bars", "8"])
    config = config_from_args(PipelineConfig, args)
    assert config.tempo_ranges == {"lofi": "55-95"} and config.bars == 8
    assert config.genre_mix == {"lofi": 1.0}
