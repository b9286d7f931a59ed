"""Training: a tiny GPT-2 learns a two-genre synthetic corpus and tells the genres apart;
resuming is exact; two CPU processes train together (DDP); bad inputs get one clear error."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from symusic.core import NoteTick, ScoreTick, TrackTick

from midimix.config import save_config
from midimix.errors import ConfigError, MidimixError
from midimix.model import load_checkpoint
from midimix.options import config_from_args
from midimix.tokenize import TokenizeConfig, load_sequences, tokenize
from midimix.train import TrainConfig, TrainResult, build_parser, genre_sensitivity, main, train

TPQ = 480
PIECES_PER_GENRE = 16


def synthetic_piece(genre: str, seed: int, bars: int = 4) -> ScoreTick:
    """low: soft half notes in the bass; high: loud sixteenth notes far above."""
    rng = random.Random(f"{genre}:{seed}")
    if genre == "low":
        step, pitches, velocity = 2 * TPQ, range(36, 52), 50
    else:
        step, pitches, velocity = TPQ // 4, range(76, 96), 100
    score = ScoreTick(TPQ)
    track = TrackTick("", 0, False)  # name, program (piano), is_drum
    for time in range(0, bars * 4 * TPQ, step):
        track.notes.append(NoteTick(time, step, rng.choice(pitches), velocity))
    score.tracks.append(track)
    return score


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    for genre in ("low", "high"):
        (root / "midi" / genre).mkdir(parents=True)
        for i in range(PIECES_PER_GENRE):
            synthetic_piece(genre, i).dump_midi(root / "midi" / genre / f"{genre}{i:02d}.mid")
    config = TokenizeConfig(transpose_semitones=0, validation_fraction=0.25, progress=False)
    tokenize(root / "midi", root / "tokens", config)
    return root / "tokens"


def quick(**changes: object) -> TrainConfig:
    """A tiny, fast run: one thread (the test machine is shared), chunks of 64 tokens."""
    base: dict[str, Any] = dict(
        preset="tiny",
        max_steps=12,
        batch_size=8,
        lr=3e-3,
        warmup_steps=5,
        max_seq_len=64,
        eval_every=100,
        any_prob=0.1,
        threads=1,
        progress=False,
    )
    base.update(changes)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def trained(tokens_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    run_dir = tmp_path_factory.mktemp("runs") / "learn"
    return train(tokens_dir, run_dir, quick(max_steps=80, eval_every=40))


def test_learns_both_genres_and_tells_them_apart(trained: TrainResult, tokens_dir: Path) -> None:
    assert trained.finished and trained.step == 80
    assert trained.unigram_val_loss > 3.0  # 270 ids, ~40 in use: a context-free model is poor
    assert trained.best_val_loss < 0.5 * trained.unigram_val_loss
    assert set(trained.val_loss_per_genre) == {"high", "low"}
    assert trained.genre_sensitivity >= 0.9
    model, tokenizer, meta = load_checkpoint(trained.best_dir)
    assert meta["step"] in (40, 80) and meta["val_loss"] == trained.best_val_loss
    assert meta["data_sha256"].keys() == {"sequences.jsonl", "tokenizer.json"}
    assert meta["train_config"]["max_steps"] == 80 and meta["genres"] == ["high", "low"]
    options = json.loads((trained.run_dir / "train.config.json").read_text())
    assert options == meta["train_config"]  # the run's options, for --config
    validation = load_sequences(tokens_dir, "validation")
    assert len(validation) == 8  # 4 recordings per genre held out
    assert genre_sensitivity(model, tokenizer, validation, 64) == meta["genre_sensitivity"]
    # An untrained model does not know the genres: the score is earned by training.
    torch.manual_seed(0)
    from midimix.model import build_model

    fresh = build_model(
        tokenizer.vocab_size, "tiny", tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id
    )
    assert genre_sensitivity(fresh, tokenizer, validation, 64) <= 0.75


def test_log_has_falling_training_loss_and_validation_rows(trained: TrainResult) -> None:
    with open(trained.run_dir / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    train_rows = [r for r in rows if r["train_loss"]]
    val_rows = [r for r in rows if r["val_loss"]]
    assert [int(r["step"]) for r in train_rows] == list(range(10, 81, 10))
    assert [int(r["step"]) for r in val_rows] == [40, 80]
    assert float(train_rows[-1]["train_loss"]) < 0.5 * float(train_rows[0]["train_loss"])
    assert float(val_rows[-1]["genre_sensitivity"]) >= 0.9
    assert {"val_loss_high", "val_loss_low"} <= rows[0].keys()


def test_resume_continues_exactly(tokens_dir: Path, tmp_path: Path) -> None:
    # 14 steps cross an epoch (about 11 steps of 8 chunks); shuffling, Genre_any and dropout
    # all draw random numbers that a resumed run must draw the same.
    straight = train(tokens_dir, tmp_path / "straight", quick(max_steps=14, dropout=0.1))
    first = train(
        tokens_dir, tmp_path / "split", quick(max_steps=14, dropout=0.1, stop_after_steps=7)
    )
    assert not first.finished and first.step == 7
    state = json.loads((tmp_path / "split" / "last" / "state.json").read_text())
    assert state["state"]["step"] == 7 and state["state"]["batch_in_epoch"] == 7
    second = train(tokens_dir, tmp_path / "split", quick(max_steps=14, dropout=0.1, resume=True))
    assert second.finished and second.step == straight.step == 14
    a = load_file(tmp_path / "straight" / "last" / "model.safetensors")
    b = load_file(tmp_path / "split" / "last" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert second.best_val_loss == pytest.approx(straight.best_val_loss, rel=1e-5)
    # Resuming with other options would not continue the same run: refused, with the reason.
    with pytest.raises(ConfigError, match=r"lr: 0.003 -> 0.001"):
        train(
            tokens_dir, tmp_path / "split", quick(max_steps=14, dropout=0.1, lr=1e-3, resume=True)
        )
    # The refused call leaves the run's options file as the run wrote it.
    assert json.loads((tmp_path / "split" / "train.config.json").read_text())["lr"] == 3e-3
    with pytest.raises(MidimixError, match="already holds a run; pass --resume"):
        train(tokens_dir, tmp_path / "split", quick(max_steps=14))
    (tmp_path / "split" / "last" / "state.json").write_text('{"train_config": ')
    with pytest.raises(
        MidimixError, match="cannot resume: the state in .* is incomplete or corrupt"
    ):
        train(tokens_dir, tmp_path / "split", quick(max_steps=14, resume=True))


def test_two_cpu_processes_train_together(tokens_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "midimix.train",
        "--tokens-dir",
        str(tokens_dir),
        "--run-dir",
        str(run_dir),
        "--preset",
        "tiny",
        "--max-steps",
        "3",
        "--batch-size",
        "4",
        "--max-seq-len",
        "64",
        "--threads",
        "1",
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("train: done at step 3/3") == 1  # printed by the main process only
    state = json.loads((run_dir / "last" / "state.json").read_text())
    assert state["world_size"] == 2 and state["state"]["step"] == 3
    assert len(torch.load(run_dir / "last" / "rng.pt", weights_only=True)) == 2  # one per process


def write_tokens(folder: Path, source: Path, keep: Callable[[dict[str, Any]], bool]) -> Path:
    folder.mkdir()
    shutil.copy(source / "tokenizer.json", folder / "tokenizer.json")
    lines = (source / "sequences.jsonl").read_text().splitlines()
    kept = [line for line in lines if keep(json.loads(line))]
    (folder / "sequences.jsonl").write_text("".join(line + "\n" for line in kept))
    return folder


def test_empty_data_set(tokens_dir: Path, tmp_path: Path) -> None:
    empty = write_tokens(tmp_path / "empty", tokens_dir, lambda row: False)
    with pytest.raises(MidimixError, match="training split .* is empty"):
        train(empty, tmp_path / "run", quick())
    with pytest.raises(MidimixError, match="does not exist: run `midimix tokenize` first"):
        train(tmp_path / "nowhere", tmp_path / "run", quick())


def test_tiny_data_set_without_validation(tokens_dir: Path, tmp_path: Path) -> None:
    tiny = write_tokens(tmp_path / "tiny", tokens_dir, lambda row: row["split"] == "train")
    with pytest.raises(MidimixError, match="validation split .* is empty"):
        train(tiny, tmp_path / "run", quick())


def test_context_longer_than_every_sequence_pads(tokens_dir: Path, tmp_path: Path) -> None:
    short = write_tokens(tmp_path / "short", tokens_dir, lambda row: row["genre"] == "low")
    longest = max(len(ids) for _, ids in load_sequences(short, "train")) + 3  # BOS, genre, EOS
    assert longest < 128
    result = train(short, tmp_path / "run", quick(max_steps=3, max_seq_len=128))
    assert result.step == 3 and 0 < result.best_val_loss < 10
    with pytest.raises(ConfigError, match=r"max_seq_len must be in \[8, 128\], got 256"):
        quick(max_seq_len=256)


def test_command_line_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "--tokens-dir",
            str(tmp_path / "none"),
            "--run-dir",
            str(tmp_path / "r"),
            "--preset",
            "tiny",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "midimix tokenize" in err


BUILD_SCRIPT_FLAGS = (  # scripts/build_default_model.sh's call, with its default knobs
    "--tokens-dir data/default-build/tokens --run-dir data/default-build/run --preset small "
    "--max-steps 700 --batch-size 8 --lr 1e-3 --warmup-steps 100 --eval-every 350 "
    "--stop-after-steps 175 --threads 1 --device auto --no-progress --resume"
)


def test_command_line_builds_the_config_and_takes_a_saved_one_back(tmp_path: Path) -> None:
    parser = build_parser()
    assert parser.format_usage().startswith("usage: midimix train ")
    args = parser.parse_args(BUILD_SCRIPT_FLAGS.split())
    config = config_from_args(TrainConfig, args)
    assert (args.tokens_dir, args.run_dir) == (
        Path("data/default-build/tokens"),
        Path("data/default-build/run"),
    )
    assert config == TrainConfig(
        preset="small", max_steps=700, batch_size=8, lr=1e-3, warmup_steps=100, eval_every=350,
        stop_after_steps=175, threads=1, device="auto", progress=False, resume=True,
    )  # fmt: skip
    docs = "--preset tiny --max-seq-len 128 --dropout 0.2 --any-prob 0.2 --seed 3 --epochs 4"
    assert config_from_args(TrainConfig, parser.parse_args(docs.split())) == TrainConfig(
        preset="tiny", max_seq_len=128, dropout=0.2, any_prob=0.2, seed=3, epochs=4
    )
    saved = save_config(config, tmp_path, "train")
    assert saved == tmp_path / "train.config.json"
    again = config_from_args(
        TrainConfig, parser.parse_args(["--config", str(saved), "--lr", "2e-3"])
    )
    assert again == dataclasses.replace(config, lr=2e-3)
    for wrong in (["--max-steps", "3", "--epochs", "2"], ["--device", "tpu"], ["--lr", "nan"]):
        with pytest.raises(SystemExit):
            parser.parse_args(wrong)


def test_log_rows_past_the_resumed_step_are_dropped(tmp_path: Path) -> None:
    from midimix.train_log import CsvLog

    log = CsvLog(tmp_path / "log.csv", ["a", "b"], enabled=True)
    for step in (2, 4, 6):
        log.write(step, val_loss=1.0 / step)
    log.truncate_after(4)  # killed after logging step 6, before saving its state
    with open(tmp_path / "log.csv") as handle:
        assert [row.split(",")[0] for row in handle.read().splitlines()] == ["step", "2", "4"]


def test_precision_follows_the_option_and_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    from midimix import train_loop

    assert train_loop.make_accelerator("cpu", "fp32").mixed_precision == "no"
    monkeypatch.setattr(train_loop, "cpu_has_bf16", lambda: True)
    assert train_loop.make_accelerator("cpu", "auto").mixed_precision == "bf16"
    assert train_loop.make_accelerator("cpu", "fp32").mixed_precision == "no"  # after bf16
    monkeypatch.setattr(train_loop, "cpu_has_bf16", lambda: False)
    assert train_loop.make_accelerator("cpu", "auto").mixed_precision == "no"
    with pytest.raises(ConfigError, match="no native bf16"):
        train_loop.make_accelerator("cpu", "bf16")
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="fp16")


def test_the_fused_activation_computes_the_same_loss_and_gradients() -> None:
    """Training swaps GPT-2's seven-op `gelu_new` for torch's fused tanh GELU: the same loss
    and gradients up to float rounding, and no change to the weights saved."""
    from midimix.model import build_model
    from midimix.train_kernels import speed_up_training

    torch.manual_seed(0)
    model = build_model(64, "tiny", 0, 1, 2)
    ids = torch.randint(3, 64, (2, 32))
    before = {name: t.clone() for name, t in model.state_dict().items()}

    def loss_and_grads() -> tuple[float, list[torch.Tensor]]:
        model.zero_grad()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        return loss.item(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain_loss, plain_grads = loss_and_grads()
    assert speed_up_training(model) == ["fused GELU"]  # tiny: no dropout to swap
    assert speed_up_training(model) == []  # once
    fused_loss, fused_grads = loss_and_grads()
    assert type(model.transformer.h[0].mlp.act).__name__ == "GELUTanh"
    assert abs(fused_loss - plain_loss) < 1e-5
    assert all((a - b).abs().max() < 1e-5 for a, b in zip(plain_grads, fused_grads, strict=True))
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[name], before[name]) for name in before)
