"""Generate pieces that mix genres by chosen weights, from a genre-conditioned GPT-2.

    python -m midimix.generate --genre-mix lofi=0.7,classical=0.3 --bars 16

Two ways to mix (`--mix-method`): `logits` combines the per-genre next-token log-probabilities
of one batched forward pass (optionally with guidance against `Genre_any`); `embedding` gives
one row a genre embedding that is the weighted sum of the genres'. How the next token is chosen
lives in `midimix.sampler` (the KV-cache loop) and `midimix.sampling` (logit processors and the
tokenizer's grammar, so every piece decodes to MIDI with notes and the requested bar count).

This stage keeps the rest: the config, loading the model, the prompt (`.prompt`), and writing
out/<stem>.mid with a provenance JSON beside it. It writes audio only through the
`render_audio` callback it is given, and never imports a later stage: the command line
(`midimix.generate.__main__`) passes the render stage as that callback.
"""

from __future__ import annotations

import argparse
import functools
import platform
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import midimix
from midimix import calibration, performance
from midimix.config import OUT_DIR, config_to_dict
from midimix.errors import ConfigError, InputError
from midimix.generate.config import (
    DEFAULT_BARS,
    DEVICES,
    MIX_GROUP,
    MIX_METHODS,
    MIX_RULES,
    SECONDS_PER_BAR,
    GenerateConfig,
    check_genres,
    parse_genre_mix,
    parse_schedule,
)
from midimix.generate.limits import bar_limits
from midimix.generate.prompt import load_prompt, prompt_ids, prompt_kind, splice, transcribe_prompt
from midimix.genre_stats import (
    GenreStats,
    draw_mix_tempo,
    mix_median_tempo,
    piece_facts,
    stats_from_meta,
)
from midimix.keys import mix_key_shares, shift_to_genre_key
from midimix.options import add_config_arguments, field_comments, stage_parser
from midimix.sampler import (
    MixPlan,
    SampleResult,
    Sampling,
    model_device,
    sample_tokens,
    tokenizer_grammar,
)
from midimix.scores import transpose_in_range, with_tempo

if TYPE_CHECKING:
    import torch

    from midimix.tokenize import GenreTokenizer

DEFAULT_MODEL_DIR = Path(midimix.__file__).parent / "default_model"
VERSIONED_PACKAGES = ("midimix", "torch", "transformers", "miditok", "symusic")

# (midi, mean weights, seed) -> audio path; for a schedule also weights_per_bar=[{genre: w}]
RenderAudio = Callable[..., Path]
"""(MIDI file, the mix's mean weights, seed) -> the audio file it wrote."""


@dataclass
class GeneratedPiece:
    midi_path: Path
    audio_path: Path | None  # None: no render_audio callback, or config.render off
    provenance_path: Path
    ids: list[int]  # body ids of the whole piece (prompt + new material)
    weights: dict[str, float]  # mean weights over the bars
    bars: int = 0  # new bars generated
    notes: int = 0  # notes in the MIDI file
    seconds: float = 0.0  # length of the MIDI file

    def text(self) -> str:
        extra = [p.suffix for p in (self.audio_path, self.provenance_path) if p is not None]
        return (
            f"wrote {self.midi_path} ({self.bars} bars, {self.notes} notes, "
            f"{self.seconds:.1f} s) + {' + '.join(extra)}"
        )


# ---------------------------------------------------------------------------------------
# The model


def resolve_model_dir(model_dir: Path | None) -> Path:
    if model_dir is not None:
        return Path(model_dir)
    if not (DEFAULT_MODEL_DIR / "model.safetensors").is_file():
        raise InputError(
            f"the embedded default model is missing (expected {DEFAULT_MODEL_DIR}/"
            "model.safetensors); pass --model runs/<name>/best from `python -m midimix.train`"
        )
    return DEFAULT_MODEL_DIR


def pick_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for but torch sees no CUDA GPU; use --device cpu")
    return name


# ---------------------------------------------------------------------------------------
# The stage


def output_stem(config: GenerateConfig, weights: dict[str, float], sample: int) -> str:
    if config.name:
        stem = config.name
    elif config.schedule:
        names = [re.sub(r"[=@+].*", "", p).strip() for p in re.split(r"->|,", config.schedule)]
        stem = "sched-" + "-to-".join(n for n in names if n)
    else:
        active = [(g, w) for g, w in weights.items() if w > 0]
        if len(active) == 1:
            stem = active[0][0]
        else:
            stem = "mix-" + "-".join(f"{g}{round(100 * w)}" for g, w in active)
    if config.mix_method != "logits":
        stem += "-emb"
    if config.guidance > 0:
        stem += f"-g{config.guidance:g}"
    if config.prompt is not None:
        stem += f"-from-{Path(config.prompt).stem}"
    # sampling settings away from the defaults, so that runs differing only there do not
    # overwrite each other
    defaults = GenerateConfig()
    for tag, field in (("t", "temperature"), ("k", "top_k"), ("p", "top_p")):
        if getattr(config, field) != getattr(defaults, field):
            stem += f"-{tag}{getattr(config, field):g}"
    stem += f"-seed{config.seed}"
    stem += f"-{sample}" if config.num_samples > 1 else ""
    # a file name, never a path: names from a schedule text or --name stay inside --out-dir
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).lstrip(".") or "piece"


def weight_table(
    config: GenerateConfig, genres: list[str], n_bars: int
) -> tuple[list[str], torch.Tensor]:
    """(genres taking part, per-bar weights (n_bars, G)) from the mix or the schedule."""
    import torch

    from midimix.sampling import interpolate_keyframes

    if config.schedule is not None:
        table = interpolate_keyframes(parse_schedule(config.schedule, genres), genres, n_bars)
    else:
        if config.genre_mix is None:
            mix = parse_genre_mix(None, genres)
        else:
            check_genres(config.genre_mix, genres)
            mix = config.genre_mix
        table = torch.tensor([[mix.get(g, 0.0) for g in genres]]).repeat(n_bars, 1)
    named = list(config.genre_mix or {})
    order = named + [g for g in genres if g not in named]  # the user's order names the files
    table = table[:, [genres.index(g) for g in order]]
    used = [i for i in range(len(order)) if bool((table[:, i] > 0).any())]
    return [order[i] for i in used], table[:, used]


def calibrated_table(
    table: torch.Tensor,
    genres: list[str],
    method: str,
    calibrations: list[calibration.Calibration],
) -> torch.Tensor:
    """The per-bar weights to sample at: each bar's asked weights through the model's
    calibration map for its genre pair and method (unchanged without one)."""
    import torch

    if not calibrations:
        return table
    rows = []
    for row in table.tolist():
        weights = calibration.calibrated(dict(zip(genres, row, strict=True)), method, calibrations)
        rows.append([weights.get(g, 0.0) for g in genres])
    return torch.tensor(rows, dtype=table.dtype)


def package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def generate(
    model_dir: Path | None = None,
    out_dir: Path = OUT_DIR,
    config: GenerateConfig | None = None,
    *,
    render_audio: RenderAudio | None = None,
) -> list[GeneratedPiece]:
    """Generate `config.num_samples` pieces into `out_dir`; returns what was written.

    `model_dir=None` is the embedded default model. Each piece is <stem>.mid with its
    provenance <stem>.json; audio only through `render_audio` (when `config.render` is on),
    for example `midimix.generate.__main__.audio_renderer()`, the render stage."""
    if isinstance(model_dir, GenerateConfig):
        raise TypeError(
            "generate(model_dir, out_dir, config): the config came first; "
            "write generate(config=..., out_dir=...)"
        )
    from midimix.model import load_checkpoint, load_decoder, quiet_transformers

    config = GenerateConfig() if config is None else config
    folder = resolve_model_dir(model_dir)
    out_dir = Path(out_dir)
    device = pick_device(config.device)
    if device == "cpu" and config.threads > 0:
        import torch

        torch.set_num_threads(config.threads)
    model: Any
    if device == "cpu":  # plain tensors for the lean decoding step: no transformers import
        model, tokenizer, meta = load_decoder(folder)
    else:
        with quiet_transformers():
            model, tokenizer, meta = load_checkpoint(folder, device)
    if not tokenizer.genres:
        raise InputError(
            f"the tokenizer of {folder} has no Genre_<name> tokens, so it cannot be conditioned "
            "on a genre; use a model trained by `python -m midimix.train`"
        )
    stored_stats = stats_from_meta(meta)  # midimix.json, read once
    stats = stored_stats if config.genre_limits else None
    used, table = weight_table(config, tokenizer.genres, DEFAULT_BARS)
    mean_mix = dict(zip(used, table.mean(dim=0).tolist(), strict=True))
    n_bars = config.bars_at(None if stats is None else mix_median_tempo(stats, mean_mix))
    genres, table = weight_table(config, tokenizer.genres, n_bars)
    calibrations = calibration.from_meta(meta) if config.calibrated else []
    sampled = calibrated_table(table, genres, config.mix_method, calibrations)
    grammar = tokenizer_grammar(tokenizer)
    plan = MixPlan(
        method=config.mix_method,
        genre_ids=[tokenizer.genre_id(g) for g in genres],
        weights=sampled,
        rule=config.mix_rule,
        guidance=config.guidance,
        any_id=tokenizer.any_id,
        limits=None if stats is None else bar_limits(tokenizer, genres, table, stats),
    )
    prompt: list[int] = []
    prompt_score = None
    if config.prompt:
        prompt, prompt_score = load_prompt(config.prompt, tokenizer, out_dir)
    sampling = Sampling(
        config.temperature, config.top_k, config.top_p, config.seed, config.max_tokens_per_bar
    )
    start = time.perf_counter()
    from tqdm import tqdm

    progress = tqdm(
        total=n_bars, desc="generate", unit="bar", disable=not config.progress, file=sys.stderr
    )
    result = sample_tokens(
        model,
        grammar,
        plan,
        sampling,
        bos_id=tokenizer.bos_id,
        num_samples=config.num_samples,
        target_bars=n_bars,
        prompt_ids=prompt,
        on_bar=lambda done: progress.update(done - progress.n),
        context=meta.get("max_seq_len") or None,  # the chunk length it was trained on
    )
    progress.update(n_bars - progress.n)
    progress.close()
    wall_seconds = time.perf_counter() - start
    record = provenance(config, folder, meta, tokenizer, genres, table, prompt)
    record["weights_sampled"] = {
        g: round(float(w), 6) for g, w in zip(genres, sampled.mean(dim=0), strict=True)
    }
    record["device"] = str(model_device(model))
    record["wall_seconds"] = round(wall_seconds, 3)
    record["tokens_per_second"] = round(sum(map(len, result.ids)) / max(wall_seconds, 1e-9), 1)
    audio = render_audio if config.render else None
    keys = mix_keys(stored_stats, mean_mix) if config.genre_keys and not prompt else {}
    performances = performance.from_meta(meta) if config.performance and not prompt else {}
    # played at the weights sampled (through the calibration map): the map is fitted from
    # pieces played at the weights they were sampled at, so the asked weight still lands
    per_bar = [dict(zip(genres, row, strict=True)) for row in sampled.tolist()]
    pieces = []
    for s, ids in enumerate(result.ids):
        facts = piece_facts(tok for i in ids for tok in tokenizer.base_tokens(i))
        # a piece that states no tempo gets one of its genres' (see onset_and_value_mask)
        tempo = None
        if stats is not None and not prompt and not facts.tempos_bpm:
            tempo = draw_mix_tempo(stats, mean_mix, random.Random(f"tempo-{config.seed}-{s}"))
        piece_record = {
            **record,
            "transposed_semitones": key_shift(facts.pitch_classes, keys, config.seed, s),
            "tempo_from_genres": None if tempo is None else round(tempo, 2),
            "performed": bool(performances),
        }
        play = None
        if performances:  # its own generator: a piece plays the same whatever else ran
            play = functools.partial(
                performance.perform,
                performances=performances,
                weights_per_bar=per_bar,
                seed=config.seed * 1_000_003 + s,
            )
        stem = out_dir / output_stem(config, record["weights"], s)
        pieces.append(
            _write_piece(
                tokenizer,
                (prompt, prompt_score),
                ids,
                result.bars[s],
                stem,
                piece_record,
                audio,
                play,
            )
        )
    return pieces


def mix_keys(stats: dict[str, GenreStats] | None, mix: dict[str, float]) -> dict[str, float]:
    """The keys the genres of a mix use, weighted by the mix ({} for a model without them)."""
    if not stats:
        return {}
    return mix_key_shares({g: s.keys for g, s in stats.items()}, mix)


def key_shift(pitch_classes: list[int], keys: dict[str, float], seed: int, sample: int) -> int:
    """Semitones that move sampled piece `sample` to a key its genres use (0 without keys);
    drawn from its own generator, so the shift of a seed is the same whatever else ran."""
    if not keys:
        return 0
    return shift_to_genre_key(pitch_classes, keys, random.Random(seed * 1_000_003 + sample))


def provenance(
    config: GenerateConfig,
    folder: Path,
    meta: dict[str, Any],
    tokenizer: GenreTokenizer,
    genres: list[str],
    table: torch.Tensor,
    prompt: list[int],
) -> dict[str, Any]:
    """What every piece of a run records about how it was made (model, mix, sampling, seed,
    prompt, versions); the writer adds the piece's own files and counts."""
    from midimix.manifest import sha256_file

    mean = table.mean(dim=0)
    return {
        "model_dir": str(folder),
        "model_sha256": sha256_file(folder / "model.safetensors"),
        "tokenizer_sha256": sha256_file(folder / "tokenizer.json"),
        "model_step": meta.get("step"),
        "genres": list(tokenizer.genres),
        "genres_used": genres,  # the columns of weights_per_bar
        "weights": {g: round(float(w), 6) for g, w in zip(genres, mean, strict=True)},
        "weights_per_bar": [[round(float(w), 6) for w in row] for row in table],
        "method": config.mix_method,
        "mix_rule": config.mix_rule,
        "schedule": config.schedule,
        "guidance": config.guidance,
        "sampling": {
            "temperature": config.temperature,
            "top_k": config.top_k,
            "top_p": config.top_p,
        },
        "seed": config.seed,
        "num_samples": config.num_samples,
        "bars_requested": config.target_bars,
        "prompt": None
        if config.prompt is None
        else {
            "path": str(config.prompt),
            "sha256": sha256_file(config.prompt),
            "tokens": len(prompt),
        },
        "versions": package_versions(),
        "config": config_to_dict(config),
    }


def drop_stale_audio(provenance_path: Path) -> None:
    """Delete the audio an earlier run's record at `provenance_path` names (and the render
    stage's <audio stem>.render.json beside it): it was rendered from the MIDI this run
    replaces, and a run without audio (--no-render) would otherwise leave it beside a record
    whose audio is null. Only files beside the record with the piece's stem are touched."""
    import json

    from midimix.audio import sidecar_path

    try:
        old = json.loads(provenance_path.read_text())
    except (OSError, ValueError):
        return  # no earlier record (or not ours): nothing it named to remove
    audio = old.get("audio") if isinstance(old, dict) else None
    if not isinstance(audio, str):
        return
    # by name beside the record: the path it holds is relative to where that run started
    audio_path = provenance_path.with_name(Path(audio).name)
    stem = provenance_path.stem
    if audio_path.stem != stem:
        return
    audio_path.unlink(missing_ok=True)
    sidecar_path(audio_path).unlink(missing_ok=True)


def _write_piece(
    tokenizer: GenreTokenizer,
    prompt: tuple[list[int], Any],
    new_ids: list[int],
    bars: int,
    stem_path: Path,
    record: dict[str, Any],
    render_audio: RenderAudio | None,
    play: Callable[[Any], Any] | None = None,
) -> GeneratedPiece:
    """<stem>.mid, the audio through `render_audio` if given, then <stem>.json. `prompt` is
    (its ids, its score), the score None without a prompt; with one, the MIDI starts with the
    prompt as written (`splice`: its own tempo and timing, not the tokenizer's). `play` turns
    the decoded grid into a performance (`midimix.performance.perform`), None: as decoded."""
    from midimix.manifest import atomic_path, atomic_write_json

    prompt_ids, prompt_score = prompt
    ids = prompt_ids + new_ids
    midi_path = stem_path.with_name(stem_path.name + ".mid")
    provenance_path = stem_path.with_name(stem_path.name + ".json")
    drop_stale_audio(provenance_path)  # before the new MIDI: never new MIDI beside old audio
    if prompt_score is None:
        score = transpose_in_range(tokenizer.decode(ids), record.get("transposed_semitones", 0))
        if record.get("tempo_from_genres"):
            score = with_tempo(score, record["tempo_from_genres"])
        if play is not None:
            score = play(score)
    else:
        score = splice(prompt_score, tokenizer, prompt_ids, new_ids)
    with atomic_path(midi_path) as tmp:
        score.dump_midi(str(tmp))
    seconds = float(score.to("second").end())  # type: ignore[attr-defined]
    weights = record["weights"]
    audio_path = None
    if render_audio is not None:
        rows = record["weights_per_bar"]
        if record.get("schedule") and len({tuple(r) for r in rows}) > 1:  # the sound moves too
            per_bar = [dict(zip(record["genres_used"], row, strict=True)) for row in rows]
            audio_path = render_audio(midi_path, weights, record["seed"], weights_per_bar=per_bar)
        else:
            audio_path = render_audio(midi_path, weights, record["seed"])
    atomic_write_json(
        provenance_path,
        {
            **record,
            "midi": str(midi_path),
            "audio": None if audio_path is None else str(audio_path),
            "tokens": len(ids),
            "bars": bars,
            "notes": int(score.note_num()),
            "seconds": round(seconds, 3),
        },
    )
    return GeneratedPiece(
        midi_path, audio_path, provenance_path, ids, weights, bars, int(score.note_num()), seconds
    )


# ---------------------------------------------------------------------------------------
# Command line (the flags; `python -m midimix.generate` runs them, with audio)


def build_parser() -> argparse.ArgumentParser:
    """`midimix generate`'s flags: one per GenerateConfig field, plus the model and the output
    folder. The genre mix flags are built here: `--genre-mix` alone means equal weights."""
    parser = stage_parser("generate", __doc__)
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        metavar="PATH",
        help="checkpoint folder, e.g. runs/<name>/best (default: the embedded default model)",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=OUT_DIR,
        metavar="DIR",
        help=f"output folder (default: {OUT_DIR})",
    )
    comments = field_comments(GenerateConfig)
    mix = parser.add_argument_group(MIX_GROUP).add_mutually_exclusive_group()
    mix.add_argument(
        "--genre-mix",
        dest="genre_mix",
        nargs="?",
        const=None,  # the flag alone: equal weights, even over a --config file's mix
        default=argparse.SUPPRESS,
        metavar="G=W,...",
        help=comments["genre_mix"],
    )
    mix.add_argument(
        "--genre",
        dest="genre_mix",
        default=argparse.SUPPRESS,
        metavar="GENRE",
        help="one genre only (the same as --genre-mix GENRE)",
    )
    mix.add_argument(
        "--genre-schedule",
        "--schedule",
        dest="schedule",
        default=argparse.SUPPRESS,
        metavar="SCHEDULE",
        help=comments["schedule"],
    )
    add_config_arguments(parser, GenerateConfig, skip=("genre_mix", "schedule"))
    return parser


__all__ = [
    "DEFAULT_BARS",
    "DEFAULT_MODEL_DIR",
    "DEVICES",
    "MIX_METHODS",
    "MIX_RULES",
    "SECONDS_PER_BAR",
    "GenerateConfig",
    "GeneratedPiece",
    "MixPlan",
    "RenderAudio",
    "SampleResult",
    "Sampling",
    "build_parser",
    "check_genres",
    "generate",
    "load_prompt",
    "parse_genre_mix",
    "parse_schedule",
    "prompt_ids",
    "prompt_kind",
    "sample_tokens",
    "tokenizer_grammar",
    "transcribe_prompt",
]
