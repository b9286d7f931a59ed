"""Evaluation speed: feature extraction against pretty_midi, and the sweep timing target.

    .venv/bin/python benchmarks/bench_evaluate.py [--model runs/x/best] [--pieces 20]

1. Features: midimix.features.extract_features (symusic) against the same kind of figures
   computed with pretty_midi (load, pitch-class histogram, piano-roll polyphony, tempo), on
   the same files; prints medians per file and the ratio.
2. Sweep: `sweep` with 5 weights x N pieces (logits), report included, timed end to end.
   Target: <= 600 s for 5 x 20 with a small model on a 2-core CPU. Without --model the
   embedded default model is used, or else an untrained 'small' GPT-2 (which writes longer
   bars than a trained one, so its time is an upper bound); the script says which.
References: data/corpus/<genre>/ when it exists, else pieces made here (rule-made lo-fi from
midimix.corpus.lofi, straight diatonic piano pieces for classical).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from midimix.evaluate import EvaluateConfig, midi_files  # noqa: E402
from midimix.features import extract_features  # noqa: E402
from midimix.sweep import SweepConfig, sweep  # noqa: E402

CORPUS = Path("data/corpus")


def reference_sets(tmp: Path, count: int) -> tuple[dict[str, list[Path]], str]:
    found = {g: midi_files(CORPUS / g) for g in ("lofi", "classical") if (CORPUS / g).is_dir()}
    if len(found) == 2 and all(found.values()):
        return found, f"{CORPUS}"
    from midi_fixtures import straight_piece, write

    from midimix.corpus.lofi import generate_lofi

    lofi = [write(generate_lofi(i)[0], tmp / "lofi" / f"{i}.mid") for i in range(count)]
    classical = found.get("classical") or [
        write(straight_piece(i), tmp / "classical" / f"{i}.mid") for i in range(count)
    ]
    return {"lofi": lofi, "classical": classical}, "made here (lo-fi rules) + classical"


def pretty_midi_features(path: Path) -> dict[str, float]:
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(str(path))
    pitches = [n.pitch for i in pm.instruments if not i.is_drum for n in i.notes]
    roll = pm.get_piano_roll(fs=100) > 0
    sounding = roll.sum(axis=0)
    return {
        "pitch_range": float(max(pitches) - min(pitches)),
        "pitch_classes": float(np.count_nonzero(pm.get_pitch_class_histogram())),
        "polyphony": float(sounding[sounding > 0].mean()),
        "tempo": float(pm.get_tempo_changes()[1][0]),
    }


def time_per_file(fn: Callable[[Path], object], paths: list[Path]) -> float:
    seconds = []
    for path in paths:
        start = time.perf_counter()
        fn(path)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def model_dir(explicit: Path | None, tmp: Path) -> tuple[Path, str]:
    from midimix.generate import DEFAULT_MODEL_DIR

    if explicit is not None:
        return explicit, str(explicit)
    if (DEFAULT_MODEL_DIR / "model.safetensors").is_file():
        return DEFAULT_MODEL_DIR, "embedded default model"
    import torch

    from midimix.model import build_model, save_checkpoint
    from midimix.tokenize import GenreTokenizer, TokenizeConfig

    tokenizer = GenreTokenizer.build(["classical", "lofi"], TokenizeConfig())
    torch.manual_seed(0)
    model = build_model(
        tokenizer.vocab_size, "small", tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id
    )
    folder = save_checkpoint(model, tokenizer, {"step": 0}, tmp / "untrained")
    return folder, "untrained 'small' GPT-2 (upper bound: random bars run long)"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--pieces", type=int, default=20)
    p.add_argument("--bars", type=int, default=8)
    p.add_argument("--feature-files", type=int, default=60)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        reference, source = reference_sets(tmp, 60)
        files = [f for paths in reference.values() for f in paths[: args.feature_files // 2]]
        ours = time_per_file(extract_features, files)
        peer = time_per_file(pretty_midi_features, files)
        print(f"features on {len(files)} files ({source}):")
        print(f"  midimix.features  median {ours * 1000:7.2f} ms/file (33 features)")
        print(f"  pretty_midi       median {peer * 1000:7.2f} ms/file (4 features)")
        print(f"  ratio pretty_midi / midimix: {peer / ours:.2f}x")

        folder, what = model_dir(args.model, tmp)
        config = SweepConfig(pieces=args.pieces, bars=args.bars, evaluate=EvaluateConfig())
        start = time.perf_counter()
        report = sweep(folder, reference, tmp / "sweep", config)
        seconds = time.perf_counter() - start
        points = report["sweep"]["methods"]["logits"]
        print(f"sweep 5 weights x {args.pieces} pieces x {args.bars} bars, {what}:")
        print("  P(lofi): " + ", ".join(f"w={p['weight']:g}: {p['mean']:.2f}" for p in points))
        print(f"  classifier CV accuracy {report['classifier']['cv_accuracy']:.3f}")
        verdict = "met" if seconds <= 600 else "NOT met"
        print(f"  wall {seconds:.0f} s (target <= 600 s: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
