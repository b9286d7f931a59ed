"""Training throughput on the CPU: midimix.train against a plain Hugging Face `Trainer` on
the same model, data, batch, schedule and thread count, in the same process.

    .venv/bin/python benchmarks/bench_train.py [--preset small] [--steps 20] [--repeats 3]
        [--precision auto|bf16|fp32] [--trainer-bf16]

Both train a freshly built GPT-2 (same seed) on the same synthetic two-genre token set; the
tokens counted are the real (non-padding) tokens of the batches. midimix's figure is its own
step time (collate, forward, backward, optimizer), the Trainer's is from train begin to end
with evaluation, logging and saving off. Runs alternate, in an order reversed every round;
medians and their ratio are printed.

Precision: midimix trains in bf16 mixed precision where the CPU computes bf16 natively
(`--precision auto`, its default) and the Trainer in fp32 (its default); `--trainer-bf16` adds
a third contender, the Trainer with `bf16=True`, and `--precision fp32` compares fp32 to fp32.
The lines printed say which precision each ran in.
"""

from __future__ import annotations

import argparse
import functools
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from symusic.core import NoteTick, ScoreTick, TrackTick

TPQ = 480


def synthetic_piece(genre: str, seed: int, bars: int) -> ScoreTick:
    """Quarter notes, in the bass (low) or high up (high). Every bar has the same number of
    tokens, so nearly every chunk fills the context and batches carry almost no padding:
    the batch order each trainer draws then cannot change its token count."""
    rng = random.Random(f"{genre}:{seed}")
    pitches = range(36, 52) if genre == "low" else range(76, 96)
    score, track = ScoreTick(TPQ), TrackTick("", 0, False)
    for tick in range(0, bars * 4 * TPQ, TPQ):
        track.notes.append(NoteTick(tick, TPQ, rng.choice(pitches), 80))
    score.tracks.append(track)
    return score


def make_tokens(root: Path, pieces: int, bars: int) -> Path:
    from midimix.tokenize import TokenizeConfig, tokenize

    for genre in ("low", "high"):
        (root / "midi" / genre).mkdir(parents=True)
        for i in range(pieces):
            synthetic_piece(genre, i, bars).dump_midi(root / "midi" / genre / f"{genre}{i:03d}.mid")
    config = TokenizeConfig(transpose_semitones=1, validation_fraction=0.1, progress=False)
    tokenize(root / "midi", root / "tokens", config)
    return root / "tokens"


def run_midimix(tokens_dir: Path, run_dir: Path, config: Any) -> float:
    from midimix.train import train

    return train(tokens_dir, run_dir, config).tokens_per_second


def run_trainer(tokens_dir: Path, out_dir: Path, config: Any, bf16: bool = False) -> float:
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from midimix.dataset import TokenDataset, collate
    from midimix.model import build_model
    from midimix.tokenize import GenreTokenizer, load_sequences

    torch.set_num_threads(config.threads)
    tokenizer = GenreTokenizer.load(tokens_dir)
    train_set = load_sequences(tokens_dir, "train")
    dataset = TokenDataset(train_set, tokenizer, config.seq_len, config.any_prob, config.seed)
    torch.manual_seed(config.seed)
    model = build_model(
        tokenizer.vocab_size,
        config.model_config(),  # the preset with the run's dropout, as midimix builds it
        tokenizer.pad_id,
        tokenizer.bos_id,
        tokenizer.eos_id,
    )
    tokens = [0]

    def counting_collate(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        out = collate(batch, tokenizer.pad_id)
        tokens[0] += int(out["attention_mask"].sum())
        return out

    clock: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
            tokens[0] = 0
            clock["start"] = time.perf_counter()

        def on_train_end(self, *args: Any, **kwargs: Any) -> None:
            clock["end"] = time.perf_counter()

    args = TrainingArguments(
        output_dir=str(out_dir),
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.lr,
        warmup_steps=min(config.warmup_steps, config.max_steps // 2),
        lr_scheduler_type="cosine",
        weight_decay=config.weight_decay,
        adam_beta2=0.95,
        max_grad_norm=config.grad_clip,
        seed=config.seed,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        bf16=bf16,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=counting_collate,
        callbacks=[Clock()],
    )
    trainer.train()
    return tokens[0] / (clock["end"] - clock["start"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--preset", default="small", help="model preset (default small: the CPU size)"
    )
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-seq-len", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads, the same for both")
    parser.add_argument(
        "--dropout",
        type=float,
        default=None,
        help="the model's dropout for both (default: the preset's, 0.1 for small; the embedded "
        "model's recipe trains with 0)",
    )
    parser.add_argument(
        "--precision", default="auto", choices=("auto", "bf16", "fp32"), help="midimix's"
    )
    parser.add_argument(
        "--trainer-bf16", action="store_true", help="also time the Trainer with bf16=True"
    )
    args = parser.parse_args(argv)

    from transformers.utils import logging as hf_logging

    from midimix.train import TrainConfig
    from midimix.train_loop import cpu_has_bf16

    hf_logging.set_verbosity_error()
    config = TrainConfig(
        preset=args.preset,
        max_steps=args.steps,
        batch_size=args.batch_size,
        max_seq_len=args.max_seq_len,
        eval_every=10**9,
        threads=args.threads,
        warmup_steps=5,
        progress=False,
        precision=args.precision,
        dropout=args.dropout,
    )
    ours_bf16 = args.precision != "fp32" and cpu_has_bf16()
    runners: dict[str, Any] = {"midimix": run_midimix, "hf_trainer": run_trainer}
    if args.trainer_bf16:
        runners["hf_trainer_bf16"] = functools.partial(run_trainer, bf16=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tokens_dir = make_tokens(root, pieces=8, bars=126)
        results: dict[str, list[float]] = {name: [] for name in runners}
        for repeat in range(args.repeats + 1):  # the first round warms caches and is dropped
            order = list(runners.items())
            for name, runner in order if repeat % 2 else order[::-1]:  # no contender always first
                rate = runner(tokens_dir, root / f"{name}{repeat}", config)
                print(f"  round {repeat} {name:<10} {rate:10,.0f} tokens/s", flush=True)
                if repeat:
                    results[name].append(rate)
    medians = {name: statistics.median(rates) for name, rates in results.items()}
    print(
        f"preset {args.preset}, {args.steps} steps x batch {args.batch_size} x {args.max_seq_len} "
        f"tokens, {args.threads} thread(s), dropout {config.model_config().dropout}, "
        f"{args.repeats} runs each"
    )
    precisions = {"midimix": "bf16 mixed" if ours_bf16 else "fp32",
                  "hf_trainer": "fp32", "hf_trainer_bf16": "bf16 mixed"}  # fmt: skip
    for name, median in medians.items():
        print(f"{name:<16} ({precisions[name]:<10}) median {median:10,.0f} tokens/s")
    for name in medians:
        if name != "midimix":
            ratio = medians["midimix"] / medians[name]
            print(f"ratio midimix / {name}: {ratio:.2f}x (target >= 1.5x against hf_trainer)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
