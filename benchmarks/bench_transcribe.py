"""Transcription benchmark: quality on the round-trip set and speed against basic-pitch.

    .venv/bin/python benchmarks/bench_transcribe.py [--pieces 20] [--work /tmp/midimix-bench]

Parts (all in one run, so ratios compare like with like):
- sweep: note thresholds scored by onset F1 on the set (model run once per clip);
- quality: midimix's defaults vs basic-pitch's defaults, through the whole stage (MIDI written
  with the beat tempo map and read back); tempo within 2 % (double/half counted apart); how far
  onsets sit from the beat grid; --hpss on the lo-fi pieces (which have drums);
- speed: a loop over basic_pitch.inference.predict (model loaded once, ONNX) vs the stage, and
  the notes of both with the tempo map and midimix's thresholds off (onset F1 >= 0.99).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import logging
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pretty_midi

sys.path.insert(0, str(Path(__file__).resolve().parent))
import roundtrip_set as rs  # noqa: E402

from midimix.manifest import StageSummary  # noqa: E402
from midimix.transcribe import (  # noqa: E402
    TranscribeConfig,
    activations_to_notes,
    load_clip,
    load_model,
    model_path,
    run_model,
    transcribe,
)

BASIC_PITCH_DEFAULTS: dict[str, Any] = {
    "onset_threshold": 0.5,
    "frame_threshold": 0.3,
    "min_note_ms": 127.7,
    "melodia": True,
}
# the grid each genre's pieces are written on: chorales in 16ths, swung lo-fi in triplets
GRID_BEATS = {"classical": 0.25, "lofi": 1 / 3}
SWEEP: dict[str, tuple[Any, ...]] = {
    "onset_threshold": (0.5, 0.6, 0.7, 0.8, 0.9),
    "frame_threshold": (0.2, 0.3, 0.4),
    "min_note_ms": (58.0, 92.9, 127.7),
    "melodia": (False, True),
}


def as_mir(notes: list[tuple[float, float, int, float]]) -> tuple[np.ndarray, np.ndarray]:
    if not notes:
        return np.zeros((0, 2)), np.zeros(0)
    intervals = np.array([[s, max(e, s + 1e-3)] for s, e, _, _ in notes])
    return intervals, np.array([pretty_midi.note_number_to_hz(p) for _, _, p, _ in notes])


def mean_scores(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def fmt(scores: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.3f}" for k, v in scores.items())


def sweep(pieces: list[rs.Piece]) -> None:
    session = load_model()
    refs = [rs.known_notes(p.midi_path) for p in pieces]
    acts = [run_model(load_clip(p.clip_path)[0], session) for p in pieces]
    results = []
    for values in itertools.product(*SWEEP.values()):
        config = TranscribeConfig(**dict(zip(SWEEP, values, strict=True)))
        rows = [
            rs.score_notes(r, as_mir(activations_to_notes(a, config)))
            for r, a in zip(refs, acts, strict=True)
        ]
        results.append((mean_scores(rows), values))
    results.sort(key=lambda r: -r[0]["onset_f1"])
    print(
        f"sweep over {len(results)} settings on {len(pieces)} clips (mean over clips), best first:"
    )
    for scores, values in results[:8]:
        print(f"  {dict(zip(SWEEP, values, strict=True))}: {fmt(scores)}")
    bp = next(s for s, v in results if dict(zip(SWEEP, v, strict=True)) == BASIC_PITCH_DEFAULTS)
    print(f"  basic-pitch's thresholds on the same activations: {fmt(bp)}")


def stage_quality(pieces: list[rs.Piece], work: Path, name: str, config: TranscribeConfig) -> dict:
    out = work / f"midi-{name}"
    shutil.rmtree(out, ignore_errors=True)
    genres = {p.genre for p in pieces}
    summary = transcribe({g: work / "clips" / g for g in sorted(genres)}, out, config)
    records = {r["id"]: r for r in summary.records}
    per_genre: dict[str, list[dict[str, float]]] = {}
    for p in pieces:
        est = rs.midi_notes(out / p.genre / f"{p.id}.mid")
        per_genre.setdefault(p.genre, []).append(rs.score_notes(rs.known_notes(p.midi_path), est))
    for genre, rows in per_genre.items():
        print(f"  {name:<22} {genre:<9} {fmt(mean_scores(rows))}")
    all_rows = [r for rows in per_genre.values() for r in rows]
    if len(per_genre) > 1:
        print(f"  {name:<22} {'all':<9} {fmt(mean_scores(all_rows))}")
    return {"records": records, "out": out, "scores": per_genre}


def tempo_report(pieces: list[rs.Piece], records: dict, out: Path, off: Path) -> None:
    within, double_half, n = 0, 0, len(pieces)
    errors = []
    for p in pieces:
        found = records[p.id]["tempo_bpm"]
        ratio = found / p.tempo_bpm
        errors.append(abs(ratio - 1))
        within += abs(ratio - 1) <= 0.02
        double_half += any(abs(ratio - m) <= 0.02 * m for m in (0.5, 2.0))
    print(
        f"tempo: {within}/{n} within 2 % ({100 * within / n:.0f} %), {double_half} at double/half, "
        f"median error {100 * statistics.median(errors):.2f} %"
    )
    for genre, step in GRID_BEATS.items():
        chosen = [p for p in pieces if p.genre == genre]
        ours = [grid_distance(out / genre / f"{p.id}.mid", step) for p in chosen]
        fixed = [grid_distance(off / genre / f"{p.id}.mid", step) for p in chosen]
        original = [grid_distance(p.midi_path, step) for p in chosen]
        print(
            f"beat grid, {genre}: mean distance of pitched onsets to the nearest {step:.3g} beat: "
            f"beat tempo map {np.mean(ours):.4f}, fixed 120 BPM {np.mean(fixed):.4f}, original "
            f"MIDI {np.mean(original):.4f} (at random: {step / 4:.4f})"
        )


def grid_distance(midi_path: Path, step_beats: float) -> float:
    """Mean distance in beats from each pitched onset to the nearest multiple of `step_beats`
    on the file's own tempo map."""
    import symusic

    score: Any = symusic.Score(str(midi_path))
    beats = (
        np.array([n.time for t in score.tracks if not t.is_drum for n in t.notes])
        / score.ticks_per_quarter
    )
    steps = beats / step_beats
    return float(np.mean(np.abs(steps - np.round(steps))) * step_beats) if len(beats) else 0.0


def speed(pieces: list[rs.Piece], work: Path, workers: int, repeats: int) -> None:
    """The predict loop and the stage in turn, `repeats` rounds; each ratio compares runs of
    the same round, and the medians over rounds are printed last."""
    logging.disable(logging.WARNING)
    from basic_pitch.inference import Model, predict

    model = Model(str(model_path()))
    with contextlib.redirect_stdout(io.StringIO()):  # predict prints a line per file
        predict(pieces[0].clip_path, model)  # warm-up: numba compilation, ONNX graph set-up
    # the stage's warm-up, likewise outside the timing: its one-time imports (librosa's beat
    # tracking, about 3 s, in the server that forks the workers) on two clips; every timed
    # run below still starts its own workers and model sessions
    warm = TranscribeConfig(progress=False, workers=workers)
    timed_stage(work, "midi-warm-up", warm, [p.clip_path for p in pieces[:2]])
    audio_s = sum(len(load_clip(p.clip_path)[0]) / rs.SAMPLE_RATE_HZ for p in pieces)
    print(f"speed on {len(pieces)} clips ({audio_s:.0f} s of audio), {repeats} rounds:")
    ratios: dict[str, list[float]] = {}
    for round_ in range(1, repeats + 1):
        theirs, peer_times = {}, []
        for p in pieces:
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                _, _, events = predict(p.clip_path, model)
            peer_times.append(time.perf_counter() - start)
            theirs[p.id] = [(float(s), float(e), int(n), float(a)) for s, e, n, a, _ in events]
        peer_s = sum(peer_times)
        print(f"  round {round_}: basic-pitch predict loop {peer_s:.1f} s")
        runs: list[tuple[str, TranscribeConfig]] = []
        for layout in ("basic-pitch", "aligned"):
            same = TranscribeConfig(
                **BASIC_PITCH_DEFAULTS, tempo_map="off", window_layout=layout, progress=False
            )
            same.workers = workers
            runs.append((f"basic-pitch's thresholds, no tempo map, {layout} windows", same))
        for n_workers, layout in ((1, "aligned"), (workers, "basic-pitch"), (workers, "aligned")):
            config = TranscribeConfig(progress=False, workers=n_workers, window_layout=layout)
            runs.append((f"defaults + beat tracking, {layout} windows", config))
        for name, config in runs:
            name = f"{name}, {config.workers} worker{'s' * (config.workers > 1)}"
            summary, cpu_s = timed_stage(work, "midi-speed", config)
            ratios.setdefault(name, []).append(peer_s / summary.seconds)
            line = (
                f"    {name}: {summary.seconds:.1f} s -> {peer_s / summary.seconds:.2f}x, "
                f"{audio_s / summary.seconds:.0f}x real time; {cpu_s:.1f} CPU s in clips"
            )
            if config.tempo_map == "off":
                f1 = [
                    rs.score_notes(as_mir(theirs[p.id]), midi_notes(summary, p))["onset_f1"]
                    for p in pieces
                ]
                line += f"; onset F1 vs predict: min {min(f1):.4f}, mean {np.mean(f1):.4f}"
            print(line)
        if round_ == 1:
            cold_start(work, peer_s, audio_s, workers)
    print("  median over rounds of the ratio to the predict loop of the same round (min-max):")
    for name, values in ratios.items():
        print(f"    {name}: {statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})")


def cold_start(work: Path, peer_s: float, audio_s: float, workers: int) -> None:
    """The command line from a fresh process: imports and warm-up included (the peer's own
    imports and warm-up are not in its time)."""
    import subprocess

    out = work / "midi-cold"
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "midimix.transcribe", "--clips-dir", str(work / "clips")]
    command += ["--midi-dir", str(out), "--workers", str(workers), "--no-progress"]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    print(
        f"    `python -m midimix.transcribe --workers {workers}` from a fresh process: "
        f"{seconds:.1f} s -> {peer_s / seconds:.2f}x the warm predict loop, "
        f"{audio_s / seconds:.1f}x real time"
    )


def timed_stage(
    work: Path, name: str, config: TranscribeConfig, only: list[Path] | None = None
) -> tuple[StageSummary, float]:
    """The stage on the set's clips (or on the clips `only`), from an empty output folder;
    with the CPU seconds its clips took (worker start-up not included)."""
    out = work / name
    shutil.rmtree(out, ignore_errors=True)
    clips: Path | dict[str, Path] = work / "clips"
    if only is not None:
        clips = {"some": out / "input"}
        clips["some"].mkdir(parents=True)
        for path in only:
            shutil.copy(path, clips["some"])
    summary = transcribe(clips, out, config)
    return summary, sum(r["cpu_seconds"] for r in summary.records)


def midi_notes(summary: StageSummary, piece: rs.Piece) -> tuple[np.ndarray, np.ndarray]:
    (record,) = [r for r in summary.records if r["id"] == piece.id]
    return rs.midi_notes(Path(record["output"]))


def batching(pieces: list[rs.Piece], repeats: int = 3) -> None:
    """Windows per inference call: one at a time vs all of a clip, vs two clips at once."""
    session = load_model()
    audio = [load_clip(p.clip_path)[0] for p in pieces[:2]]
    two_clips = np.concatenate(audio)  # as many windows as two clips batched together
    for batch in (1, 4, 19, 38):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run_model(two_clips, session, batch)
            times.append((time.perf_counter() - start) / 2)
        print(
            f"  {batch:>2} windows per call: median {statistics.median(times):.2f} s per 30 s clip"
        )


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress in logs
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pieces", type=int, default=20, help="clips of 30 s (half classical)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/midimix-bench-transcribe"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", choices=("sweep", "quality", "speed"), default=None)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the speed part")
    args = parser.parse_args()
    tempos = tuple(float(t) for t in np.round(np.linspace(70, 140, max(1, args.pieces // 2))))
    start = time.perf_counter()
    args.work = args.work / f"set{len(tempos)}"  # a folder holding exactly this set's clips
    pieces = rs.build_set(args.work, tempos_bpm=tempos)
    print(
        f"round-trip set: {len(pieces)} clips at {tempos} BPM ({time.perf_counter() - start:.0f} s)"
    )
    if args.only in (None, "sweep"):
        sweep(pieces)
    if args.only in (None, "quality"):
        quality(pieces, args.work)
    if args.only in (None, "speed"):
        print("batching (onnxruntime, one session, default threads):")
        batching(pieces)
        speed(pieces, args.work, args.workers, args.repeats)


def quality(pieces: list[rs.Piece], work: Path) -> None:
    print("onset/offset scores through the whole stage (MIDI read back):")
    # basic-pitch's own: its thresholds on its window layout
    basic_pitch = TranscribeConfig(
        **BASIC_PITCH_DEFAULTS, window_layout="basic-pitch", progress=False
    )
    stage_quality(pieces, work, "basic-pitch defaults", basic_pitch)
    ours = stage_quality(pieces, work, "midimix defaults", TranscribeConfig(progress=False))
    lofi = [p for p in pieces if p.has_drums]
    hpss = stage_quality(lofi, work, "midimix --hpss", TranscribeConfig(hpss=True, progress=False))
    plain, separated = mean_scores(ours["scores"]["lofi"]), mean_scores(hpss["scores"]["lofi"])
    gain = {k: separated[k] - plain[k] for k in ("precision", "recall")}
    print(
        f"  --hpss on lo-fi with drums: precision {gain['precision']:+.3f}, "
        f"recall {gain['recall']:+.3f}"
    )
    fixed = TranscribeConfig(tempo_map="off", progress=False)
    off = stage_quality(pieces, work, "tempo map off (120)", fixed)
    tempo_report(pieces, ours["records"], ours["out"], off["out"])


if __name__ == "__main__":
    main()
