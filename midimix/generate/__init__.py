"""Generate pieces that mix genres by chosen weights, from a genre-conditioned GPT-2.

    python -m midimix.generate --genre-mix lofi=0.7,classical=0.3 --bars 16

Two ways to mix (`--mix-method`):
- logits: every step runs one batched forward pass with one row per genre (prefix
  `BOS, Genre_<g>`, then the tokens the rows share) and combines the next-token
  log-probabilities by the weights (optionally with guidance against `Genre_any`);
- embedding: one row per sample whose genre-token embedding is the weighted sum of the genre
  embeddings.
Sampling runs its own loop over a KV cache; pieces longer than the model's context go on in a
sliding window that keeps the genre prefix. Decoding follows the tokenizer's grammar
(`midimix.sampling`), so every piece decodes to MIDI with notes and the requested bar count.
Each piece is written as out/<stem>.mid with a provenance JSON beside it, and out/<stem>.wav
through the render stage.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import math
import platform
import re
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import midimix
from midimix.audio import AUDIO_SUFFIXES
from midimix.config import (
    OUT_DIR,
    check_choice,
    check_range,
    check_weights,
    config_to_dict,
    parse_weights,
)
from midimix.errors import ConfigError, InputError, MidimixError, cli_errors
from midimix.manifest import atomic_write_json, sha256_file

if TYPE_CHECKING:
    import torch
    from transformers import GPT2LMHeadModel

    from midimix.sampling import Grammar
    from midimix.tokenize import GenreTokenizer

DEFAULT_MODEL_DIR = Path(midimix.__file__).parent / "default_model"
MIX_METHODS = ("logits", "embedding")
DEVICES = ("auto", "cpu", "cuda", "mps")
MIDI_SUFFIXES = (".mid", ".midi")
SECONDS_PER_BAR = 4 * 60 / 120  # --seconds counts 4/4 bars at 120 BPM, miditok's default tempo
VERSIONED_PACKAGES = ("midimix", "torch", "transformers", "miditok", "symusic")


@dataclass
class GenerateConfig:
    genre_mix: dict[str, float] | None = None  # None: equal weights over the model's genres
    mix_method: str = "logits"  # logits | embedding (docs/generate.md: how it was chosen)
    mix_rule: str = "product"  # logits: product (sum w*logp) | mixture (log sum w*p)
    guidance: float = 0.0  # classifier-free guidance scale against Genre_any; 0 = none
    schedule: str | None = None  # "classical->lofi" or "classical@0,lofi@1": weights per bar
    temperature: float = 1.0  # 1 = the model's own distribution
    top_k: int = 0  # 0 = no top-k cut
    top_p: float = 0.95  # nucleus: drops the unlikely tail that derails long pieces
    seed: int = 0
    bars: int = 16  # length of the new material, in bars
    seconds: float | None = None  # length in seconds instead (4/4 at 120 BPM: 2 s per bar)
    num_samples: int = 1  # generated together as one batch
    prompt: Path | None = None  # MIDI (or audio, transcribed first) to continue
    render: bool = True  # also write audio through midimix.render when it is installed
    max_tokens_per_bar: int = 256  # a longer bar is steered to its bar line (see sampling)
    device: str = "auto"  # auto: cuda when available, else cpu
    threads: int = 1  # CPU threads; one step's matrices are too small to split (docs)
    name: str | None = None  # output stem; None: from the mix and the seed

    def __post_init__(self) -> None:
        check_choice("mix_method", self.mix_method, MIX_METHODS)
        from midimix.sampling import MIX_RULES

        check_choice("mix_rule", self.mix_rule, MIX_RULES)
        check_range("guidance", self.guidance, 0.0, 20.0)
        check_range("temperature", self.temperature, 0.05, 5.0)
        check_range("top_k", self.top_k, 0, None)
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p!r}")
        check_range("bars", self.bars, 1, 4096)
        if self.seconds is not None:
            check_range("seconds", self.seconds, 0.5, 3600.0)
        check_range("num_samples", self.num_samples, 1, 1024)
        check_range("max_tokens_per_bar", self.max_tokens_per_bar, 8, 100_000)
        check_choice("device", self.device, DEVICES)
        check_range("threads", self.threads, 0, 1024)
        if self.genre_mix is not None:
            self.genre_mix = check_weights(self.genre_mix)
        if self.schedule is not None and self.genre_mix is not None:
            raise ConfigError(
                "give either a genre mix or a genre schedule, not both: the schedule sets the "
                "weights bar by bar"
            )
        if self.prompt is not None:
            self.prompt = Path(self.prompt)

    @property
    def target_bars(self) -> int:
        if self.seconds is not None:
            return max(1, math.ceil(self.seconds / SECONDS_PER_BAR))
        return self.bars


@dataclass
class GeneratedPiece:
    midi_path: Path
    audio_path: Path | None
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
# Weights and schedules


def check_genres(weights: dict[str, float], genres: list[str]) -> None:
    unknown = [g for g in weights if g not in genres]
    if unknown:
        raise ConfigError(
            f"unknown genre {unknown[0]!r}: this model knows {', '.join(genres)}; "
            f"pick from those, for example {genres[0]}=1"
        )


def parse_genre_mix(text: str | None, genres: list[str]) -> dict[str, float]:
    """'lofi=0.7,classical=0.3' -> normalised weights of the named genres (in that order);
    None or '' -> equal weights over `genres` (the model's)."""
    if text is None or not text.strip():
        return {genre: 1.0 / len(genres) for genre in genres}
    weights = parse_weights(text)
    check_genres(weights, genres)
    return check_weights(weights)


def parse_schedule(text: str, genres: list[str]) -> list[tuple[float, dict[str, float]]]:
    """A genre schedule -> keyframes (place 0..1 in the piece, normalised weights).

    'classical->lofi' (or 'a->b->c'): keyframes spread evenly from the first bar to the last;
    'classical@0,lofi@1': explicit places, increasing. A keyframe may itself be a mix, written
    with '+': 'lofi=0.5+classical=0.5@0.5'."""
    hint = "write it like classical->lofi or classical@0,lofi@1"
    text = text.strip()
    specs: list[str]
    places: list[float]
    if "->" in text and "@" in text:
        raise ConfigError(f"genre schedule {text!r} mixes '->' and '@' forms; {hint}")
    if "->" in text:
        specs = [s.strip() for s in text.split("->")]
        if any(not s for s in specs):
            raise ConfigError(f"genre schedule {text!r} has an empty step; {hint}")
        places = [i / (len(specs) - 1) for i in range(len(specs))]
    elif "@" in text:
        specs, places = [], []
        for part in (p.strip() for p in text.split(",")):
            spec, sep, place_text = part.rpartition("@")
            try:
                value = float(place_text)
            except ValueError:
                value = math.nan
            if not sep or not spec.strip() or not 0.0 <= value <= 1.0:
                raise ConfigError(
                    f"genre schedule keyframe {part!r} should be GENRE@PLACE with PLACE in "
                    f"[0, 1] (0 = first bar, 1 = last bar); {hint}"
                )
            specs.append(spec.strip())
            places.append(value)
        if places != sorted(places):
            raise ConfigError(f"genre schedule {text!r}: keyframe places must increase; {hint}")
    else:
        raise ConfigError(f"genre schedule {text!r} needs at least two keyframes; {hint}")
    if len(specs) < 2:
        raise ConfigError(f"genre schedule {text!r} needs at least two keyframes; {hint}")
    keyframes = []
    for spec, place in zip(specs, places, strict=True):
        weights = parse_weights(spec, separators="+,")
        check_genres(weights, genres)
        keyframes.append((place, check_weights(weights)))
    return keyframes


# ---------------------------------------------------------------------------------------
# The sampling loop


@dataclass
class MixPlan:
    """How the rows of a batch are conditioned."""

    method: str  # logits | embedding
    genre_ids: list[int]  # (G,) token ids of the genres taking part
    weights: torch.Tensor  # (n_bars, G) weights per bar, rows sum to 1
    rule: str = "product"
    guidance: float = 0.0
    any_id: int = -1  # Genre_any, the guidance row's condition

    @property
    def conditions(self) -> int:
        """Rows per sample: one per genre (logits) or one mixed row (embedding), + any."""
        base = len(self.genre_ids) if self.method == "logits" else 1
        return base + (1 if self.guidance > 0 else 0)


@dataclass
class Sampling:
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 0.95
    seed: int = 0
    max_tokens_per_bar: int = 256


@dataclass
class SampleResult:
    ids: list[list[int]]  # new ids of each sample (prompt not included)
    bars: list[int]  # new bars of each sample
    steps: int  # decoding steps run
    restarts: int = 0  # cache rebuilds (sliding window, embedding schedule)


def _cache_kwarg(model: GPT2LMHeadModel) -> str:
    """transformers 5 names the KV cache argument `cache`, 4.x `past_key_values`."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


class _Runner:
    """Forward passes over a KV cache for the rows of one batch (S samples x C conditions)."""

    def __init__(self, model: GPT2LMHeadModel, plan: MixPlan, bos_id: int, samples: int):
        import torch

        self.model, self.plan, self.bos_id, self.samples = model, plan, bos_id, samples
        self.device = next(model.parameters()).device
        self.cache_kw = _cache_kwarg(model)
        self.context = int(model.config.n_positions)
        self.cache: Any = None
        self.length = 0  # tokens in the cache (same for every row)
        # embedding: the mixed row's genre embedding is replaced in prefill()
        cond = list(plan.genre_ids) if plan.method == "logits" else plan.genre_ids[:1]
        if plan.guidance > 0:
            cond.append(plan.any_id)
        self.conditions = torch.tensor(cond, device=self.device).repeat(samples)  # (S*C,)

    def prefill(self, window: torch.Tensor, bar_index: torch.Tensor) -> torch.Tensor:
        """Fresh cache from [BOS, condition] + window (S, K) -> last logits (S*C, V)."""
        import torch
        from transformers import DynamicCache

        c = self.plan.conditions
        rows = window.repeat_interleave(c, dim=0)  # (S*C, K)
        bos = torch.full((rows.shape[0], 1), self.bos_id, device=self.device)
        ids = torch.cat([bos, self.conditions.unsqueeze(1), rows], dim=1)  # (S*C, 2+K)
        self.cache = DynamicCache(config=self.model.config)
        self.length = ids.shape[1]
        if self.plan.method == "logits":
            return self._forward(input_ids=ids)
        wte = self.model.get_input_embeddings()
        embeds = wte(ids)  # (S*C, 2+K, D)
        genre_vectors = wte(torch.tensor(self.plan.genre_ids, device=self.device))  # (G, D)
        weights = self.plan.weights.to(self.device)[bar_index].to(genre_vectors.dtype)  # (S, G)
        embeds[0::c, 1] = weights @ genre_vectors  # the mixed rows; any rows keep Genre_any
        return self._forward(inputs_embeds=embeds)

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        """Feed one id per sample (S,) to every row -> next logits (S*C, V)."""
        self.length += 1
        return self._forward(input_ids=ids.repeat_interleave(self.plan.conditions).unsqueeze(1))

    def _forward(self, **inputs: Any) -> torch.Tensor:
        out = self.model(**inputs, use_cache=True, logits_to_keep=1, **{self.cache_kw: self.cache})
        return out.logits[:, -1, :]


def _mixed_scores(logits: torch.Tensor, plan: MixPlan, weights: torch.Tensor) -> torch.Tensor:
    """(S*C, V) logits -> (S, V) scores of the mix (+ guidance). weights: (S, G)."""
    import torch

    from midimix.sampling import apply_guidance, combine_logprobs

    c = plan.conditions
    if c == 1:
        return logits.float()  # one condition: the logits themselves (softmax-equivalent)
    logp = torch.log_softmax(logits.float(), dim=-1).view(-1, c, logits.shape[-1])  # (S, C, V)
    g = len(plan.genre_ids) if plan.method == "logits" else 1
    mixed = (
        combine_logprobs(logp[:, :g], weights, plan.rule) if plan.method == "logits" else logp[:, 0]
    )
    if plan.guidance > 0:
        mixed = apply_guidance(mixed, logp[:, -1], plan.guidance)
    return mixed


def sample_tokens(
    model: GPT2LMHeadModel,
    grammar: Grammar,
    plan: MixPlan,
    sampling: Sampling,
    *,
    bos_id: int,
    num_samples: int = 1,
    target_bars: int | None = 16,
    prompt_ids: list[int] | None = None,
    max_new_tokens: int | None = None,
) -> SampleResult:
    """Sample `num_samples` continuations as one batch.

    With `target_bars`, each sample stops after that many new bars (grammar-checked, see
    `midimix.sampling.grammar_mask`); with `target_bars=None` every sample runs exactly
    `max_new_tokens` steps (the benchmark's fixed length)."""
    import torch

    from midimix.sampling import (
        advance,
        apply_temperature,
        apply_top_k,
        apply_top_p,
        grammar_mask,
        mask_scores,
        sample_ids,
    )

    device = next(model.parameters()).device
    grammar = grammar_to(grammar, device)
    prompt = list(prompt_ids or [])
    runner = _Runner(model, plan, bos_id, num_samples)
    keep_tokens = max(1, runner.context // 2)  # window kept after a restart
    generator = torch.Generator(device=device).manual_seed(sampling.seed)
    st = _prompt_state(grammar, prompt, num_samples, device)
    if max_new_tokens is None:
        bound = 4 * len(grammar.states)  # tokens to reach a bar line from any state
        max_new_tokens = (target_bars or 1) * (sampling.max_tokens_per_bar + bound) + bound
    weights = plan.weights.to(device)
    n_weight_rows = weights.shape[0]

    # every fed id, prompt first: the sliding window and cache rebuilds read from here
    history = torch.zeros(
        num_samples, len(prompt) + max_new_tokens, dtype=torch.long, device=device
    )
    history[:, : len(prompt)] = torch.tensor(prompt, dtype=torch.long, device=device)
    fed = len(prompt)
    kept = torch.zeros(num_samples, max_new_tokens, dtype=torch.bool, device=device)
    bar_index = torch.zeros(num_samples, dtype=torch.long, device=device)
    finished = torch.zeros(num_samples, dtype=torch.bool, device=device)
    restarts, steps = 0, 0
    with torch.inference_mode():
        logits = runner.prefill(history[:, max(0, fed - keep_tokens) : fed], bar_index)
        while steps < max_new_tokens:
            steps += 1
            scores = _mixed_scores(logits, plan, weights[bar_index])
            allowed = grammar_mask(grammar, st, target_bars, sampling.max_tokens_per_bar)
            scores = mask_scores(scores, allowed)
            scores = apply_top_p(
                apply_top_k(apply_temperature(scores, sampling.temperature), sampling.top_k),
                sampling.top_p,
            )
            ids = sample_ids(scores, generator)  # (S,)
            ended = advance(grammar, st, ids, target_bars)
            kept[:, steps - 1] = ~finished & ~ended
            history[:, fed] = ids
            fed += 1
            finished |= ended
            if bool(finished.all()):
                break
            new_index = (st.bars_done - 1).clamp(0, n_weight_rows - 1)
            reweigh = plan.method == "embedding" and bool(
                (weights[new_index] != weights[bar_index]).any()
            )
            bar_index = new_index
            if runner.length + 1 > runner.context:
                logits = runner.prefill(history[:, fed - keep_tokens : fed], bar_index)
                restarts += 1
            elif reweigh:  # the mixed embedding changed: recompute the window under it
                logits = runner.prefill(history[:, fed - (runner.length - 1) : fed], bar_index)
                restarts += 1
            else:
                logits = runner.step(ids)
    new = history[:, len(prompt) : len(prompt) + steps].tolist()
    flags = kept[:, :steps].tolist()
    out = [[i for i, k in zip(r, f, strict=True) if k] for r, f in zip(new, flags, strict=True)]
    return SampleResult(out, st.bars_done.tolist(), steps, restarts)


def _prompt_state(grammar: Grammar, prompt: list[int], rows: int, device: Any) -> Any:
    """Grammar state after the prompt (where it stands in its last bar), new-bar count 0."""
    import torch

    from midimix.sampling import GrammarState, advance

    st = GrammarState.start(1, bar_limit=grammar.default_bar_positions)
    for token in prompt:
        advance(grammar, st, torch.tensor([token]), None)
    state = GrammarState.start(
        rows,
        state=int(st.state[0]),
        bar_has_note=bool(st.bar_has_note[0]),
        cur_pos=int(st.cur_pos[0]),
        bar_limit=int(st.bar_limit[0]),
    )
    for f in dataclasses.fields(state):
        setattr(state, f.name, getattr(state, f.name).to(device))
    return state


def grammar_to(grammar: Grammar, device: Any) -> Grammar:
    import torch

    moved = {
        f.name: getattr(grammar, f.name).to(device)
        for f in dataclasses.fields(grammar)
        if isinstance(getattr(grammar, f.name), torch.Tensor)
    }
    return dataclasses.replace(grammar, **moved)


def tokenizer_grammar(tokenizer: GenreTokenizer) -> Grammar:
    """The grammar tables of a GenreTokenizer: its per-id base tokens and miditok's type graph."""
    from midimix.sampling import SPECIAL_TYPE, build_grammar

    types = tokenizer.token_types()
    base = [[] if t == SPECIAL_TYPE else tokenizer.base_tokens(i) for i, t in enumerate(types)]
    graph = tokenizer.miditok.tokens_types_graph
    positions_per_beat = int(tokenizer.miditok.config.max_num_pos_per_beat)
    return build_grammar(base, graph, tokenizer.eos_id, positions_per_beat)


# ---------------------------------------------------------------------------------------
# Inputs: model, prompt


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


def prompt_kind(path: Path) -> str:
    """'midi' or 'audio' by suffix (or a MIDI header); InputError for anything else."""
    if not path.is_file():
        raise InputError(f"prompt {path} does not exist; give a .mid file or an audio file")
    suffix = path.suffix.lower()
    if suffix in MIDI_SUFFIXES:
        return "midi"
    if suffix in AUDIO_SUFFIXES:
        return "audio"  # decoded (or refused, in one line) by midimix.audio
    with open(path, "rb") as handle:
        if handle.read(4) == b"MThd":
            return "midi"
    raise InputError(
        f"prompt {path} is neither MIDI ({', '.join(MIDI_SUFFIXES)}) nor audio "
        f"({', '.join(AUDIO_SUFFIXES)}); give a MIDI file, or audio to transcribe first"
    )


def transcribe_prompt(path: Path, out_dir: Path) -> Path:
    """Audio prompt -> MIDI through the transcription stage (out_dir/<stem>.prompt.mid)."""
    from midimix.manifest import Item
    from midimix.transcribe import TranscribeConfig, transcribe_clip

    target = Path(out_dir) / f"{path.stem}.prompt.mid"
    record = transcribe_clip(Item(path.stem, "prompt", path, target), TranscribeConfig())
    if not target.is_file():
        reason = record.get("reason", "no notes found")
        raise InputError(f"audio prompt {path} gave no MIDI to continue: {reason}")
    return target


def prompt_ids(path: Path, tokenizer: GenreTokenizer, out_dir: Path) -> list[int]:
    kind = prompt_kind(path)
    try:
        midi = transcribe_prompt(path, out_dir) if kind == "audio" else path
        ids = tokenizer.encode(midi)
    except MidimixError as error:
        raise InputError(f"prompt {path} could not be read: {error}") from error
    if not ids:
        raise InputError(f"prompt {path} has no notes to continue; give a MIDI file with notes")
    return ids


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
    return stem + (f"-{sample}" if config.num_samples > 1 else "")


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


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def generate(model_dir: Path | None, out_dir: Path, config: GenerateConfig) -> list[GeneratedPiece]:
    """Generate `config.num_samples` pieces into `out_dir`; returns what was written."""
    from midimix.model import load_checkpoint

    folder = resolve_model_dir(model_dir)
    out_dir = Path(out_dir)
    device = pick_device(config.device)
    if device == "cpu" and config.threads > 0:
        import torch

        torch.set_num_threads(config.threads)
    model, tokenizer, meta = load_checkpoint(folder, device)
    if not tokenizer.genres:
        raise InputError(
            f"the tokenizer of {folder} has no Genre_<name> tokens, so it cannot be conditioned "
            "on a genre; use a model trained by `python -m midimix.train`"
        )
    n_bars = config.target_bars
    genres, table = weight_table(config, tokenizer.genres, n_bars)
    plan = MixPlan(
        method=config.mix_method,
        genre_ids=[tokenizer.genre_id(g) for g in genres],
        weights=table,
        rule=config.mix_rule,
        guidance=config.guidance,
        any_id=tokenizer.any_id,
    )
    prompt = prompt_ids(config.prompt, tokenizer, out_dir) if config.prompt else []
    sampling = Sampling(
        config.temperature, config.top_k, config.top_p, config.seed, config.max_tokens_per_bar
    )
    start = time.perf_counter()
    result = sample_tokens(
        model,
        tokenizer_grammar(tokenizer),
        plan,
        sampling,
        bos_id=tokenizer.bos_id,
        num_samples=config.num_samples,
        target_bars=n_bars,
        prompt_ids=prompt,
    )
    wall_seconds = time.perf_counter() - start
    mean = table.mean(dim=0)
    weights = {g: round(float(w), 6) for g, w in zip(genres, mean, strict=True)}
    record = {
        "model_dir": str(folder),
        "model_sha256": sha256_file(folder / "model.safetensors"),
        "tokenizer_sha256": sha256_file(folder / "tokenizer.json"),
        "model_step": meta.get("step"),
        "genres": list(tokenizer.genres),
        "genres_used": genres,  # the columns of weights_per_bar
        "weights": weights,
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
        "bars_requested": n_bars,
        "prompt": None
        if config.prompt is None
        else {
            "path": str(config.prompt),
            "sha256": sha256_file(config.prompt),
            "tokens": len(prompt),
        },
        "device": str(next(model.parameters()).device),
        "versions": package_versions(),
        "wall_seconds": round(wall_seconds, 3),
        "tokens_per_second": round(sum(map(len, result.ids)) / max(wall_seconds, 1e-9), 1),
        "config": config_to_dict(config),
    }
    pieces = []
    for s, ids in enumerate(result.ids):
        stem = output_stem(config, weights, s)
        pieces.append(
            _write_piece(tokenizer, prompt + ids, result.bars[s], stem, out_dir, record, config)
        )
    return pieces


def _write_piece(
    tokenizer: GenreTokenizer,
    ids: list[int],
    bars: int,
    stem: str,
    out_dir: Path,
    record: dict[str, Any],
    config: GenerateConfig,
) -> GeneratedPiece:
    midi_path = tokenizer.decode_to_file(ids, out_dir / f"{stem}.mid")
    score = tokenizer.decode(ids)
    seconds = float(score.to("second").end())  # type: ignore[attr-defined]
    audio_path = None
    if config.render:
        audio_path = render_audio(
            midi_path, out_dir / f"{stem}.wav", record["weights"], config.seed
        )
    provenance = {
        **record,
        "midi": str(midi_path),
        "audio": None if audio_path is None else str(audio_path),
        "tokens": len(ids),
        "bars": bars,
        "notes": int(score.note_num()),
        "seconds": round(seconds, 3),
    }
    provenance_path = out_dir / f"{stem}.json"
    atomic_write_json(provenance_path, provenance)
    return GeneratedPiece(
        midi_path,
        audio_path,
        provenance_path,
        ids,
        record["weights"],
        bars,
        int(score.note_num()),
        seconds,
    )


def render_audio(
    midi_path: Path, out_path: Path, weights: dict[str, float], seed: int
) -> Path | None:
    """Audio through the render stage with the mix's weights; None when it is not installed."""
    try:
        from midimix.render import RenderConfig, render
    except ImportError:
        return None
    positive = {g: w for g, w in weights.items() if w > 0}
    return render(midi_path, out_path, RenderConfig(genre_weights=positive, seed=seed))


# ---------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    d = GenerateConfig()
    p = argparse.ArgumentParser(
        prog="midimix generate",
        description="Generate pieces that mix genres by chosen weights.",
    )
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="checkpoint folder (default: the embedded default model)",
    )
    p.add_argument("--out-dir", type=Path, default=OUT_DIR, help=f"output folder ({OUT_DIR})")
    p.add_argument(
        "--prompt",
        type=Path,
        default=None,
        help="MIDI or audio file (transcribed first) to continue (default: none)",
    )
    p.add_argument(
        "--name", default=None, help="output file stem (default: from the mix and the seed)"
    )
    p.add_argument(
        "--no-render",
        action="store_true",
        help="write MIDI only, no audio (default: audio too, when midimix.render is installed)",
    )
    mix = p.add_argument_group("genre mix (default: equal weights over the model's genres)")
    which = mix.add_mutually_exclusive_group()
    which.add_argument(
        "--genre-mix",
        nargs="?",
        const="",
        default=None,
        metavar="G=W,...",
        help="weights like lofi=0.7,classical=0.3; no value: equal weights over the model's genres",
    )
    which.add_argument("--genre", default=None, help="one genre only")
    which.add_argument(
        "--genre-schedule",
        default=None,
        metavar="SCHEDULE",
        help="weights moving bar by bar: classical->lofi, or keyframes classical@0,lofi@1",
    )
    mix.add_argument(
        "--mix-method",
        choices=MIX_METHODS,
        default=d.mix_method,
        help="logits: combine the per-genre next-token log-probabilities; embedding: one "
        "genre-token embedding, the weighted sum of the genres' (default %(default)s)",
    )
    mix.add_argument(
        "--mix-rule",
        choices=("product", "mixture"),
        default=d.mix_rule,
        help="with --mix-method logits: product (sum w*logp) or mixture (log sum w*p) "
        "(default %(default)s)",
    )
    mix.add_argument(
        "--guidance",
        type=float,
        default=d.guidance,
        metavar="S",
        help="classifier-free guidance scale against Genre_any; 0: none (default %(default)s)",
    )
    sampling = p.add_argument_group("sampling")
    sampling.add_argument(
        "--temperature",
        type=float,
        default=d.temperature,
        help="sampling temperature; 1: the model's own distribution (default %(default)s)",
    )
    sampling.add_argument(
        "--top-k",
        type=int,
        default=d.top_k,
        help="sample from the k likeliest tokens only; 0: no top-k cut (default %(default)s)",
    )
    sampling.add_argument(
        "--top-p",
        type=float,
        default=d.top_p,
        help="nucleus sampling: drops the unlikely tail that derails long pieces "
        "(default %(default)s)",
    )
    sampling.add_argument(
        "--seed",
        type=int,
        default=d.seed,
        help="random seed of sampling and rendering (default %(default)s)",
    )
    sampling.add_argument(
        "--max-tokens-per-bar",
        type=int,
        default=d.max_tokens_per_bar,
        help="a bar longer than this is steered to its bar line (default %(default)s)",
    )
    size = p.add_argument_group("length and count (--bars or --seconds)")
    length = size.add_mutually_exclusive_group()
    length.add_argument(
        "--bars",
        type=int,
        default=d.bars,
        help="length of the new material, in bars (default %(default)s)",
    )
    length.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="length in seconds instead, 4/4 at 120 BPM: 2 s per bar (default: --bars)",
    )
    size.add_argument(
        "--num-samples",
        type=int,
        default=d.num_samples,
        help="pieces to generate, together as one batch (default %(default)s)",
    )
    hardware = p.add_argument_group("hardware")
    hardware.add_argument(
        "--device",
        choices=DEVICES,
        default=d.device,
        help="auto: cuda when available, else cpu (default %(default)s)",
    )
    hardware.add_argument(
        "--threads",
        type=int,
        default=d.threads,
        help="CPU threads; 0: torch's default (default %(default)s)",
    )
    return p


@cli_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    mix_text = args.genre if args.genre is not None else args.genre_mix
    genre_mix = parse_weights(mix_text) if mix_text else None
    config = GenerateConfig(
        genre_mix=genre_mix,
        mix_method=args.mix_method,
        mix_rule=args.mix_rule,
        guidance=args.guidance,
        schedule=args.genre_schedule,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        bars=args.bars,
        seconds=args.seconds,
        num_samples=args.num_samples,
        prompt=args.prompt,
        render=not args.no_render,
        max_tokens_per_bar=args.max_tokens_per_bar,
        device=args.device,
        threads=args.threads,
        name=args.name,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the weight-loading bar: noise in one-line output
    for piece in generate(args.model, args.out_dir, config):
        print(piece.text())
    return 0


__all__ = [
    "DEFAULT_MODEL_DIR",
    "GenerateConfig",
    "GeneratedPiece",
    "generate",
    "parse_genre_mix",
    "parse_schedule",
    "sample_tokens",
]

if __name__ == "__main__":
    sys.exit(main())
