"""Generation speed against Hugging Face `generate`, and validity over many sequences.

    python benchmarks/bench_generate.py [--model DIR] [--tokens 256] [--repeats 5] [--valid 500]

1. Tokens/s for one genre: midimix's sampling loop (KV cache, grammar mask, top-p) against
   `model.generate(do_sample=True, use_cache=True, top_p=0.95)` on the same weights, the same
   prefix [BOS, Genre_lofi] and the same number of new tokens (target: >= 2.5x). midimix
   decodes with the lean step of `midimix.fast_decode`; `--plain` runs its loop through the
   model's own forward instead, to show what the lean step brings.
2. A two-genre `logits` mix (two rows per sample, one batched forward pass per step) against
   the single-genre speed (target: >= 0.8x); the embedding mix for reference.
3. `--valid` sequences over mixed settings (methods, rules, guidance, weights, schedules,
   temperatures, 1-8 bars): the share that decodes to MIDI with at least one note and exactly
   the requested bars (target: 100%).
Runs interleave the contenders and print medians; a ratio is the median of the ratios
within each round (the machine is shared and its speed drifts between rounds). Without
--model: the embedded default model if present, else an untrained model of the `small`
preset (speed does not depend on training; random weights are the hardest case for the
grammar).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from midimix import fast_decode
from midimix.generate import (
    DEFAULT_MODEL_DIR,
    MixPlan,
    Sampling,
    sample_tokens,
    tokenizer_grammar,
)
from midimix.model import build_model, load_checkpoint, save_checkpoint
from midimix.sampling import interpolate_keyframes
from midimix.tokenize import GenreTokenizer, TokenizeConfig


def model_folder(args: argparse.Namespace, tmp: Path) -> Path:
    if args.model is not None:
        return Path(args.model)
    if (DEFAULT_MODEL_DIR / "model.safetensors").is_file():
        return DEFAULT_MODEL_DIR
    tokenizer = GenreTokenizer.build(["classical", "lofi"], TokenizeConfig())
    torch.manual_seed(0)
    model = build_model(
        tokenizer.vocab_size, args.preset, tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id
    )
    return save_checkpoint(model, tokenizer, {"step": 0}, tmp / "untrained")


def time_ours(model, grammar, plan: MixPlan, bos_id: int, tokens: int, seed: int) -> float:
    start = time.perf_counter()
    result = sample_tokens(
        model,
        grammar,
        plan,
        Sampling(seed=seed),
        bos_id=bos_id,
        target_bars=None,
        max_new_tokens=tokens,
    )
    seconds = time.perf_counter() - start
    assert len(result.ids[0]) == tokens
    return tokens / seconds


def time_hf(model, bos_id: int, genre_id: int, pad_id: int, tokens: int, seed: int) -> float:
    torch.manual_seed(seed)
    prefix = torch.tensor([[bos_id, genre_id]])
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            prefix,
            attention_mask=torch.ones_like(prefix),
            do_sample=True,
            use_cache=True,
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            top_p=0.95,
            top_k=0,
            pad_token_id=pad_id,
        )
    seconds = time.perf_counter() - start
    assert out.shape[1] - 2 == tokens
    return tokens / seconds


def speed(model, tokenizer, grammar, args: argparse.Namespace) -> dict[str, float]:
    lofi, classical = tokenizer.genre_id("lofi"), tokenizer.genre_id("classical")
    one = MixPlan("logits", [lofi], torch.ones(1, 1))
    two = MixPlan("logits", [lofi, classical], torch.tensor([[0.7, 0.3]]))
    emb = MixPlan("embedding", [lofi, classical], torch.tensor([[0.7, 0.3]]))
    runs: dict[str, list[float]] = {"hf": [], "ours": [], "mix2": [], "emb": []}
    tokens, bos = args.tokens, tokenizer.bos_id
    time_ours(model, grammar, one, bos, 16, 0)  # warm-up
    time_hf(model, bos, lofi, tokenizer.pad_id, 16, 0)
    for r in range(args.repeats):
        runs["hf"].append(time_hf(model, bos, lofi, tokenizer.pad_id, tokens, r))
        runs["ours"].append(time_ours(model, grammar, one, bos, tokens, r))
        runs["mix2"].append(time_ours(model, grammar, two, bos, tokens, r))
        runs["emb"].append(time_ours(model, grammar, emb, bos, tokens, r))
    medians = {name: statistics.median(values) for name, values in runs.items()}
    # ratios within a round (same moment of a shared, noisy machine), then their median
    for a, b in (("ours", "hf"), ("mix2", "ours"), ("emb", "ours")):
        pairs = zip(runs[a], runs[b], strict=True)
        medians[f"{a}/{b}"] = statistics.median(x / y for x, y in pairs)
    return medians


Setting = tuple[str, str, float, float, int, float, dict[str, float] | str]
SETTINGS: list[Setting] = [  # method, rule, guidance, temperature, top_k, top_p, mix/schedule
    ("logits", "product", 0.0, 1.0, 0, 0.95, {"lofi": 0.7, "classical": 0.3}),
    ("logits", "mixture", 0.0, 1.0, 0, 0.95, {"lofi": 0.5, "classical": 0.5}),
    ("logits", "product", 1.5, 1.0, 0, 0.95, {"lofi": 0.3, "classical": 0.7}),
    ("logits", "product", 0.0, 1.3, 20, 1.0, {"lofi": 1.0}),
    ("embedding", "product", 0.0, 1.0, 0, 0.95, {"lofi": 0.6, "classical": 0.4}),
    ("embedding", "product", 2.0, 0.8, 0, 0.9, {"classical": 1.0}),
    ("logits", "product", 0.0, 1.0, 0, 0.95, "classical->lofi"),
    ("embedding", "product", 0.0, 1.0, 0, 0.95, "lofi->classical"),
    ("logits", "mixture", 3.0, 1.0, 8, 0.95, "classical->lofi"),
    ("logits", "product", 0.0, 2.0, 0, 1.0, {"lofi": 0.9, "classical": 0.1}),
]


def bars_and_notes(score) -> tuple[int, int]:
    onsets = [n.time for t in score.tracks for n in t.notes]
    if not onsets:
        return 0, 0
    return sum(1 for d in score.get_downbeats() if d <= max(onsets)), len(onsets)


def validity(model, tokenizer, grammar, args: argparse.Namespace) -> tuple[int, int, float]:
    genres = ["lofi", "classical"]
    ids = [tokenizer.genre_id(g) for g in genres]
    good = total = 0
    start = time.perf_counter()
    batch = 10
    for b in range(max(1, args.valid // batch)):
        method, rule, guidance, temp, k, p, mix = SETTINGS[b % len(SETTINGS)]
        bars = 1 + b % 8
        if isinstance(mix, str):
            first, last = mix.split("->")
            keyframes = [(0.0, {first: 1.0}), (1.0, {last: 1.0})]
            table = interpolate_keyframes(keyframes, genres, bars)
        else:
            table = torch.tensor([[mix.get(g, 0.0) for g in genres]]).repeat(bars, 1)
        plan = MixPlan(method, ids, table, rule, guidance, tokenizer.any_id)
        sampling = Sampling(temp, k, p, seed=b, max_tokens_per_bar=args.max_tokens_per_bar)
        result = sample_tokens(
            model,
            grammar,
            plan,
            sampling,
            bos_id=tokenizer.bos_id,
            num_samples=batch,
            target_bars=bars,
        )
        for seq in result.ids:
            got_bars, notes = bars_and_notes(tokenizer.decode(seq))
            total += 1
            good += int(got_bars == bars and notes >= 1)
            if got_bars != bars or notes < 1:
                print(
                    f"  invalid: setting {b % len(SETTINGS)}, {bars} bars asked, {got_bars} "
                    f"decoded, {notes} notes"
                )
    return good, total, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--preset", default="small", help="untrained model size without --model")
    p.add_argument("--tokens", type=int, default=256, help="new tokens per speed run")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--valid", type=int, default=500, help="sequences for the validity check")
    p.add_argument("--max-tokens-per-bar", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads, for both")
    p.add_argument("--plain", action="store_true", help="midimix without the lean step")
    args = p.parse_args(argv)
    if args.plain:
        fast_decode.supports = lambda model: False  # the loop falls back to model.forward
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = model_folder(args, Path(tmp))
        model, tokenizer, meta = load_checkpoint(folder)
        grammar = tokenizer_grammar(tokenizer)
        size = sum(p.numel() for p in model.parameters()) / 1e6
        window = meta.get("max_seq_len") or model.config.n_positions  # what it was trained on
        print(
            f"model {folder} ({size:.1f} M parameters, window {window} of "
            f"{model.config.n_positions} positions), "
            f"{args.threads} thread(s), {args.tokens} new tokens, median of {args.repeats}"
        )
        if args.repeats > 0:
            s = speed(model, tokenizer, grammar, args)
            print(f"HF generate, one genre     {s['hf']:8.1f} tokens/s")
            print(
                f"midimix, one genre         {s['ours']:8.1f} tokens/s  "
                f"{s['ours/hf']:.2f}x HF (target >= 2.5)"
            )
            print(
                f"midimix, logits mix of 2   {s['mix2']:8.1f} tokens/s  "
                f"{s['mix2/ours']:.2f}x one genre (target >= 0.8)"
            )
            print(
                f"midimix, embedding mix     {s['emb']:8.1f} tokens/s  "
                f"{s['emb/ours']:.2f}x one genre"
            )
        if args.valid > 0:
            good, total, seconds = validity(model, tokenizer, grammar, args)
            print(
                f"validity: {good}/{total} sequences ({100 * good / total:.1f}%) decode to MIDI "
                f"with >= 1 note and the requested bars ({seconds:.0f} s)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
