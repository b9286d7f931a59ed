"""From folders of audio and/or MIDI, one per genre, to a trained model and a mixed piece.

    python -m midimix.pipeline --genre lofi=~/music/lofi --genre classical=~/music/classical

`run(genres, config)` runs collect, prepare, transcribe, tokenize, train, generate (a mix of the
user's genres, rendered) and evaluate, in order, each under its own stage contract, so that a
re-run after an interruption (Ctrl-C, SIGKILL, a reboot) continues where it stopped and redoes
nothing finished: the batch stages skip what is up to date, training resumes from
runs/<run_name>/last, and generate / evaluate are skipped when their inputs are unchanged.

Layout under `data_dir`:
    raw/ clips/ midi/<genre>/ (transcriptions, and user MIDI under midi/<genre>/user/)
    tokens/ runs/<run_name>/ out/ (the mixed piece and out/report/, the evaluation report)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from midimix.config import check_range, config_to_dict, parse_genre_paths
from midimix.errors import ConfigError, InputError, cli_errors
from midimix.manifest import (
    Item,
    Manifest,
    StageSummary,
    atomic_path,
    atomic_write_json,
    params_hash,
    run_items,
    sha256_file,
)

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac", ".aif", ".aiff", ".opus")
MIDI_SUFFIXES = (".mid", ".midi")
# "midi" copies the user's own MIDI files beside the transcriptions.
STAGE_NAMES = (
    "collect",
    "prepare",
    "transcribe",
    "midi",
    "tokenize",
    "train",
    "generate",
    "evaluate",
)
STATE_FILE = "pipeline-state.json"  # out/: what generate and evaluate last made, and from what


@dataclass
class PipelineConfig:
    data_dir: Path = Path("data")  # every stage's folder lives under it
    run_name: str = "model"  # the model is written to data_dir/runs/<run_name>/best
    preset: str = "small"  # model size: tiny (a quick look), small (CPU), base (GPU)
    max_steps: int = 0  # training steps; 0: `epochs` passes over the data
    epochs: int = 10  # training passes when max_steps is 0 (the training stage's default)
    batch_size: int = 16
    eval_every: int = 200  # training steps between validation + resume checkpoints
    min_pieces_per_genre: int = 4  # fewer clips / MIDI files than this: too little to train on
    clip_seconds: float = 30.0  # prepare: the clip length (basic-pitch's notes use 30 s)
    workers: int = 1  # worker processes for the batch stages
    hpss: bool = False  # transcribe: drop percussion before transcription
    genre_mix: dict[str, float] | None = None  # the piece to generate; None: equal weights
    bars: int = 16  # length of the generated piece
    seed: int = 0
    render: bool = True  # render the generated piece to audio
    evaluate: bool = True  # write the evaluation report of the generated piece
    plots: bool = True  # evaluation PNGs (piano rolls, feature distributions)
    progress: bool = True

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        check_range("max_steps", self.max_steps, 0)
        check_range("epochs", self.epochs, 1)
        check_range("batch_size", self.batch_size, 1, 65536)
        check_range("eval_every", self.eval_every, 1)
        check_range("min_pieces_per_genre", self.min_pieces_per_genre, 2)
        check_range("clip_seconds", self.clip_seconds, 5.0, 600.0)
        check_range("workers", self.workers, 1, 256)
        check_range("bars", self.bars, 1, 4096)


@dataclass
class PipelineResult:
    model_dir: Path
    pieces: list[Path]  # generated MIDI (and beside each: audio, provenance)
    report_dir: Path | None
    summaries: dict[str, str]  # stage -> summary (first line: the counts)
    seconds: dict[str, float]  # stage -> wall time of this run
    failures: dict[str, list[tuple[str, str]]]  # stage -> (item, reason)
    train_text: str = ""

    def text(self) -> str:
        lines = ["pipeline summary:"]
        for stage in STAGE_NAMES:
            if stage in self.summaries:
                head, *rest = self.summaries[stage].splitlines()
                lines.append(f"  [{self.seconds.get(stage, 0.0):7.1f} s] {head}")
                lines += [f"              {line.strip()}" for line in rest[:6]]
        for stage, failures in self.failures.items():
            for item, reason in failures[:10]:
                lines.append(f"  {stage} failed {item}: {reason}")
            if len(failures) > 10:
                lines.append(f"  {stage}: {len(failures) - 10} more failures (see its manifest)")
        lines.append(f"  model:  {self.model_dir}")
        lines += [f"  piece:  {p}" for p in self.pieces]
        if self.report_dir:
            lines.append(f"  report: {self.report_dir / 'report.md'}")
        return "\n".join(lines)


@dataclass
class GenreInputs:
    audio: list[Path]
    midi: list[Path]


def scan_inputs(genres: Mapping[str, Path]) -> dict[str, GenreInputs]:
    """Check every input before any work starts: paths exist, hold audio or MIDI, >= 2 genres."""
    if len(genres) < 2:
        raise ConfigError(
            f"mixing needs two genres, got {len(genres)} ({', '.join(genres) or 'none'}); "
            "give --genre NAME=PATH once per genre, e.g. --genre lofi=DIR --genre classical=DIR"
        )
    found: dict[str, GenreInputs] = {}
    for genre, path in genres.items():
        if not path.exists():
            raise InputError(f"genre {genre!r}: {path} does not exist; give a folder of audio/MIDI")
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        files = [p for p in files if not p.name.startswith(".")]
        audio = [p for p in files if p.suffix.lower() in AUDIO_SUFFIXES]
        midi = [p for p in files if p.suffix.lower() in MIDI_SUFFIXES]
        if not audio and not midi:
            raise InputError(
                f"genre {genre!r}: no audio ({', '.join(AUDIO_SUFFIXES)}) or MIDI (.mid, .midi) "
                f"files in {path} ({len(files)} other files); point it at your music folder"
            )
        found[genre] = GenreInputs(audio, midi)
    return found


def _copy_midi(item: Item) -> dict[str, Any]:
    with atomic_path(item.output) as tmp:
        shutil.copyfile(item.source, tmp)
    return {}


def gather_midi(inputs: Mapping[str, GenreInputs], midi_dir: Path, progress: bool) -> StageSummary:
    """Copy the user's own MIDI files to midi_dir/<genre>/user/ (named by content), so that
    the tokenize stage sees transcriptions and user MIDI in one folder per genre."""
    items = []
    for genre, found in inputs.items():
        for path in found.midi:
            digest = sha256_file(path)[:16]
            out = midi_dir / genre / "user" / f"{digest}.mid"
            items.append(Item(f"{genre}/{digest}", genre, path, out))
    manifest = Manifest(midi_dir / "user-manifest.jsonl")
    return run_items("midi", items, _copy_midi, manifest, {}, progress=progress)


def count_files(folder: Path, pattern: str) -> int:
    return (
        sum(1 for p in folder.rglob(pattern) if not p.name.startswith("."))
        if folder.exists()
        else 0
    )


def check_material(
    counts: Mapping[str, int], needed: int, what: str, clip_seconds: float = 30.0
) -> None:
    """Raise `InputError` naming each genre with fewer than `needed` pieces: how much it has
    and how much it needs."""
    short = {g: n for g, n in counts.items() if n < needed}
    if short:
        parts = [
            f"{g!r} has {n} {what} (about {n * clip_seconds / 60:.1f} min)"
            for g, n in short.items()
        ]
        raise InputError(
            f"too little material to train on: {'; '.join(parts)}; each genre needs at least "
            f"{needed} (about {needed * clip_seconds / 60:.1f} min of audio, or {needed} MIDI "
            f"files, from 2 or more recordings); a few hours per genre makes a useful model"
        )


def stage_configs(config: PipelineConfig, genres: list[str]) -> dict[str, Any]:
    """Every stage's config from the pipeline's: built up front, so a bad option fails before
    any work starts."""
    from midimix.collect import CollectConfig
    from midimix.config import check_weights
    from midimix.evaluate import EvaluateConfig
    from midimix.generate import GenerateConfig, check_genres
    from midimix.prepare import PrepareConfig
    from midimix.tokenize import TokenizeConfig
    from midimix.train import TrainConfig
    from midimix.transcribe import TranscribeConfig

    progress, workers = config.progress, config.workers
    if config.genre_mix is not None:
        check_genres(config.genre_mix, genres)
        check_weights(config.genre_mix)
    return {
        "collect": CollectConfig(workers=workers, progress=progress),
        "prepare": PrepareConfig(
            clip_seconds=config.clip_seconds, workers=workers, progress=progress
        ),
        "transcribe": TranscribeConfig(workers=workers, progress=progress, hpss=config.hpss),
        "tokenize": TokenizeConfig(workers=workers, progress=progress, seed=config.seed),
        "train": TrainConfig(
            preset=config.preset,
            max_steps=config.max_steps,
            epochs=config.epochs,
            batch_size=config.batch_size,
            eval_every=config.eval_every,
            seed=config.seed,
            progress=progress,
        ),
        "generate": GenerateConfig(
            genre_mix=config.genre_mix, bars=config.bars, seed=config.seed, render=config.render
        ),
        "evaluate": EvaluateConfig(plots=config.plots, seed=config.seed),
    }


class _Runner:
    """Times each stage, prints its header line and collects its summary and failures."""

    def __init__(self, stages: list[str], result: PipelineResult, progress: bool) -> None:
        self.stages, self.result, self.progress = stages, result, progress

    def __call__(self, name: str, detail: str, fn: Callable[[], Any]) -> Any:
        if self.progress:
            index = self.stages.index(name) + 1
            print(f"[{index}/{len(self.stages)}] {name}: {detail}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        out = fn()
        self.result.seconds[name] = time.perf_counter() - start
        summary = out if isinstance(out, StageSummary) else getattr(out, "summary", None)
        if isinstance(summary, StageSummary):
            self.result.summaries[name] = summary.text()
            if summary.failures:
                self.result.failures[name] = summary.failures
        return out


def run(genres: Mapping[str, Path | str], config: PipelineConfig | None = None) -> PipelineResult:
    """Run every stage in order on one folder (of audio, MIDI or both) per genre."""
    from midimix.collect import collect
    from midimix.prepare import prepare
    from midimix.prepare import summary_text as prepare_summary
    from midimix.tokenize import tokenize
    from midimix.train import train
    from midimix.transcribe import transcribe

    config = config or PipelineConfig()
    paths = parse_genre_paths([f"{g}={p}" for g, p in genres.items()])
    inputs = scan_inputs(paths)
    configs = stage_configs(config, sorted(inputs))
    data = config.data_dir
    raw, clips, midi, tokens = data / "raw", data / "clips", data / "midi", data / "tokens"
    run_dir = data / "runs" / config.run_name
    out_dir = data / "out"
    result = PipelineResult(run_dir / "best", [], None, {}, {}, {})

    audio = {g: found.audio for g, found in inputs.items() if found.audio}
    user_midi = {g: len(found.midi) for g, found in inputs.items()}
    stages = [s for s in STAGE_NAMES if s != "evaluate" or config.evaluate]
    if not audio:
        stages = [s for s in stages if s not in ("collect", "prepare", "transcribe")]
    if not any(user_midi.values()):
        stages.remove("midi")
    stage = _Runner(stages, result, config.progress)

    if audio:
        files = sum(map(len, audio.values()))
        stage("collect", f"{files} audio files", lambda: collect(audio, raw, configs["collect"]))
        prepared = stage(
            "prepare", "cutting clips", lambda: prepare(raw, clips, configs["prepare"])
        )
        result.summaries["prepare"] = prepare_summary(prepared)
        counts = {g: count_files(clips / g, "*.wav") + user_midi[g] for g in inputs}
        check_material(
            counts, config.min_pieces_per_genre, "clip(s) or MIDI file(s)", config.clip_seconds
        )
        n_clips = count_files(clips, "*.wav")
        stage(
            "transcribe", f"{n_clips} clips", lambda: transcribe(clips, midi, configs["transcribe"])
        )
    if any(user_midi.values()):
        n_midi = sum(user_midi.values())
        stage("midi", f"{n_midi} MIDI files", lambda: gather_midi(inputs, midi, config.progress))

    counts = {g: count_files(midi / g, "*.mid") for g in inputs}
    check_material(counts, config.min_pieces_per_genre, "piece(s) with notes", config.clip_seconds)
    midi_dirs = {g: midi / g for g in inputs}
    n_pieces = sum(counts.values())
    stage(
        "tokenize", f"{n_pieces} pieces", lambda: tokenize(midi_dirs, tokens, configs["tokenize"])
    )

    train_config = configs["train"]
    train_config.resume = (run_dir / "last").exists()
    detail = "resuming from last/" if train_config.resume else f"preset {config.preset}"
    trained = stage("train", detail, lambda: train(tokens, run_dir, train_config))
    result.summaries["train"] = result.train_text = trained.text()

    gc = configs["generate"]
    pieces = stage("generate", f"{gc.bars} bars", lambda: _generate(result.model_dir, out_dir, gc))
    result.pieces = [Path(p["midi"]) for p in pieces]
    result.summaries["generate"] = "generate: " + "; ".join(p["text"] for p in pieces)

    if config.evaluate:
        report_dir = out_dir / "report"
        result.report_dir = report_dir
        ec = configs["evaluate"]
        line = stage(
            "evaluate",
            "genre classifier on your pieces",
            lambda: _evaluate(result.pieces, midi_dirs, report_dir, ec),
        )
        result.summaries["evaluate"] = line
    return result


def _state(out_dir: Path) -> dict[str, Any]:
    try:
        state = json.loads((out_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return state if isinstance(state, dict) else {}


def _save_state(out_dir: Path, stage: str, key: str, value: Any) -> None:
    state = _state(out_dir)
    state[stage] = {"key": key, "value": value}
    atomic_write_json(out_dir / STATE_FILE, state)


def _done(out_dir: Path, stage: str, key: str, outputs: list[str]) -> Any:
    """The stage's saved value when it ran with the same key and its outputs still exist."""
    saved = _state(out_dir).get(stage)
    if saved and saved.get("key") == key and all(Path(p).exists() for p in outputs):
        return saved["value"]
    return None


def _generate(model_dir: Path, out_dir: Path, config: Any) -> list[dict[str, str]]:
    """The mixed piece(s); skipped when this model and these options already made them."""
    from midimix.generate import generate

    settings = {k: v for k, v in config_to_dict(config).items() if k not in ("device", "threads")}
    key = params_hash({"model": sha256_file(model_dir / "model.safetensors"), **settings})
    saved = _state(out_dir).get("generate", {}).get("value") or []
    outputs = [p[k] for p in saved for k in ("midi", "audio") if p.get(k)]
    done = _done(out_dir, "generate", key, outputs)
    if done is not None:
        return [{**p, "text": p["text"] + " (up to date)"} for p in done]
    pieces = [
        {
            "midi": str(p.midi_path),
            "audio": str(p.audio_path) if p.audio_path else "",
            "text": p.text(),
        }
        for p in generate(model_dir, out_dir, config)
    ]
    _save_state(out_dir, "generate", key, pieces)
    return pieces


def _evaluate(
    pieces: list[Path], midi_dirs: Mapping[str, Path], report_dir: Path, config: Any
) -> str:
    """The evaluation report of the mixed piece(s) against the user's own genres; skipped when
    the pieces and the reference MIDI are unchanged. Returns its summary line."""
    from midimix.evaluate import evaluate

    reference = {
        g: sorted(p for p in d.rglob("*.mid") if not p.name.startswith("."))
        for g, d in midi_dirs.items()
    }
    digests = {
        str(p): sha256_file(p) for p in [*pieces, *(p for ps in reference.values() for p in ps)]
    }
    key = params_hash({"files": digests, "config": config_to_dict(config)})
    out_dir = report_dir.parent
    done = _done(out_dir, "evaluate", key, [str(report_dir / "report.json")])
    if done is not None:
        return str(done) + " (up to date)"
    report = evaluate({"mix": pieces}, reference, report_dir, config)
    mix = report["generated"]["mix"]
    p_genre = ", ".join(f"{g} {v['mean']:.2f}" for g, v in mix["p_genre"].items())
    line = (
        f"evaluate: P(genre) of the mix: {p_genre}; "
        f"closest by feature distance {mix['closest_genre']}; "
        f"classifier CV accuracy {report['classifier']['cv_accuracy']:.2f}"
    )
    _save_state(out_dir, "evaluate", key, line)
    return line


def build_parser() -> argparse.ArgumentParser:
    d = PipelineConfig()
    p = argparse.ArgumentParser(
        prog="midimix pipeline",
        description="Run every stage, from one folder of audio and/or MIDI per genre to a "
        "trained genre-mixing model, a mixed piece (MIDI + audio) and an evaluation report. "
        "Interrupted runs continue where they stopped when run again with the same options.",
    )
    p.add_argument(
        "--genre",
        action="append",
        required=True,
        metavar="NAME=PATH",
        help="a genre and its folder of audio, MIDI or both; give it once per genre (>= 2)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=d.data_dir,
        help="working folder; every stage's folder lives under it (%(default)s)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=d.workers,
        help="worker processes for the batch stages (%(default)s)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=d.seed,
        help="random seed of tokenize, train, generate and evaluate (%(default)s)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    data = p.add_argument_group("data")
    data.add_argument(
        "--min-pieces",
        type=int,
        default=d.min_pieces_per_genre,
        help="clips / MIDI files each genre needs at least; fewer is too little to train on "
        "(%(default)s)",
    )
    data.add_argument(
        "--clip-seconds",
        type=float,
        default=d.clip_seconds,
        help="prepare: the clip length in seconds (%(default)s)",
    )
    data.add_argument(
        "--hpss", action="store_true", help="transcribe: drop percussion before transcription"
    )
    training = p.add_argument_group("training")
    training.add_argument(
        "--run-name",
        default=d.run_name,
        help="the model is written to DATA_DIR/runs/RUN_NAME/best (%(default)s)",
    )
    training.add_argument(
        "--preset",
        default=d.preset,
        help="model size: tiny (a quick look), small (CPU), base (GPU) (%(default)s)",
    )
    training.add_argument(
        "--max-steps",
        type=int,
        default=d.max_steps,
        help="training steps; 0: --epochs passes over the data (%(default)s)",
    )
    training.add_argument(
        "--epochs",
        type=int,
        default=d.epochs,
        help="training passes when --max-steps is 0 (%(default)s)",
    )
    training.add_argument(
        "--batch-size",
        type=int,
        default=d.batch_size,
        help="training chunks per process per step (%(default)s)",
    )
    training.add_argument(
        "--eval-every",
        type=int,
        default=d.eval_every,
        help="training steps between validation + resume checkpoints (%(default)s)",
    )
    output = p.add_argument_group("generated piece and report")
    output.add_argument(
        "--genre-mix",
        default=None,
        help="mix of the generated piece, e.g. lofi=0.7,classical=0.3 (default: equal weights)",
    )
    output.add_argument(
        "--bars",
        type=int,
        default=d.bars,
        help="length of the generated piece, in bars (%(default)s)",
    )
    output.add_argument("--no-render", action="store_true", help="write MIDI only, no audio")
    output.add_argument("--no-evaluate", action="store_true", help="skip the evaluation report")
    output.add_argument(
        "--no-plots",
        action="store_true",
        help="evaluation report without PNGs (piano rolls, feature distributions)",
    )
    return p


@cli_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from midimix.config import parse_weights

    genres = parse_genre_paths(args.genre)
    config = PipelineConfig(
        data_dir=args.data_dir,
        run_name=args.run_name,
        preset=args.preset,
        max_steps=args.max_steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
        eval_every=args.eval_every,
        min_pieces_per_genre=args.min_pieces,
        clip_seconds=args.clip_seconds,
        workers=args.workers,
        hpss=args.hpss,
        genre_mix=parse_weights(args.genre_mix) if args.genre_mix else None,
        bars=args.bars,
        seed=args.seed,
        render=not args.no_render,
        evaluate=not args.no_evaluate,
        plots=not args.no_plots,
        progress=not args.no_progress,
    )
    result = run(genres, config)
    print(result.text())
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
