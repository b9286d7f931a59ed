"""From folders of audio and/or MIDI, one per genre, to a trained model and a mixed piece.

`run(genres, config)` runs collect, prepare, transcribe, tokenize, train, generate (a mix of the
user's genres, rendered) and evaluate, in order, each under its own stage contract, so that a
re-run after an interruption continues where it stopped and redoes nothing finished: the batch
stages skip what is up to date, and training resumes from its last saved state.

Layout under `data_dir`:
    raw/ clips/ midi/<genre>/ (transcriptions, and user MIDI under midi/<genre>/user/)
    tokens/ runs/<run_name>/ out/ (the mixed piece and the evaluation report)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from midimix.config import check_range, parse_genre_paths
from midimix.errors import ConfigError, InputError, cli_errors
from midimix.manifest import Item, Manifest, StageSummary, atomic_path, run_items

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac", ".aif", ".aiff")
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


@dataclass
class PipelineConfig:
    data_dir: Path = Path("data")  # every stage's folder lives under it
    run_name: str = "model"  # the model is written to data_dir/runs/<run_name>/best
    preset: str = "small"  # model size: tiny (a quick look), small (CPU), base (GPU)
    max_steps: int = 0  # training steps; 0: the training stage's default (epochs)
    batch_size: int = 16
    min_pieces_per_genre: int = 4  # fewer clips / MIDI files than this: too little to train on
    workers: int = 1  # worker processes for the batch stages
    hpss: bool = False  # transcribe: drop percussion before transcription
    genre_mix: dict[str, float] | None = None  # the piece to generate; None: equal weights
    bars: int = 16  # length of the generated piece
    seed: int = 0
    render: bool = True  # render the generated piece to audio
    evaluate: bool = True  # write the evaluation report of the generated piece
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # free notes saved with the run

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        check_range("max_steps", self.max_steps, 0)
        check_range("batch_size", self.batch_size, 1, 65536)
        check_range("min_pieces_per_genre", self.min_pieces_per_genre, 2)
        check_range("workers", self.workers, 1, 256)
        check_range("bars", self.bars, 1, 4096)


@dataclass
class PipelineResult:
    model_dir: Path
    pieces: list[Path]  # generated MIDI (and beside each: audio, provenance)
    report_dir: Path | None
    summaries: dict[str, str]  # stage -> one-line summary
    seconds: dict[str, float]  # stage -> wall time of this run
    failures: dict[str, list[tuple[str, str]]]  # stage -> (item, reason)
    train_text: str = ""

    def text(self) -> str:
        lines = ["pipeline summary:"]
        for stage, line in self.summaries.items():
            lines.append(f"  [{self.seconds.get(stage, 0.0):7.1f} s] {line.splitlines()[0]}")
        for stage, failures in self.failures.items():
            for item, reason in failures[:10]:
                lines.append(f"  {stage} failed {item}: {reason}")
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
            f"mixing needs at least two genres, got {len(genres)} ({', '.join(genres) or 'none'});"
            " give --genre NAME=PATH once per genre"
        )
    found: dict[str, GenreInputs] = {}
    for genre, path in genres.items():
        if not path.exists():
            raise InputError(f"genre {genre!r}: {path} does not exist")
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        audio = [p for p in files if p.suffix.lower() in AUDIO_SUFFIXES]
        midi = [p for p in files if p.suffix.lower() in MIDI_SUFFIXES]
        if not audio and not midi:
            raise InputError(
                f"genre {genre!r}: no audio ({', '.join(AUDIO_SUFFIXES)}) or MIDI files in {path}"
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
    from midimix.manifest import sha256_file

    items = []
    for genre, found in inputs.items():
        for path in found.midi:
            digest = sha256_file(path)[:16]
            out = midi_dir / genre / "user" / f"{digest}.mid"
            items.append(Item(f"{genre}/{digest}", genre, path, out))
    manifest = Manifest(midi_dir / "user-manifest.jsonl")
    return run_items("midi", items, _copy_midi, manifest, {}, progress=progress)


def count_pieces(midi_dir: Path, genres: list[str]) -> dict[str, int]:
    return {g: sum(1 for _ in (midi_dir / g).rglob("*.mid")) for g in genres}


def check_material(counts: Mapping[str, int], needed: int, clip_seconds: float = 30.0) -> None:
    short = {g: n for g, n in counts.items() if n < needed}
    if short:
        parts = [
            f"{g!r} has {n} piece(s) (about {n * clip_seconds / 60:.1f} min)"
            for g, n in short.items()
        ]
        raise InputError(
            f"too little material to train on: {'; '.join(parts)}; each genre needs at least "
            f"{needed} pieces (about {needed * clip_seconds / 60:.1f} min of audio in 30 s clips "
            f"or {needed} MIDI files); a few hours per genre makes a useful model"
        )


def _stage(
    name: str, index: int, fn: Callable[[], Any], result: PipelineResult, progress: bool
) -> Any:
    if progress:
        print(f"[{index}/{len(STAGE_NAMES)}] {name}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    out = fn()
    result.seconds[name] = time.perf_counter() - start
    if isinstance(out, StageSummary):
        result.summaries[name] = out.text()
        if out.failures:
            result.failures[name] = out.failures
    return out


def run(genres: Mapping[str, Path | str], config: PipelineConfig | None = None) -> PipelineResult:
    """Run every stage in order on one folder (of audio, MIDI or both) per genre."""
    from midimix.collect import CollectConfig, collect
    from midimix.generate import GenerateConfig, generate
    from midimix.prepare import PrepareConfig, prepare
    from midimix.tokenize import TokenizeConfig, tokenize
    from midimix.train import TrainConfig, train
    from midimix.transcribe import TranscribeConfig, transcribe

    config = config or PipelineConfig()
    paths = parse_genre_paths([f"{g}={p}" for g, p in genres.items()])
    inputs = scan_inputs(paths)
    data = config.data_dir
    raw, clips, midi, tokens = data / "raw", data / "clips", data / "midi", data / "tokens"
    run_dir = data / "runs" / config.run_name
    out_dir = data / "out"
    progress, workers = config.progress, config.workers
    result = PipelineResult(run_dir / "best", [], None, {}, {}, {})

    audio = {g: found.audio for g, found in inputs.items() if found.audio}
    if audio:
        cc = CollectConfig(workers=workers, progress=progress)
        _stage("collect", 1, lambda: collect(audio, raw, cc), result, progress)
        pc = PrepareConfig(workers=workers, progress=progress)
        _stage("prepare", 2, lambda: prepare(raw, clips, pc), result, progress)
        tc = TranscribeConfig(workers=workers, progress=progress, hpss=config.hpss)
        _stage("transcribe", 3, lambda: transcribe(clips, midi, tc), result, progress)
    if any(found.midi for found in inputs.values()):
        _stage("midi", 4, lambda: gather_midi(inputs, midi, progress), result, progress)

    check_material(count_pieces(midi, list(inputs)), config.min_pieces_per_genre)
    kc = TokenizeConfig(workers=workers, progress=progress, seed=config.seed)
    midi_dirs = {g: midi / g for g in inputs}
    _stage("tokenize", 5, lambda: tokenize(midi_dirs, tokens, kc), result, progress)

    resume = (run_dir / "last").exists()
    trc = TrainConfig(
        preset=config.preset,
        max_steps=config.max_steps,
        batch_size=config.batch_size,
        seed=config.seed,
        resume=resume,
        progress=progress,
    )
    trained = _stage("train", 6, lambda: train(tokens, run_dir, trc), result, progress)
    result.summaries["train"] = result.train_text = trained.text()

    gc = GenerateConfig(
        genre_mix=config.genre_mix, bars=config.bars, seed=config.seed, render=config.render
    )
    pieces = _stage(
        "generate", 7, lambda: generate(run_dir / "best", out_dir, gc), result, progress
    )
    result.pieces = [p.midi_path for p in pieces]
    result.summaries["generate"] = "; ".join(p.text() for p in pieces)

    if config.evaluate:
        report_dir = out_dir / "report"
        result.report_dir = report_dir
        _stage("evaluate", 8, lambda: _evaluate(pieces, midi_dirs, report_dir), result, progress)
        result.summaries["evaluate"] = f"evaluate: report in {report_dir}"
    return result


def _evaluate(pieces: list[Any], midi_dirs: Mapping[str, Path], report_dir: Path) -> Any:
    from midimix.evaluate import EvaluateConfig, evaluate

    reference = {g: sorted(d.rglob("*.mid")) for g, d in midi_dirs.items()}
    generated = {"mix": [p.midi_path for p in pieces]}
    return evaluate(generated, reference, report_dir, EvaluateConfig())


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
    p.add_argument("--data-dir", type=Path, default=d.data_dir, help="working folder (data)")
    p.add_argument("--run-name", default=d.run_name, help="name of the model's run folder")
    p.add_argument("--preset", default=d.preset, help="model size: tiny, small (CPU), base (GPU)")
    p.add_argument("--max-steps", type=int, default=d.max_steps, help="training steps (0: epochs)")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--workers", type=int, default=d.workers, help="worker processes per stage")
    p.add_argument("--hpss", action="store_true", help="drop percussion before transcription")
    p.add_argument(
        "--genre-mix", default=None, help="mix of the generated piece, e.g. lofi=0.7,classical=0.3"
    )
    p.add_argument("--bars", type=int, default=d.bars, help="length of the generated piece")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--no-render", action="store_true", help="write MIDI only")
    p.add_argument("--no-evaluate", action="store_true", help="skip the evaluation report")
    p.add_argument("--no-progress", action="store_true")
    return p


@cli_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from midimix.generate import parse_weights

    genres = parse_genre_paths(args.genre)
    config = PipelineConfig(
        data_dir=args.data_dir,
        run_name=args.run_name,
        preset=args.preset,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        workers=args.workers,
        hpss=args.hpss,
        genre_mix=parse_weights(args.genre_mix) if args.genre_mix else None,
        bars=args.bars,
        seed=args.seed,
        render=not args.no_render,
        evaluate=not args.no_evaluate,
        progress=not args.no_progress,
    )
    result = run(genres, config)
    print(result.text())
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
