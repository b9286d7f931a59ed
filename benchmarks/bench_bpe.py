"""More music per token? The same model trained on token data sets with and without BPE, or
with another context length, for the same steps of the same tokens per step (within a few
percent the same compute), scored by validation NLL per note, which does not depend on the
vocabulary.

    python benchmarks/bench_bpe.py --tokens plain=data/default-build/tokens \
        --tokens bpe1000=data/tokens-bpe1000 --tokens plain256=data/default-build/tokens@256 \
        --steps 300 [--parallel]

Each data set must hold the same pieces (the same corpus, seed and validation fraction): only
the vocabulary differs. `DIR@LENGTH` trains with chunks of LENGTH tokens instead of the
preset's context, and a batch as much larger as keeps the tokens per step (validation is cut
the same way, so the figure is what a model of that context scores). With --parallel the runs
go side by side, one thread each, so they share the machine's load alike. Prints, per data
set: tokens per note, wall time, validation loss per token and per note (nats), and the ratio
to the first data set.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def train_command(
    tokens: Path, run_dir: Path, args: argparse.Namespace, context: int | None = None
) -> list[str]:
    from midimix.model import PRESETS

    full = PRESETS[args.preset].context_length
    length = context or full
    batch = args.batch * full // length  # the same tokens per step
    return [sys.executable, "-m", "midimix", "train", "--tokens-dir", str(tokens),
            "--run-dir", str(run_dir), "--preset", args.preset, "--max-steps", str(args.steps),
            "--batch-size", str(batch), "--max-seq-len", str(length), "--lr", "1e-3",
            "--warmup-steps",
            str(max(args.steps // 10, 1)), "--dropout", "0", "--eval-every", str(args.steps),
            "--threads", "1" if args.parallel else "0", "--no-progress"]  # fmt: skip


def per_note(run_dir: Path, tokens: Path) -> tuple[float, float, float]:
    """(NLL per token, per note, tokens per note) on the validation split."""
    from midimix.sweep import model_figures

    nll = model_figures(run_dir / "best", {}, tokens)["nll"]
    notes = sum(v["notes"] for v in nll.values())
    total = sum(v["per_note"] * v["notes"] for v in nll.values())
    per_token = {g: v["per_token"] for g, v in nll.items()}
    tokens_scored = sum(v["per_note"] * v["notes"] / per_token[g] for g, v in nll.items())
    return total / tokens_scored, total / notes, tokens_scored / notes


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", action="append", required=True, help="NAME=DIR, repeat")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--preset", default="small")
    p.add_argument("--parallel", action="store_true")
    args = p.parse_args()
    from midimix.model import PRESETS

    sets, contexts = {}, {}
    for item in args.tokens:
        name, where = item.split("=", 1)
        folder, _, length = where.partition("@")
        sets[name], contexts[name] = folder, int(length) if length else None
    with tempfile.TemporaryDirectory() as tmp:
        runs = {name: Path(tmp) / name for name in sets}
        started, seconds = {}, {}
        processes = {}
        for name, tokens in sets.items():
            started[name] = time.perf_counter()
            command = train_command(Path(tokens), runs[name], args, contexts[name])
            processes[name] = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
            if not args.parallel:
                processes[name].wait()
                seconds[name] = time.perf_counter() - started[name]
        while len(seconds) < len(processes):  # each run's own wall time, side by side too
            for name, process in processes.items():
                if name not in seconds and process.poll() is not None:
                    seconds[name] = time.perf_counter() - started[name]
            time.sleep(0.5)
        for name, process in processes.items():
            if process.returncode != 0:
                sys.exit(f"error: training on {sets[name]} failed")
        first = None
        for name, tokens in sets.items():
            token_nll, note_nll, ratio = per_note(runs[name], Path(tokens))
            first = first or note_nll
            length = contexts[name] or PRESETS[args.preset].context_length
            rows = args.batch * PRESETS[args.preset].context_length // length
            print(f"{name}: {ratio:.2f} tokens/note, {args.steps} steps of {rows} x {length} in "
                  f"{seconds[name]:.0f} s; validation {token_nll:.3f} nats/token, "
                  f"{note_nll:.3f} nats/note ({note_nll / first:.2f}x)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
