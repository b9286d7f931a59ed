"""transkun (a piano transcriber, weights in its wheel) against midimix's transcription on solo
piano: the chorales of the degraded set, per condition, for quality and speed.

    python benchmarks/bench_piano_engine.py [--chorales 8] [--cache DIR] [--threads 1]
        [--python /path/to/venv/bin/python]

The clips are the tempo set's Bach chorales (`tempo_set.py`: straight piano, no drums, 60-140
BPM, rendered by the render stage's synth to mono 22,050 Hz), each clean, through the lo-fi
chain at 0.5 and 1.0, as MP3 at 128 kb/s and with noise at 15 dB SNR; both transcribers get
the same 30 s of audio. They are scored as `bench_degraded_notes.py` scores them (its
`known_notes` and `scores`): onset F1 and note recall (onset within 50 ms, pitch within a
quarter tone) and F1 with offsets (mir_eval's 20 % offset tolerance), means over clips.

- midimix: its defaults (aligned windows, per-clip onset threshold) through `run_model` and
  `activations_to_notes`, as the stage runs them, on onnxruntime with --threads threads; the
  model is loaded and run once before the clock starts. Beat tracking is not timed (transkun
  has none).
- transkun: its shipped checkpoint (pretrained/2.0.pt and .conf) with its own `transcribe`
  (16 s segments, 8 s hop), torch with --threads threads; the audio is resampled to its
  44.1 kHz with soxr inside the timing, pedal events are dropped. It runs in the interpreter
  given by --python (default: this one) as `--worker`, a mode that imports only numpy, soxr,
  torch and transkun, so transkun can live in a venv of its own. Its notes and seconds are
  cached under --cache (a clip took 39-61 s on one core), so a second run only scores; the
  seconds shown are those measured when the notes were made.

transkun's venv, as measured (transkun 2.0.1, MIT, checkpoint inside the wheel): `python3 -m
venv V; V/bin/pip install torch==2.13.0; V/bin/pip install transkun`. That pulls torchaudio
2.11.1, PyPI's CUDA build for torch 2.11, whose compiled extension does not load beside the CPU
torch 2.13 (libc10_cuda.so missing), so `import torchaudio` fails; transkun only calls its
pure-Python `functional.melscale_fbanks` for a buffer the checkpoint overwrites, so moving
V/lib/python3.11/site-packages/torchaudio/lib/*.so out of the way lets it run. (transkun's own
`transkun` command needs pkg_resources, gone from setuptools 84: the model is called directly.)

Speed: the median seconds per clip and the real-time factor (seconds per second of audio; 1.0
keeps pace with playback), and transkun's over midimix's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ENGINES = ("midimix", "transkun")
METRICS = ("onset_f1", "recall", "offset_f1")


# -- transkun, in whichever interpreter has it ----------------------------------------------


def load_transkun(threads: int) -> Any:
    """transkun's shipped model, on the CPU, for inference."""
    from importlib.resources import files

    import moduleconf
    import torch

    torch.set_num_threads(threads)
    torch.set_grad_enabled(False)
    pretrained = files("transkun") / "pretrained"
    conf = moduleconf.parseFromFile(str(pretrained / "2.0.conf"))
    model = conf["Model"].module.TransKun(conf=conf["Model"].config)
    checkpoint = torch.load(str(pretrained / "2.0.pt"), map_location="cpu")
    state = checkpoint.get("best_state_dict", checkpoint.get("state_dict"))
    model.load_state_dict(state, strict=False)  # as transkun's own command line loads it
    return model.eval()


def transkun_notes(model: Any, audio: np.ndarray, sample_rate_hz: int) -> list[list[float]]:
    """[start s, end s, MIDI pitch, velocity] of the notes (pedal events dropped)."""
    import soxr
    import torch

    x = soxr.resample(audio.astype(np.float32), sample_rate_hz, model.fs).astype(np.float32)
    notes = model.transcribe(torch.from_numpy(x[:, None]))
    return [[n.start, n.end, n.pitch, n.velocity] for n in notes if n.pitch > 0]


def worker(jobs_path: Path, threads: int) -> int:
    """Transcribe every job of jobs_path ([npy, json, sample rate]) not yet written."""
    import warnings

    warnings.filterwarnings("ignore")  # torch.utils.checkpoint's, once per segment
    jobs = json.loads(jobs_path.read_text())
    start = time.perf_counter()
    model = load_transkun(threads)
    load_s = time.perf_counter() - start
    for k, (npy, out, rate) in enumerate(jobs):
        audio = np.load(npy)
        start = time.perf_counter()
        notes = transkun_notes(model, audio, rate)
        seconds = time.perf_counter() - start
        record = {"notes": notes, "seconds": seconds, "threads": threads, "load_s": load_s}
        Path(out).write_text(json.dumps(record))
        print(f"transkun {k + 1}/{len(jobs)} {Path(npy).stem}: {seconds:.1f} s", flush=True)
    return 0


# -- the benchmark --------------------------------------------------------------------------


def run_transkun(clips: list[dict[str, Any]], python: str, threads: int) -> None:
    """Fill the clips' transkun caches that are missing, in `python`."""
    todo = [[str(c["npy"]), str(c["transkun"]), c["rate"]] for c in clips]
    todo = [job for job in todo if not Path(job[1]).exists()]
    if not todo:
        return
    jobs = clips[0]["transkun"].parent / "transkun-jobs.json"
    jobs.write_text(json.dumps(todo))
    if Path(python).absolute() == Path(sys.executable).absolute():  # not resolved: a venv's
        # python is a link to the base interpreter
        worker(jobs, threads)
        return
    command = [python, str(Path(__file__).resolve()), "--worker", str(jobs),
               "--threads", str(threads)]  # fmt: skip
    subprocess.run(command, check=True)


def run_midimix(clips: list[dict[str, Any]], threads: int) -> None:
    from midimix.transcribe import TranscribeConfig, activations_to_notes, load_model, run_model

    config = TranscribeConfig()
    session = load_model(threads)
    warm = np.load(clips[0]["npy"])
    activations_to_notes(run_model(warm, session), config)  # first run's set-up off the clock
    for clip in clips:
        audio = np.load(clip["npy"])
        start = time.perf_counter()
        notes = activations_to_notes(run_model(audio, session), config)
        clip["midimix_seconds"] = time.perf_counter() - start
        clip["midimix_notes"] = [list(n) for n in notes]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chorales", type=int, default=8, help="chorale pieces (x5 conditions)")
    p.add_argument("--cache", type=Path, default=Path("/tmp/midimix-piano-engine"))
    p.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads")
    p.add_argument("--python", default=sys.executable, help="the interpreter that has transkun")
    p.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args.worker, args.threads)

    sys.path.insert(0, str(HERE))
    import bench_degraded_notes as bdn
    import tempo_set as ts

    pieces = ts.build_pieces(n_lofi=0, n_nodrums=0, n_fast=0, n_chorales=args.chorales, n_jazz=0)
    folder = args.cache / f"chorales{args.chorales}"  # the tempos depend on the set's size
    clips = []
    for piece in pieces:
        for condition in ts.CONDITIONS:
            ts.load_audio(piece, condition, folder)  # rendered and degraded once, then cached
            clips.append({
                "piece": piece, "condition": condition, "rate": ts.SAMPLE_RATE_HZ,
                "npy": folder / f"{piece.id}_{condition}.npy",
                "transkun": folder / f"{piece.id}_{condition}_transkun.json",
            })  # fmt: skip
    print(f"{len(pieces)} chorales x {len(ts.CONDITIONS)} conditions = {len(clips)} clips of "
          f"{ts.CLIP_SECONDS:g} s, {args.threads} thread(s) each engine", flush=True)  # fmt: skip
    run_midimix(clips, args.threads)
    run_transkun(clips, args.python, args.threads)
    load_s = []
    for clip in clips:
        reference = bdn.known_notes(clip["piece"])
        record = json.loads(clip["transkun"].read_text())
        clip["transkun_seconds"] = record["seconds"]
        load_s.append(record["load_s"])
        for engine in ENGINES:
            notes = [tuple(n) for n in clip[f"{engine}_notes"]] if engine == "midimix" else [
                (s, e, int(pitch), v / 127) for s, e, pitch, v in record["notes"]]  # fmt: skip
            clip[engine] = bdn.scores(reference, notes)

    seconds = ts.CLIP_SECONDS
    print("\nonset F1 / note recall / F1 with offsets (means over clips); speed: median s per "
          "clip, x real time")  # fmt: skip
    head = " | ".join(f"{e:^23}" for e in ENGINES)
    print(f"{'condition':9} | {head} | d onset F1 | {'midimix s':>9} {'x rt':>5} | "
          f"{'transkun s':>10} {'x rt':>5} | ratio")  # fmt: skip
    groups = [(c, [x for x in clips if x["condition"] == c]) for c in ts.CONDITIONS]
    groups.append(("degraded", [x for x in clips if x["condition"] != "clean"]))
    groups.append(("all", clips))
    for name, chosen in groups:
        means = {e: {m: statistics.mean(c[e][m] for c in chosen) for m in METRICS}
                 for e in ENGINES}  # fmt: skip
        cells = " | ".join(" / ".join(f"{means[e][m]:.3f}" for m in METRICS) for e in ENGINES)
        gain = means["transkun"]["onset_f1"] - means["midimix"]["onset_f1"]
        mm = statistics.median(c["midimix_seconds"] for c in chosen)
        tk = statistics.median(c["transkun_seconds"] for c in chosen)
        print(f"{name:9} | {cells} | {gain:+10.3f} | {mm:9.2f} {mm / seconds:5.3f} | "
              f"{tk:10.1f} {tk / seconds:5.2f} | {tk / mm:5.0f}x")  # fmt: skip
    wins = sum(
        statistics.mean(c["transkun"]["onset_f1"] - c["midimix"]["onset_f1"] for c in chosen)
        >= 0.05
        for _, chosen in groups[: len(ts.CONDITIONS)]
    )
    load = statistics.median(load_s)
    print(f"\ntranskun's onset F1 >= 0.05 above midimix's in {wins} of {len(ts.CONDITIONS)} "
          f"conditions; transkun's model load: median {load:.1f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
