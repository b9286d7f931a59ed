"""The generate stage's settings, and the genre mixes and schedules they name.

`GenerateConfig` is also the stage's command line: each field is a flag of `midimix generate`
(see `midimix.options`), its comment the flag's help. Nothing here imports torch, so that
building a config, and `--help`, stay instant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from midimix.config import check_choice, check_range, check_weights, parse_weights
from midimix.errors import ConfigError
from midimix.options import option

MIX_METHODS = ("logits", "embedding")
MIX_RULES = ("product", "mixture")  # the rules midimix.sampling.combine_logprobs knows
DEVICES = ("auto", "cpu", "cuda", "mps")
DEFAULT_BARS = 16
SECONDS_PER_BAR = 4 * 60 / 120  # --seconds counts 4/4 bars at 120 BPM, miditok's default tempo


def _choices(names: tuple[str, ...]) -> dict[str, Any]:
    """A flag that takes one of `names`, listed in its usage line."""
    return {"choices": names, "metavar": "{" + ",".join(names) + "}"}


# --help headings, in the order they are listed; the genre mix flags are built by hand
# (midimix.generate.build_parser): `--genre-mix` alone means equal weights
MIX_GROUP = "genre mix (default: equal weights over the model's genres)"
HOW = "how the genres are mixed"
HARDWARE = "hardware"
_HOW = option(group=HOW)
_SAMPLING = option(group="sampling")
_LENGTH = option(group="length and count (--bars or --seconds)", exclusive="length")
_COUNT = option(group="length and count (--bars or --seconds)")
_OUTPUT = option(group="input and output")
_HARDWARE = option(group=HARDWARE)

Keyframe = tuple[float, dict[str, float]]  # (place in the piece 0..1, normalised weights)


@dataclass
class GenerateConfig:
    """Settings of one generation run: the mix, sampling, length and where the output goes."""

    genre_mix: dict[str, float] | None = None
    # weights like lofi=0.7,classical=0.3 (percentages work too), normalised; none, or the
    # flag alone: equal weights over the model's genres
    schedule: str | None = None
    # weights moving bar by bar: classical->lofi, or keyframes classical@0,lofi@1 (0 = first
    # bar, 1 = last); a keyframe may be a mix: lofi=1+classical=1@0.5
    mix_method: str = field(default="logits", metadata=option(group=HOW, **_choices(MIX_METHODS)))
    # logits: combine the per-genre next-token log-probabilities; embedding: one genre-token
    # embedding, the weighted sum of the genres' (docs/generate.md: how it was chosen)
    mix_rule: str = field(default="product", metadata=option(group=HOW, **_choices(MIX_RULES)))
    # with --mix-method logits: product (sum w*logp) or mixture (log sum w*p)
    guidance: float = field(default=0.0, metadata=_HOW)
    # classifier-free guidance scale against Genre_any; 0: none
    calibrated: bool = field(default=True, metadata=_HOW)
    # two-genre mixes sample at the weight where the model's stored calibration map (fitted
    # by `midimix evaluate sweep --fit-calibration`) says the piece lands at the asked weight
    genre_limits: bool = field(default=True, metadata=_HOW)
    # keep each bar inside what its mix's genres hold in their training data (notes per
    # onset up to the 99th percentile, tempo in the 5th-95th percentile range, their time
    # signatures), from the statistics stored in the model folder
    genre_keys: bool = field(default=True, metadata=_HOW)
    # move each new piece (without a prompt) by at most a tritone to a key its genres' training
    # pieces use, of the mode it was sampled in (training transposes pieces, so the model
    # spreads them over every key); off: the key as sampled
    performance: bool = field(default=True, metadata=_HOW)
    # play each new piece (without a prompt) with the timing and dynamics its genres' training
    # pieces hold between the grid's steps and velocity bins (swing, laid-back bass, chord
    # spreads, accents, note lengths), bar by bar at the bar's weights; off: straight on the grid
    temperature: float = field(default=1.0, metadata=_SAMPLING)
    # sampling temperature; 1: the model's own distribution
    top_k: int = field(default=0, metadata=_SAMPLING)
    # sample from the k likeliest tokens only; 0: no top-k cut
    top_p: float = field(default=0.95, metadata=_SAMPLING)
    # nucleus sampling: drops the unlikely tail that derails long pieces
    seed: int = field(default=0, metadata=_SAMPLING)
    # random seed of sampling and rendering
    max_tokens_per_bar: int = field(default=256, metadata=_SAMPLING)
    # a bar longer than this is steered to its bar line
    bars: int | None = field(default=None, metadata=_LENGTH)
    # length of the new material, in bars; none: 16 bars, or as many as --seconds takes
    seconds: float | None = field(default=None, metadata=_LENGTH)
    # length in seconds instead, counted in 4/4 bars at the mix's median tempo (120 BPM for
    # a model without genre statistics)
    num_samples: int = field(default=1, metadata=_COUNT)
    # pieces to generate, together as one batch
    prompt: Path | None = field(default=None, metadata=_OUTPUT)
    # MIDI or audio file (transcribed first) to continue
    name: str | None = field(default=None, metadata=_OUTPUT)
    # output file stem; none: from the mix and the seed
    progress: bool = field(default=True, metadata=_OUTPUT)
    # a progress bar on stderr, bar by bar
    render: bool = field(default=True, metadata=_OUTPUT)
    # also write <stem>.wav through the render stage (from Python: give generate() a
    # render_audio callback)
    device: str = field(default="auto", metadata=option(group=HARDWARE, **_choices(DEVICES)))
    # auto: cuda when available, else cpu
    threads: int = field(default=1, metadata=_HARDWARE)
    # CPU threads; 0: torch's default. One step's matrices are too small to split

    def __post_init__(self) -> None:
        # text (from the flag) is parsed here, so a bad mix fails the same way, in one line,
        # from Python, from the flag and from a --config file
        if isinstance(self.genre_mix, str):
            text = self.genre_mix
            self.genre_mix = parse_weights(text) if text.strip() else None
        check_choice("mix_method", self.mix_method, MIX_METHODS)
        check_choice("mix_rule", self.mix_rule, MIX_RULES)
        check_range("guidance", self.guidance, 0.0, 20.0)
        check_range("temperature", self.temperature, 0.05, 5.0)
        check_range("top_k", self.top_k, 0, None)
        if not 0.0 < self.top_p <= 1.0:  # written so that NaN fails too
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.bars is not None and self.seconds is not None:
            raise ConfigError(
                f"give the length as bars or as seconds, not both (got bars={self.bars}, "
                f"seconds={self.seconds:g})"
            )
        if self.bars is not None:
            check_range("bars", self.bars, 1, 4096)
        if self.seconds is not None:
            check_range("seconds", self.seconds, 0.5, 3600.0)
        check_range("num_samples", self.num_samples, 1, 1024)
        check_range("max_tokens_per_bar", self.max_tokens_per_bar, 8, 100_000)
        check_choice("device", self.device, DEVICES)
        check_range("threads", self.threads, 0, 1024)
        if self.genre_mix is not None:
            self.genre_mix = check_weights(self.genre_mix)
        if self.schedule is not None:
            if self.genre_mix is not None:
                raise ConfigError(
                    "give either a genre mix or a genre schedule, not both: the schedule sets "
                    "the weights bar by bar"
                )
            parse_schedule(self.schedule)  # its form; the genres are checked against the model
        if self.prompt is not None:
            self.prompt = Path(self.prompt)

    @property
    def target_bars(self) -> int:
        return self.bars_at(None)

    def bars_at(self, tempo_bpm: float | None) -> int:
        """Bars of new material; --seconds counts 4/4 bars at `tempo_bpm` (None: 120)."""
        if self.seconds is not None:
            seconds_per_bar = SECONDS_PER_BAR if not tempo_bpm else 4 * 60 / tempo_bpm
            return max(1, math.ceil(self.seconds / seconds_per_bar))
        return DEFAULT_BARS if self.bars is None else self.bars


def check_genres(weights: dict[str, float], genres: list[str]) -> None:
    """Every genre named in `weights` is one of the model's `genres`."""
    unknown = [g for g in weights if g not in genres]
    if unknown:
        raise ConfigError(
            f"unknown genre {unknown[0]!r}: this model knows {', '.join(genres)}; "
            f"pick from those, for example {genres[0]}=1"
        )


def parse_genre_mix(text: str | None, genres: list[str]) -> dict[str, float]:
    """'lofi=0.7,classical=0.3' -> normalised weights of the named genres (in that order),
    checked against the model's `genres`; None or '' -> equal weights over `genres`."""
    if text is None or not text.strip():
        return {genre: 1.0 / len(genres) for genre in genres}
    weights = parse_weights(text)
    check_genres(weights, genres)
    return check_weights(weights)


def parse_schedule(text: str, genres: list[str] | None = None) -> list[Keyframe]:
    """A genre schedule -> keyframes (place 0..1 in the piece, normalised weights).

    'classical->lofi' (or 'a->b->c'): keyframes spread evenly from the first bar to the last;
    'classical@0,lofi@1': explicit places, increasing. A keyframe may itself be a mix, written
    with '+': 'lofi=0.5+classical=0.5@0.5'. With `genres` (the model's), every name is checked
    against them."""
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
        if genres is not None:
            check_genres(weights, genres)
        keyframes.append((place, check_weights(weights)))
    return keyframes
