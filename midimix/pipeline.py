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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from midimix.config import (
    MIDI_SUFFIXES,
    check_range,
    config_to_dict,
    parse_genre_paths,
    parse_weights,
    save_config,
)
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
from midimix.options import add_config_arguments, config_from_args, option, stage_parser

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


_DATA, _TRAIN, _PIECE = "data", "training", "generated piece and report"


def parse_tempo_ranges(text: str) -> dict[str, str]:
    """'lofi=55-95,classical=60-160' -> {'lofi': '55-95', ...} (ranges checked by transcribe)."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        genre, sep, span = (x.strip() for x in part.partition("="))
        if not sep or not genre or not span:
            raise ConfigError(f"expected GENRE=LO-HI like lofi=55-95, got {part!r}")
        out[genre] = span
    return out


@dataclass
class PipelineConfig:
    """The pipeline's own settings; each is handed to the stage that uses it, whose config
    checks its range (so the ranges are declared once, in the stages)."""

    data_dir: Path = Path("data")  # working folder; every stage's folder lives under it
    workers: int = 1  # worker processes for the batch stages
    seed: int = 0  # random seed of tokenize, train, generate and evaluate
    progress: bool = True  # progress bars and stage headers
    min_pieces_per_genre: int = field(
        default=4, metadata=option(aliases=("--min-pieces",), group=_DATA)
    )  # clips / MIDI files each genre needs at least; fewer is too little to train on
    clip_seconds: float = field(
        default=30.0, metadata=option(group=_DATA)
    )  # prepare: the clip length in seconds
    hpss: bool = field(
        default=False, metadata=option(group=_DATA)
    )  # transcribe: drop percussion before transcription
    tempo_ranges: dict[str, str] | None = field(
        default=None, metadata=option(group=_DATA, parse=parse_tempo_ranges, metavar="G=LO-HI,...")
    )  # transcribe: each genre's tempo range in BPM, e.g. lofi=55-95,classical=60-160, so
    # slow swung music is not read at double tempo; none: no range
    run_name: str = field(
        default="model", metadata=option(group=_TRAIN)
    )  # the model is written to DATA_DIR/runs/RUN_NAME/best
    preset: str = field(
        default="small", metadata=option(group=_TRAIN, choices=("tiny", "small", "base"))
    )  # model size: tiny (a quick look), small (CPU), base (GPU)
    max_steps: int = field(
        default=0, metadata=option(group=_TRAIN, exclusive="length")
    )  # training steps; 0: --epochs passes over the data
    epochs: int = field(
        default=10, metadata=option(group=_TRAIN, exclusive="length")
    )  # training passes when --max-steps is 0
    batch_size: int = field(
        default=16, metadata=option(group=_TRAIN)
    )  # training chunks per process per step
    eval_every: int = field(
        default=200, metadata=option(group=_TRAIN)
    )  # training steps between validation + resume checkpoints
    genre_mix: dict[str, float] | None = field(
        default=None, metadata=option(group=_PIECE, parse=parse_weights, metavar="MIX")
    )  # mix of the generated piece, e.g. lofi=0.7,classical=0.3; none: equal weights
    bars: int = field(
        default=16, metadata=option(group=_PIECE)
    )  # length of the generated piece, in bars
    render: bool = field(
        default=True, metadata=option(group=_PIECE)
    )  # render the generated piece to audio
    evaluate: bool = field(
        default=True, metadata=option(group=_PIECE)
    )  # write the evaluation report of the generated piece
    plots: bool = field(
        default=True, metadata=option(group=_PIECE)
    )  # evaluation PNGs (piano rolls, feature distributions)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        check_range("min_pieces_per_genre", self.min_pieces_per_genre, 2)


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
    from midimix.audio import AUDIO_SUFFIXES  # numpy: not for --help

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
                f"genre {genre!r}: no audio ({', '.join(AUDIO_SUFFIXES)}) or MIDI "
                f"({', '.join(MIDI_SUFFIXES)}) "
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
    unknown = sorted(set(config.tempo_ranges or {}) - set(genres))
    if unknown:
        raise ConfigError(
            f"tempo range given for {unknown[0]!r}, which is not one of the genres "
            f"{', '.join(genres)}"
        )
    if config.genre_mix is not None:
        check_genres(config.genre_mix, genres)
        check_weights(config.genre_mix)
    return {
        "collect": CollectConfig(workers=workers, progress=progress),
        "prepare": PrepareConfig(
            clip_seconds=config.clip_seconds, workers=workers, progress=progress
        ),
        "transcribe": {
            genre: TranscribeConfig(
                workers=workers,
                progress=progress,
                hpss=config.hpss,
                tempo_range=(config.tempo_ranges or {}).get(genre),
            )
            for genre in genres
        },
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
            genre_mix=config.genre_mix,
            bars=config.bars,
            seed=config.seed,
            render=config.render,
            progress=progress,
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

    config = config or PipelineConfig()
    paths = parse_genre_paths([f"{g}={p}" for g, p in genres.items()])
    inputs = scan_inputs(paths)
    configs = stage_configs(config, sorted(inputs))
    save_config(config, config.data_dir, "pipeline")  # `--config` takes it back
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
        stage("transcribe", f"{n_clips} clips", lambda: _transcribe(clips, midi, configs))
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


def _transcribe(clips: Path, midi: Path, configs: dict[str, Any]) -> StageSummary:
    """Each genre with its own settings (its tempo range), into one manifest."""
    from midimix.transcribe import transcribe

    total = StageSummary("transcribe")
    for genre, config in configs["transcribe"].items():
        if not (clips / genre).is_dir():
            continue
        part = transcribe({genre: clips / genre}, midi, config)
        for name in ("done", "skipped", "empty", "failed", "out_of_shard", "seconds"):
            setattr(total, name, getattr(total, name) + getattr(part, name))
        total.failures += part.failures
        total.records += part.records
    return total


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
    from midimix.render import render_piece

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
        for p in generate(
            model_dir, out_dir, config, render_audio=render_piece if config.render else None
        )
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
    p = stage_parser("pipeline", __doc__)
    p.add_argument(
        "--genre",
        action="append",
        required=True,
        metavar="NAME=PATH",
        help="a genre and its folder of audio, MIDI or both; give it once per genre (>= 2)",
    )
    add_config_arguments(p, PipelineConfig)
    return p


@cli_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    genres = parse_genre_paths(args.genre)
    result = run(genres, config_from_args(PipelineConfig, args))
    print(result.text())
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
