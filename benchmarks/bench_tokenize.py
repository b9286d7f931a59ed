"""Tokenize stage against calling miditok directly; BPE compression; REMI vs TSD.

    .venv/bin/python benchmarks/bench_tokenize.py [--pieces 40] [--repeats 3] [--steps 300]

1. Throughput: `midimix.tokenize.tokenize` (manifest, checks, track merging, JSON outputs;
   augmentation off so the work is the same) against `miditok.REMI.encode(path)` on the same
   files with the same tokenizer config, in the same process. Prints medians and the ratio
   (stage throughput / miditok throughput; target >= 0.9).
2. BPE: tokens per beat with and without BPE (learned on the train split), per genre, on the
   held-out validation pieces (target: down >= 40 % on both genres).
3. REMI vs TSD: tokens per beat, and validation loss of a tiny GPT-2 trained for a few hundred
   steps on each; losses are compared per beat (nats/beat), since the token counts differ.

The corpus is made offline: Bach chorales from music21's corpus (classical) and rule-made
jazz-chord pieces written with symusic (lo-fi flavour), cached in --work-dir.
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from symusic.core import NoteTick, ScoreTick, TempoTick, TimeSignatureTick, TrackTick

from midimix.tokenize import (
    GenreTokenizer,
    TokenizeConfig,
    _miditok_config,
    load_score,
    load_sequences,
    score_beats,
    tokenize,
)

TPQ = 480
# ii-V-I-vi style voicings (7th chords) in a few keys
PROGRESSIONS = [
    [[62, 65, 69, 72], [55, 59, 62, 65], [60, 64, 67, 71], [57, 60, 64, 67]],
    [[57, 60, 64, 67], [62, 65, 69, 72], [55, 59, 62, 65], [60, 64, 67, 71]],
    [[64, 67, 71, 74], [57, 61, 64, 67], [62, 66, 69, 73], [59, 62, 66, 69]],
]


def lofi_piece(seed: int, bars: int = 10) -> ScoreTick:
    """A lo-fi-like loop: held 7th chords, a swung bass and a sparse syncopated melody."""
    rng = random.Random(seed)
    prog = PROGRESSIONS[seed % len(PROGRESSIONS)]
    shift = rng.randint(-3, 3)
    score = ScoreTick(TPQ)
    track = TrackTick("keys", 0)
    bar_ticks = 4 * TPQ
    for bar in range(bars):
        chord = [p + shift for p in prog[bar % len(prog)]]
        start = bar * bar_ticks
        for pitch in chord:
            track.notes.append(NoteTick(start, bar_ticks - TPQ // 2, pitch, rng.randint(45, 60)))
        track.notes.append(NoteTick(start, TPQ * 3 // 2, chord[0] - 24, 80))
        track.notes.append(NoteTick(start + TPQ * 5 // 2, TPQ, chord[2] - 24, 72))
        step = 0
        while step < 16:
            if rng.random() < 0.45:
                length = rng.choice([1, 2, 2, 3, 4])
                pitch = rng.choice(chord) + 12 + rng.choice([0, 0, 2, -1])
                track.notes.append(
                    NoteTick(start + step * TPQ // 4, length * TPQ // 4, pitch, rng.randint(70, 95))
                )
                step += length
            else:
                step += 1
    score.tracks.append(track)
    score.tempos.append(TempoTick(0, float(rng.randint(70, 90))))
    score.time_signatures.append(TimeSignatureTick(0, 4, 4))
    return score


def build_corpus(root: Path, pieces: int) -> Path:
    """root/midi/{classical,lofi}/*.mid; lo-fi clips named <song>_<NNNN> (2 per song)."""
    import music21

    midi = root / "midi"
    classical, lofi = midi / "classical", midi / "lofi"
    classical.mkdir(parents=True, exist_ok=True)
    lofi.mkdir(parents=True, exist_ok=True)
    have = len(list(classical.glob("*.mid")))
    if have < pieces:
        for path in music21.corpus.getComposer("bach"):
            name = Path(str(path)).stem
            out = classical / f"{name}.mid"
            if out.exists() or not name.startswith("bwv"):
                continue
            try:
                music21.corpus.parse(str(path)).write("midi", fp=str(out))
            except Exception as error:  # some corpus scores fail to convert: skip them
                print(f"  skipped {name}: {type(error).__name__}", file=sys.stderr)
                continue
            have += 1
            if have >= pieces:
                break
    for k in range(pieces):
        out = lofi / f"song{k // 2:03d}_{k % 2:04d}.mid"
        if not out.exists():
            lofi_piece(k).dump_midi(out)
    return midi


def time_pair(
    first: Callable[[], object], second: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Median seconds of two callables, run alternately after one warm-up each, so that the
    load of a shared machine falls on both alike."""
    first()
    second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def bench_throughput(midi: Path, work: Path, repeats: int) -> None:
    import miditok

    files = sorted(midi.rglob("*.mid"))
    config = TokenizeConfig(transpose_semitones=0, progress=False)
    direct = miditok.REMI(_miditok_config(["classical", "lofi"], config))

    def run_direct() -> None:
        for path in files:
            direct.encode(path)

    def run_stage() -> None:
        out = work / "stage"
        shutil.rmtree(out, ignore_errors=True)
        tokenize(midi, out, config)

    t_direct, t_stage = time_pair(run_direct, run_stage, repeats)
    print(f"throughput on {len(files)} files (median of {repeats}):")
    print(f"  miditok REMI.encode     {t_direct:.3f} s  ({len(files) / t_direct:.0f} files/s)")
    print(f"  midimix tokenize stage  {t_stage:.3f} s  ({len(files) / t_stage:.0f} files/s)")
    print(f"  ratio (stage / miditok throughput): {t_direct / t_stage:.2f}  (target >= 0.9)")


def validation_tpb(tokens_dir: Path, midi: Path) -> dict[str, tuple[float, float]]:
    """genre -> (base tokens/beat, BPE tokens/beat) over the validation pieces."""
    import json

    tokenizer = GenreTokenizer.load(tokens_dir)
    totals: dict[str, list[float]] = {}
    for line in (tokens_dir / "sequences.jsonl").open():
        row = json.loads(line)
        if row["split"] != "validation" or row["augment"]:
            continue
        genre, rel = row["id"].split("/", 1)
        score = tokenizer.prepare(load_score(midi / genre / f"{rel}.mid"))
        base = tokenizer.encode_base(score)
        acc = totals.setdefault(genre, [0.0, 0.0, 0.0])
        acc[0] += len(base)
        acc[1] += len(row["ids"])
        acc[2] += score_beats(score)
    return {g: (a[0] / a[2], a[1] / a[2]) for g, a in totals.items()}


def bench_bpe(midi: Path, work: Path, vocab_sizes: list[int]) -> None:
    print("BPE on the validation pieces (learned on the train split):")
    for size in vocab_sizes:
        out = work / f"bpe{size}"
        shutil.rmtree(out, ignore_errors=True)
        config = TokenizeConfig(
            bpe_vocab_size=size, transpose_semitones=0, validation_fraction=0.2, progress=False
        )
        tokenize(midi, out, config)
        for genre, (base, bpe) in sorted(validation_tpb(out, midi).items()):
            print(
                f"  vocab {size:5d} {genre:10s} tokens/beat {base:6.2f} -> {bpe:6.2f}"
                f"  ({100 * (1 - bpe / base):.0f} % fewer; target >= 40 %)"
            )


def train_tiny_gpt2(tokens_dir: Path, steps: int, seed: int = 0) -> tuple[float, int]:
    """Validation loss (mean nats per predicted body token) and the token count."""
    import torch
    from torch.utils.data import DataLoader
    from transformers import GPT2Config, GPT2LMHeadModel

    from midimix.dataset import TokenDataset, collate

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    tokenizer = GenreTokenizer.load(tokens_dir)
    max_len = 256
    train = TokenDataset(load_sequences(tokens_dir, "train"), tokenizer, max_len, seed=seed)
    val = TokenDataset(load_sequences(tokens_dir, "validation"), tokenizer, max_len)
    config = GPT2Config(
        vocab_size=tokenizer.vocab_size,
        n_positions=max_len,
        n_embd=128,
        n_layer=2,
        n_head=4,
        bos_token_id=tokenizer.bos_id,
        eos_token_id=tokenizer.eos_id,
        pad_token_id=tokenizer.pad_id,
    )
    model = GPT2LMHeadModel(config)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = DataLoader(
        train,
        batch_size=16,
        shuffle=True,
        collate_fn=lambda b: collate(b, tokenizer.pad_id),
        generator=torch.Generator().manual_seed(seed),
    )
    step = 0
    model.train()
    while step < steps:
        for batch in loader:
            loss = model(**batch).loss
            loss.backward()
            optimiser.step()
            optimiser.zero_grad()
            step += 1
            if step >= steps:
                break
    model.eval()
    total_nats, count = 0.0, 0
    with torch.no_grad():
        for batch in DataLoader(val, batch_size=32, collate_fn=lambda b: collate(b, 0)):
            logits = model(**batch).logits[:, :-1]
            labels = batch["labels"][:, 1:].clone()
            labels[:, 0] = -100  # the genre token is given, not predicted
            nll = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="sum"
            )
            total_nats += float(nll)
            count += int((labels != -100).sum())
    return total_nats / count, count


def bench_tokenizations(midi: Path, work: Path, steps: int) -> None:
    print(f"REMI vs TSD (tiny GPT-2, {steps} steps, validation pieces):")
    for name in ("REMI", "TSD"):
        out = work / f"cmp-{name}"
        shutil.rmtree(out, ignore_errors=True)
        config = TokenizeConfig(tokenization=name, validation_fraction=0.2, progress=False)
        result = tokenize(midi, out, config)
        tpb = validation_tpb(out, midi)
        start = time.perf_counter()
        loss, count = train_tiny_gpt2(out, steps)
        seconds = time.perf_counter() - start
        mean_tpb = statistics.mean(v[0] for v in tpb.values())
        tpb_text = ", ".join(f"{g} {v[0]:.2f}" for g, v in sorted(tpb.items()))
        print(
            f"  {name:4s} vocab {GenreTokenizer.load(out).vocab_size:4d}  tokens/beat {tpb_text}"
            f"  val loss {loss:.3f} nats/token ~ {loss * mean_tpb:.2f} nats/beat"
            f"  ({result.num_sequences} sequences, {count} val tokens, {seconds:.0f} s)"
        )
        if not math.isfinite(loss):
            print("  (loss is not finite)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/midimix-bench-tokenize"))
    parser.add_argument("--pieces", type=int, default=40, help="pieces per genre")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bpe-sizes", default="1000,2000")
    parser.add_argument("--steps", type=int, default=300, help="0: skip the GPT-2 comparison")
    parser.add_argument("--only", choices=["throughput", "bpe", "model"], default=None)
    args = parser.parse_args(argv)
    midi = build_corpus(args.work_dir, args.pieces)
    if args.only in (None, "throughput"):
        bench_throughput(midi, args.work_dir, args.repeats)
    if args.only in (None, "bpe"):
        bench_bpe(midi, args.work_dir, [int(s) for s in args.bpe_sizes.split(",")])
    if args.only in (None, "model") and args.steps > 0:
        bench_tokenizations(midi, args.work_dir, args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
