"""The genre sweep of a model (`midimix evaluate sweep`): generate pieces at several weights of
one genre (the other gets 1 - w) and measure how P(genre) follows the weight; also the model's
NLL and genre sensitivity. Writes report.md, report.json, sweep.png and sweep.config.json.

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
import dataclasses
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from midimix import calibration
from midimix.config import OUT_DIR, check_range, config_to_dict, save_config
from midimix.errors import ConfigError, InputError, cli_errors
from midimix.fidelity import describe
from midimix.measure import (
    PROBABILITY,
    EvaluateConfig,
    add_sets_arguments,
    evaluate_sets,
    mean_ci95,
    reference_sets,
    write_outputs,
)
from midimix.options import add_config_arguments, config_from_args, option, stage_parser

RISES_DEFINITION = (
    "A curve rises when mean P at the highest weight exceeds mean P at the lowest weight and "
    "their 95% confidence intervals do not overlap."
)
MODEL_FIGURE_SEQUENCES = 16  # per genre, when the figures come from the reference pieces


def parse_floats(text: str) -> tuple[float, ...]:
    """'0,0.25,0.5' -> (0.0, 0.25, 0.5); finite numbers only."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = (math.nan,)
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected numbers like 0,0.25,0.5,0.75,1; got {text!r}")
    return values


def parse_names(text: str) -> tuple[str, ...]:
    """'logits,embedding' -> ('logits', 'embedding')."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


_WEIGHTS = option(parse=parse_floats, metavar="W,W,...")
_METHODS = option(parse=parse_names, metavar="METHOD,...")
_TOKENS = option(aliases=("--tokens",))
_GENERATION = option(group="generation")


@dataclass
class SweepConfig:
    """What the sweep generates, and how its points are measured."""

    genre: str = "lofi"  # the swept genre; --against gets 1 - weight
    against: str | None = None  # the other genre; none: the model's other genre (it must have
    # exactly two)
    pieces: int = 20  # pieces generated per weight and per method, 2..10000
    weights: tuple[float, ...] = field(default=(0.0, 0.25, 0.5, 0.75, 1.0), metadata=_WEIGHTS)
    # weights of --genre to generate at, comma-separated, 0..1, two or more
    methods: tuple[str, ...] = field(default=("logits",), metadata=_METHODS)  # mixing methods,
    # comma-separated: logits and/or embedding
    bars: int = field(default=8, metadata=_GENERATION)  # length of each piece: enough bars for
    # rhythm and harmony features
    seed: int = 0  # seed of the generated pieces; also of the reference subset and the CV folds
    # unless --evaluate.seed is given
    temperature: float = field(default=1.0, metadata=_GENERATION)  # sampling temperature
    top_p: float = field(default=0.95, metadata=_GENERATION)  # nucleus sampling cut
    max_tokens_per_bar: int = field(default=256, metadata=_GENERATION)  # generation's cap per
    # bar (see midimix.sampling)
    progress: bool = True  # a progress bar on stderr, piece by piece per weight and method
    fit_calibration: bool = False  # sample at the raw weights and store the measured map in
    # the model folder, so that generation lands where it is asked (midimix.calibration)
    tokens_dir: Path | None = field(default=None, metadata=_TOKENS)  # token folder: the model
    # figures on its validation split; none: on the reference pieces
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


def single_genre_points(
    model_dir: Path, meta: dict[str, Any], config: SweepConfig, genres: tuple[str, str]
) -> dict[str, Any]:
    """evaluate_sets' fidelity arguments for the sweep's single-genre points (weights 1 and 0),
    with the model's genre statistics and grid (midimix.fidelity)."""
    from midimix.fidelity import limits_from_stats
    from midimix.genre_stats import stats_from_meta
    from midimix.tokenizer import GenreTokenizer

    ends = {1.0: genres[0], 0.0: genres[1]}
    single = {
        label_of(m, w): g for m in config.methods for w, g in ends.items() if w in config.weights
    }
    stats = stats_from_meta(meta) or {}
    return {
        "single_genre": single,
        "limits": {g: limits_from_stats(s) for g, s in stats.items()},
        "steps_per_beat": GenreTokenizer.load(model_dir).steps_per_beat,
    }


def generate_points(
    model_dir: Path, out_dir: Path, config: SweepConfig, genres: tuple[str, str]
) -> dict[str, list[Path]]:
    """{label: midi paths} for every (method, weight), generated into out_dir/pieces/."""
    from tqdm import tqdm

    from midimix.generate import GenerateConfig, generate

    genre, other = genres
    sets: dict[str, list[Path]] = {}
    points = tqdm(
        total=len(config.methods) * len(config.weights) * config.pieces,
        desc="sweep",
        unit="piece",
        disable=not config.progress,
        file=sys.stderr,
    )
    for method in config.methods:
        for w in config.weights:
            points.set_postfix_str(f"{method} w={w:g}")
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
                calibrated=not config.fit_calibration,
                progress=False,
                device="cpu",
                name=f"{method}-w{w:g}",
            )
            folder = out_dir / "pieces" / f"{method}-w{w:g}"
            sets[label_of(method, w)] = [p.midi_path for p in generate(model_dir, folder, gc)]
            points.update(config.pieces)
    points.close()
    return sets


def model_figures(
    model_dir: Path, reference: Mapping[str, Sequence[Path]], tokens_dir: Path | None
) -> dict[str, Any]:
    """NLL per genre per token and per note, and genre sensitivity, of a checkpoint on the
    validation split (tokens_dir) or else on a few reference pieces per genre."""
    from midimix.model import load_checkpoint
    from midimix.train import genre_losses, summarize_losses

    model, tokenizer, meta = load_checkpoint(Path(model_dir))
    if tokens_dir is not None:
        from midimix.tokenize import load_sequences
        from midimix.tokenizer import same_vocabulary

        if not same_vocabulary(Path(tokens_dir), Path(model_dir)):
            # ids of another vocabulary would be scored as if they were this model's
            raise InputError(
                f"{tokens_dir} was tokenized with another vocabulary than {model_dir}'s: give "
                "the token data set the model was trained on"
            )
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
    # chunks as long as the model was trained on (a run may use less than its context)
    nll, count = genre_losses(model, tokenizer, sequences, meta.get("max_seq_len"))
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
    report (report.md / report.json / PNGs with sweep.png, and the settings as
    sweep.config.json) into out_dir; returns the report."""
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
    report, extra = evaluate_sets(
        sets,
        reference,
        config.evaluate,
        **single_genre_points(Path(model_dir), meta, config, genres),
    )
    methods: dict[str, list[dict[str, Any]]] = {}
    for method in config.methods:
        methods[method] = []
        for w in config.weights:
            per_piece = report["generated"][label_of(method, w)]["per_piece"]
            mean, low, high = mean_ci95([p[genres[0]] for p in per_piece], PROBABILITY)
            methods[method].append(
                {"weight": w, "mean": mean, "ci95": [low, high], "pieces": len(per_piece)}
            )
    curves = {m: [(p["weight"], p["mean"]) for p in points] for m, points in methods.items()}
    report["sweep"] = {
        "genre": genres[0],
        "against": genres[1],
        "pieces": config.pieces,
        "methods": methods,
        "calibrated": not config.fit_calibration,
        "calibration_error": {m: calibration.calibration_error(c) for m, c in curves.items()},
        "crossing_0_5": {m: calibration.crossing(c) for m, c in curves.items()},
        "fitted_calibration": config.fit_calibration,
        "rises": {m: rises(points) for m, points in methods.items()},
        "rises_definition": RISES_DEFINITION,
        "config": config_to_dict(config),
    }
    if config.fit_calibration:
        for fitted in calibration.fit_sweep(report["sweep"]):
            calibration.store(Path(model_dir), fitted)
    extra["distribution_labels"] = [
        label_of(m, w) for m in config.methods for w in (config.weights[0], config.weights[-1])
    ]
    report["model"] = model_figures(Path(model_dir), reference, config.tokens_dir)
    report["sweep"]["seconds"] = time.perf_counter() - start
    write_outputs(report, extra, out_dir, config.evaluate)
    save_config(config, out_dir, "sweep")
    return report


def add_evaluate_short_flags(parser: argparse.ArgumentParser) -> None:
    """Let the sweep's evaluation settings also be typed as `midimix evaluate` spells them:
    --cv-folds as well as --evaluate.cv-folds (a name the sweep uses itself, --seed, stays
    the sweep's)."""
    taken = parser._option_string_actions
    for action in list(parser._actions):
        if not action.dest.startswith("evaluate."):
            continue
        short = action.option_strings[0].replace("--evaluate.", "--", 1)
        if short in taken:
            continue
        kwargs: dict[str, Any] = {"dest": action.dest, "default": argparse.SUPPRESS}
        if isinstance(action, argparse.BooleanOptionalAction):
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs |= {"type": action.type, "metavar": action.metavar, "choices": action.choices}
        parser.add_argument(short, help=argparse.SUPPRESS, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser("evaluate sweep", __doc__)
    parser.epilog = (
        "Each --evaluate.* flag may also be spelt as `midimix evaluate` spells it "
        "(--cv-folds, --no-plots, ...), except --seed, which is the sweep's own."
    )
    parser.add_argument(
        "--model", type=Path, required=True, metavar="DIR", help="checkpoint folder (runs/x/best)"
    )
    add_sets_arguments(parser, OUT_DIR / "sweep")
    add_config_arguments(parser, SweepConfig)
    add_evaluate_short_flags(parser)
    return parser


def config_from(args: argparse.Namespace) -> SweepConfig:
    """The sweep's config from its flags (and --config FILE); a typed --seed seeds the
    evaluation too unless --evaluate.seed is typed as well."""
    config: SweepConfig = config_from_args(SweepConfig, args)
    if hasattr(args, "seed") and not hasattr(args, "evaluate.seed"):
        config.evaluate = dataclasses.replace(config.evaluate, seed=config.seed)
    return config


@cli_errors
def main(argv: list[str] | None = None) -> int:
    """`midimix evaluate sweep`."""
    args = build_parser().parse_args(argv)
    config = config_from(args)
    report = sweep(args.model, reference_sets(args.reference), args.out_dir, config)
    s = report["sweep"]
    curves = "; ".join(
        f"{m}: " + " ".join(f"{p['mean']:.2f}" for p in pts) + (" (rises)" if s["rises"][m] else
                                                               " (does not rise)")
        for m, pts in s["methods"].items()
    )  # fmt: skip
    print(
        f"sweep: P({s['genre']}) at w={','.join(f'{w:g}' for w in config.weights)}: {curves}; "
        + "calibration error "
        + ", ".join(
            f"{m} {'n/a' if e is None else f'{e:.3f}'}" for m, e in s["calibration_error"].items()
        )
        + ("; map stored in the model folder" if s["fitted_calibration"] else "")
        + "; "
        f"classifier CV {report['classifier']['cv_accuracy']:.3f}; {s['seconds']:.0f} s; "
        f"report in {Path(args.out_dir) / 'report.md'}"
    )
    for label, f in report.get("fidelity", {}).items():
        print(f"  {describe(label, f['genre'], f)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
