"""What a render is asked for: `RenderConfig`, whose fields are also render's command line.

Kept apart from the synthesizer and the stage so that the instrument plan, the synthesizer
and `midimix render --help` can all read it without loading FluidSynth or pedalboard."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from midimix.config import check_choice, check_range, check_weights, parse_shard, parse_weights
from midimix.errors import ConfigError
from midimix.lofi import LofiConfig
from midimix.options import option

LOFI_GENRE = "lofi"
FORMATS = ("wav", "flac", "mp3")
DRUM_MODES = ("auto", "on", "off")

# RenderConfig fields that hold a General MIDI program (checked 0..127)
PROGRAM_FIELDS = (
    "lofi_keys_program",
    "lofi_bass_program",
    "lofi_drum_kit",
    "classical_keys_program",
    "classical_bass_program",
    "strings_program",
)

# headings of `midimix render --help`
FILES = "audio format"
MIX = "genre mix and effects"
PROGRAMS = "instruments (General MIDI programs 0..127)"
LEVEL = "loudness and length"
RUN = "how it runs (several inputs or --out-dir)"


def _one_of(choices: tuple[str, ...]) -> str:
    return "|".join(choices)


def _in(group: str, default: Any, **extra: Any) -> Any:
    """A field listed under `group` in --help (its comment stays the help text)."""
    return field(default=default, metadata=option(group=group, **extra))


@dataclass
class RenderConfig:
    soundfont: Path | None = _in(MIX, None, metavar="SF2")  # SoundFont .sf2 file
    # (none: $MIDIMIX_SOUNDFONT, soundfonts/, then the system's General MIDI SoundFont)
    sample_rate_hz: int = _in(FILES, 44_100, aliases=("--sample-rate",))  # Hz, 8000..192000
    # (44,100, the CD rate, is FluidSynth's own default)
    genre_weights: dict[str, float] | None = field(
        default=None,
        metadata=option(
            aliases=("--genre-mix",),
            parse=str,  # read by parse_weights in __post_init__: one message, one exit status
            metavar="MIX",
            group=MIX,
            help="the genre mix, e.g. lofi=0.7,classical=0.3 (a bare name weighs 1): it picks "
            "the instruments and the depth of the lo-fi chain; none: the file's own "
            "instruments and no effects",
        ),
    )
    lofi_amount: float | None = _in(MIX, None)  # 0..1, depth of the lo-fi chain
    # (none: the mix's lo-fi weight)
    lofi_per_bar: tuple[float, ...] | None = _in(MIX, None)  # 0..1 per bar: the chain's
    # depth follows a genre schedule bar by bar (crossfaded); none: one depth for the piece
    drums: str = _in(
        MIX, "auto", choices=DRUM_MODES, metavar=_one_of(DRUM_MODES)
    )  # add a laid-back drum pattern to
    # drumless pieces; auto: only when the lo-fi weight is at least --drums-threshold
    drums_threshold: float = _in(MIX, 0.5)  # 0..1, the lo-fi weight at which `auto` adds drums
    target_lufs: float = _in(LEVEL, -16.0)  # loudness the audio is normalised to, in LUFS
    # (-16: streaming-platform loudness for stereo music)
    peak_dbfs: float = _in(LEVEL, -1.0)  # sample-peak ceiling after normalisation, in dBFS
    format: str = _in(FILES, "wav", choices=FORMATS, metavar=_one_of(FORMATS))  # audio file format
    bit_depth: int = _in(
        FILES, 16, choices=(16, 24), metavar="16|24"
    )  # bits per sample of WAV and FLAC
    tail_seconds: float = _in(LEVEL, 1.5)  # rendered after the last note ends, for the
    # release and reverb
    max_seconds: float = _in(LEVEL, 1_200.0)  # longer pieces are refused before any audio
    # is made (1,200 s is ~420 MB of float32 stereo in memory)
    lofi_keys_program: int = _in(PROGRAMS, 4)  # lo-fi: melodic tracks (Rhodes electric piano)
    lofi_bass_program: int = _in(PROGRAMS, 33)  # lo-fi: bass tracks (fingered electric bass)
    lofi_drum_kit: int = _in(PROGRAMS, 25)  # lo-fi: drum kit, a bank-128 preset (TR-808 kit)
    classical_keys_program: int = _in(PROGRAMS, 0)  # classical: melodic tracks (grand piano)
    classical_bass_program: int = _in(PROGRAMS, 43)  # classical: bass tracks (contrabass)
    strings: bool = _in(PROGRAMS, False)  # classical: a string layer under the piano
    strings_program: int = _in(PROGRAMS, 48)  # classical: the --strings layer (string ensemble)
    synth_gain: float = _in(LEVEL, 0.2)  # FluidSynth's master gain, 0.01..10 (0.2 is its
    # default; the float output never clips, and loudness is normalised afterwards anyway)
    seed: int = _in(MIX, 0)  # humanising of the added drums (the vinyl noise has --lofi.seed)
    lofi: LofiConfig = field(default_factory=LofiConfig)
    workers: int = _in(RUN, 1)  # processes, each with its own synthesizer
    shard: str | None = _in(RUN, None, metavar="K/N")  # render only this shard of the inputs

    def __post_init__(self) -> None:
        if self.soundfont is not None:
            self.soundfont = Path(self.soundfont)
        check_range("sample_rate_hz", self.sample_rate_hz, 8_000, 192_000)
        if self.lofi_amount is not None:
            check_range("lofi_amount", self.lofi_amount, 0, 1)
        if self.lofi_per_bar is not None:
            self.lofi_per_bar = tuple(self.lofi_per_bar)
            for depth in self.lofi_per_bar:
                check_range("lofi_per_bar", depth, 0, 1)
        check_choice("drums", self.drums, DRUM_MODES)
        check_range("drums_threshold", self.drums_threshold, 0, 1)
        check_range("target_lufs", self.target_lufs, -70, -1)
        check_range("peak_dbfs", self.peak_dbfs, -20, 0)
        check_choice("format", self.format, FORMATS)
        if self.bit_depth not in (16, 24):
            raise ConfigError(f"bit_depth must be 16 or 24, got {self.bit_depth!r}")
        check_range("tail_seconds", self.tail_seconds, 0, 30)
        check_range("max_seconds", self.max_seconds, 1, 24 * 3600)
        for name in PROGRAM_FIELDS:
            check_range(name, getattr(self, name), 0, 127)
        check_range("synth_gain", self.synth_gain, 0.01, 10)
        check_range("workers", self.workers, 1, 256)
        parse_shard(self.shard)
        weights: Any = self.genre_weights
        if isinstance(weights, str):  # "lofi=0.7,classical=0.3", from a flag or a config file
            weights = parse_weights(weights)
        if weights is not None:
            self.genre_weights = check_weights(dict(weights))

    @property
    def lofi_weight(self) -> float:
        return (self.genre_weights or {}).get(LOFI_GENRE, 0.0)

    @property
    def effective_lofi_amount(self) -> float:
        return self.lofi_weight if self.lofi_amount is None else self.lofi_amount

    def wants_drums(self, score_has_drums: bool) -> bool:
        if score_has_drums or self.drums == "off":
            return False
        return self.drums == "on" or self.lofi_weight >= self.drums_threshold
