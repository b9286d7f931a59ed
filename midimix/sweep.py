"""The genre sweep of a model, and its model figures (part of `midimix evaluate`).

    python -m midimix.evaluate sweep --model runs/x/best --reference lofi=DIR \\
        --reference classical=DIR --pieces 20 --weights 0,0.25,0.5,0.75,1 --methods logits

For each mixing method and each weight w of the swept genre (the other genre gets 1 - w),
N pieces are generated (no audio); the genre classifier trained on the reference pieces gives
each piece P(genre), and the report plots mean P(genre) against w with 95% intervals. The
curve "rises" when the mean at the highest weight is above the mean at the lowest and their
95% intervals do not overlap. The report also holds the evaluate figures of every sweep point
and the model figures: validation NLL per genre, per token and per note, and genre sensitivity.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from midimix.config import OUT_DIR, check_range, config_to_dict
from midimix.errors import ConfigError, InputError
from midimix.evaluate import (
    EvaluateConfig,
    add_common,
    config_from,
    evaluate_sets,
    mean_ci95,
    reference_sets,
    write_outputs,
)

RISES_DEFINITION = (
    "A curve rises when mean P at the highest weight exceeds mean P at the lowest weight and "
    "their 95% confidence intervals do not overlap."
)
MODEL_FIGURE_SEQUENCES = 16  # per genre, when the figures come from the reference pieces


@dataclass
class SweepConfig:
    genre: str = "lofi"  # the swept genre; `against` gets 1 - weight
    against: str | None = None  # None: the model's other genre (it must have exactly two)
    pieces: int = 20  # pieces per weight per method
    weights: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    methods: tuple[str, ...] = ("logits",)
    bars: int = 8  # length of each piece: enough bars for rhythm and harmony features
    seed: int = 0
    temperature: float = 1.0
    top_p: float = 0.95
    max_tokens_per_bar: int = 256  # generation's cap per bar (see midimix.sampling)
    tokens_dir: Path | None = None  # validation split for the model figures; None: reference
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)

    def __post_init__(self) -> None:
        from midimix.generate import MIX_METHODS

        check_range("pieces", self.pieces, 2, 10_000)
        check_range("bars", self.bars, 1, 1024)
        if len(self.weights) < 2:
            raise ConfigError(f"weights: give at least two weights to sweep, got {self.weights}")
        for w in self.weights:
            check_range("weights", w, 0.0, 1.0)
        self.weights = tuple(sorted(self.weights))
        if not self.methods:
            raise ConfigError(f"methods: give at least one of {', '.join(MIX_METHODS)}")
        for method in self.methods:
            if method not in MIX_METHODS:
                raise ConfigError(f"methods must be in {', '.join(MIX_METHODS)}; got {method!r}")


def sweep_genres(model_genres: Sequence[str], config: SweepConfig) -> tuple[str, str]:
    """(swept, other) genre, checked against the model's genres."""
    if len(model_genres) < 2:
        raise InputError(
            f"a sweep needs a model of two or more genres; this model knows only "
            f"{list(model_genres)}: train it on two genre folders"
        )
    if config.genre not in model_genres:
        raise ConfigError(f"--genre {config.genre!r} is not one of the model's {model_genres}")
    others = [g for g in model_genres if g != config.genre]
    other = config.against or (others[0] if len(others) == 1 else None)
    if other is None or other not in others:
        raise ConfigError(
            f"--against must name the model's genre to mix with {config.genre!r}, one of "
            f"{others}; got {config.against!r}"
        )
    return config.genre, other


def rises(points: Sequence[dict[str, Any]]) -> bool:
    first, last = points[0], points[-1]
    return bool(last["mean"] > first["mean"] and last["ci95"][0] > first["ci95"][1])


def label_of(method: str, weight: float) -> str:
    return f"{method} w={weight:g}"


def generate_points(
    model_dir: Path, out_dir: Path, config: SweepConfig, genres: tuple[str, str]
) -> dict[str, list[Path]]:
    """{label: midi paths} for every (method, weight), generated into out_dir/pieces/."""
    from midimix.generate import GenerateConfig, generate

    genre, other = genres
    sets: dict[str, list[Path]] = {}
    for method in config.methods:
        for w in config.weights:
            gc = GenerateConfig(
                genre_mix={genre: w, other: 1.0 - w},
                mix_method=method,
                temperature=config.temperature,
                top_p=config.top_p,
                seed=config.seed,
                bars=config.bars,
                num_samples=config.pieces,
                render=False,
                max_tokens_per_bar=config.max_tokens_per_bar,
                device="cpu",
                name=f"{method}-w{w:g}",
            )
            folder = out_dir / "pieces" / f"{method}-w{w:g}"
            sets[label_of(method, w)] = [p.midi_path for p in generate(model_dir, folder, gc)]
    return sets


def model_figures(
    model_dir: Path, reference: Mapping[str, Sequence[Path]], tokens_dir: Path | None
) -> dict[str, Any]:
    """NLL per genre per token and per note, and genre sensitivity, of a checkpoint on the
    validation split (tokens_dir) or else on a few reference pieces per genre."""
    from midimix.model import load_checkpoint
    from midimix.train import genre_losses, summarize_losses

    model, tokenizer, _ = load_checkpoint(Path(model_dir))
    if tokens_dir is not None:
        from midimix.tokenize import load_sequences

        sequences = load_sequences(Path(tokens_dir), "validation")
        source = f"validation split of {tokens_dir}"
    else:
        sequences = []
        for genre, paths in reference.items():
            if genre in tokenizer.genres:
                for path in list(paths)[:MODEL_FIGURE_SEQUENCES]:
                    ids = tokenizer.encode(Path(path))
                    if ids:
                        sequences.append((genre, ids))
        source = (
            f"up to {MODEL_FIGURE_SEQUENCES} reference pieces per genre (they may include "
            f"training pieces: give --tokens for the validation split)"
        )
    sequences = [(g, ids) for g, ids in sequences if g in tokenizer.genres and ids]
    if not sequences:
        raise InputError(f"no sequences of the model's genres {tokenizer.genres} to score")
    nll, count = genre_losses(model, tokenizer, sequences)
    truth = [tokenizer.genres.index(g) for g, _ in sequences]
    _, per_token, sensitivity = summarize_losses(nll, count, truth, tokenizer.genres)
    # A note is one Pitch (or PitchDrum) base token; a BPE token may hold several.
    types = tokenizer.token_types()
    notes_per_id = [
        0 if types[i] == "Special" else sum(b.startswith("Pitch") for b in tokenizer.base_tokens(i))
        for i in range(tokenizer.vocab_size)
    ]
    out: dict[str, Any] = {}
    for g, name in enumerate(tokenizer.genres):
        rows = [s for s, t in enumerate(truth) if t == g]
        if not rows:
            continue
        notes = sum(notes_per_id[t] for s in rows for t in sequences[s][1])
        total = sum(float(nll[s, g]) for s in rows)
        out[name] = {
            "per_token": per_token.get(name, float("nan")),
            "per_note": total / notes if notes else float("nan"),
            "sequences": len(rows),
            "notes": notes,
        }
    return {"source": source, "nll": out, "genre_sensitivity": sensitivity}


def sweep(
    model_dir: Path,
    reference: Mapping[str, Sequence[Path]],
    out_dir: Path,
    config: SweepConfig,
) -> dict[str, Any]:
    """Generate the sweep, evaluate every point against the reference genres and write the
    report (report.md / report.json / PNGs with sweep.png) into out_dir; returns the report."""
    from midimix.model import read_meta

    start = time.perf_counter()
    out_dir = Path(out_dir)
    meta = read_meta(Path(model_dir))
    genres = sweep_genres(list(meta.get("genres", [])), config)
    missing = [g for g in genres if g not in reference]
    if missing:
        raise InputError(
            f"the sweep needs reference pieces of {missing}: add --reference {missing[0]}=DIR"
        )
    sets = generate_points(Path(model_dir), out_dir, config, genres)
    report, extra = evaluate_sets(sets, reference, config.evaluate)
    methods: dict[str, list[dict[str, Any]]] = {}
    for method in config.methods:
        methods[method] = []
        for w in config.weights:
            per_piece = report["generated"][label_of(method, w)]["per_piece"]
            mean, low, high = mean_ci95([p[genres[0]] for p in per_piece])
            methods[method].append({"weight": w, "mean": mean, "ci95": [low, high]})
    report["sweep"] = {
        "genre": genres[0],
        "against": genres[1],
        "pieces": config.pieces,
        "methods": methods,
        "rises": {m: rises(points) for m, points in methods.items()},
        "rises_definition": RISES_DEFINITION,
        "config": config_to_dict(config),
    }
    extra["distribution_labels"] = [
        label_of(m, w) for m in config.methods for w in (config.weights[0], config.weights[-1])
    ]
    report["model"] = model_figures(Path(model_dir), reference, config.tokens_dir)
    report["sweep"]["seconds"] = time.perf_counter() - start
    write_outputs(report, extra, out_dir, config.evaluate)
    return report


def parse_floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"expected numbers like 0,0.25,0.5,0.75,1; got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    d = SweepConfig()
    p = argparse.ArgumentParser(
        prog="midimix evaluate sweep",
        description="Generate pieces at several weights of one genre (the other gets 1 - w) "
        "and measure how P(genre) follows the weight; also the model's NLL and genre "
        "sensitivity. Writes report.md, report.json and sweep.png.",
    )
    p.add_argument("--model", type=Path, required=True, help="checkpoint folder (runs/x/best)")
    p.add_argument("--genre", default=d.genre, help="the swept genre (default %(default)s)")
    p.add_argument("--against", default=None, help="the other genre (default: the model's other)")
    p.add_argument(
        "--pieces", type=int, default=d.pieces, help="per weight and method (%(default)s)"
    )
    p.add_argument(
        "--weights",
        default=",".join(f"{w:g}" for w in d.weights),
        help="weights of --genre to generate at, 0..1, two or more (%(default)s)",
    )
    p.add_argument(
        "--methods",
        default=",".join(d.methods),
        help="mix methods: logits and/or embedding (%(default)s)",
    )
    p.add_argument("--bars", type=int, default=d.bars, help="bars per piece (%(default)s)")
    p.add_argument(
        "--temperature", type=float, default=d.temperature, help="sampling (%(default)s)"
    )
    p.add_argument("--top-p", type=float, default=d.top_p, help="nucleus cut (%(default)s)")
    p.add_argument("--tokens", type=Path, default=None,
                   help="token folder: model figures on its validation split")  # fmt: skip
    add_common(
        p,
        EvaluateConfig(),
        "random seed of the generated pieces, the reference subset and the CV folds",
    )
    p.set_defaults(out_dir=OUT_DIR / "sweep")
    return p


def main(argv: list[str] | None = None) -> int:
    """`midimix evaluate sweep` (errors are turned into one line by evaluate's main)."""
    args = build_parser().parse_args(argv)
    config = SweepConfig(
        genre=args.genre,
        against=args.against,
        pieces=args.pieces,
        weights=parse_floats(args.weights),
        methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
        bars=args.bars,
        seed=args.seed,
        temperature=args.temperature,
        top_p=args.top_p,
        tokens_dir=args.tokens,
        evaluate=config_from(args),
    )
    report = sweep(args.model, reference_sets(args.reference), args.out_dir, config)
    s = report["sweep"]
    curves = "; ".join(
        f"{m}: " + " ".join(f"{p['mean']:.2f}" for p in pts) + (" (rises)" if s["rises"][m] else
                                                               " (does not rise)")
        for m, pts in s["methods"].items()
    )  # fmt: skip
    print(
        f"sweep: P({s['genre']}) at w={','.join(f'{w:g}' for w in config.weights)}: {curves}; "
        f"classifier CV {report['classifier']['cv_accuracy']:.3f}; {s['seconds']:.0f} s; "
        f"report in {Path(args.out_dir) / 'report.md'}"
    )
    return 0
