"""Render MIDI to audio: FluidSynth for the instruments, then the lo-fi chain, then loudness.

The genre mix picks the instruments (instruments.py), one FluidSynth synthesizer loaded once
plays them (synth.py), the lo-fi chain adds its sound as deep as the mix is lo-fi (lofi.py),
and the result is normalised to a target loudness (loudness.py). This module is the stage:
one file (`render`, `render_file`), many files (`render_many`, resumable) and the command line.

    python -m midimix.render piece.mid -o piece.wav --genre-mix lofi=0.7,classical=0.3
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from midimix.config import OUT_DIR, config_to_dict, parse_shard, save_config
from midimix.errors import ConfigError, DependencyError, InputError, cli_errors
from midimix.instruments import DRUM_BANK, Layer, assign_channels, channel_volume, plan_layers
from midimix.lofi import apply_chain, build_chain
from midimix.loudness import normalise_loudness
from midimix.manifest import (
    Item,
    Manifest,
    StageSummary,
    atomic_path,
    atomic_write_json,
    cores_per_worker,
    disk_full_error,
    disk_is_full,
    run_items,
)
from midimix.midifile import bar_start_ticks, load_score
from midimix.options import add_config_arguments, config_from_args, stage_parser
from midimix.render_config import FORMATS, LOFI_GENRE, RenderConfig
from midimix.soundfont import find_soundfont
from midimix.synth import Synthesizer

__all__ = [  # what `from midimix.render import ...` has always given
    "DRUM_BANK",
    "RenderConfig",
    "RenderResult",
    "Renderer",
    "channel_volume",
    "find_soundfont",
    "main",
    "normalise_loudness",
    "plan_layers",
    "render",
    "render_file",
    "render_many",
]

# symusic's type stubs are generic placeholders that know no attributes: plain Any here
Score = Any


@dataclass
class RenderResult:
    path: Path
    seconds: float
    sample_rate_hz: int
    lufs: float
    peak_dbfs: float
    lofi_amount: float
    drums_added: bool
    layers: list[dict[str, Any]]


class Renderer:
    """One synthesizer and a config: MIDI file in, audio file (and its record) out."""

    def __init__(self, config: RenderConfig) -> None:
        self.config = config
        self.soundfont = find_soundfont(config.soundfont)
        threads = cores_per_worker(config.workers)
        self.synth = Synthesizer(self.soundfont, config.sample_rate_hz, config.synth_gain, threads)

    def close(self) -> None:
        self.synth.close()

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def prepare(self, midi_path: Path) -> tuple[Score, list[Layer], bool]:
        """The seconds-time score (drums added if wanted), its layers, whether drums were added."""
        from midimix.drums import drum_track, has_drums, style_of_keys

        score = load_score(midi_path, require_notes=True)
        add_drums = self.config.wants_drums(has_drums(score))
        if add_drums:
            end_tick = max(int(track.end()) for track in score.tracks if track.note_num())
            style = style_of_keys(score, self.config.seed)  # in the keys' groove, not against it
            score.tracks.append(drum_track(score, end_tick, style))
        seconds_score = score.to("second")
        layers = assign_channels(plan_layers(seconds_score, self.config), self.synth.channels)
        if add_drums:  # the added kit sits a little under the keys, louder as lo-fi grows
            layers[-1].gain = 0.8 * max(self.config.lofi_weight, 0.5)
        return seconds_score, layers, add_drums

    def synthesize(self, midi_path: Path) -> tuple[np.ndarray, list[Layer], bool]:
        """Clean stereo audio (samples, 2) float32, before effects and loudness."""
        score, layers, drums_added = self.prepare(midi_path)
        rate = self.config.sample_rate_hz
        end_seconds = max(float(t.end()) for t in score.tracks if t.note_num())
        total_seconds = end_seconds + self.config.tail_seconds
        if total_seconds > self.config.max_seconds:
            raise InputError(
                f"{midi_path} lasts {end_seconds:.0f} s, longer than max_seconds="
                f"{self.config.max_seconds:g} (about {self.config.max_seconds * rate * 8 / 1e6:.0f}"
                f" MB of audio in memory); split it or raise --max-seconds"
            )
        audio = self.synth.play(score, layers, int(round(total_seconds * rate)))
        return audio, layers, drums_added

    def render(
        self, midi_path: Path, out_path: Path, after_synthesis: Callable[[], object] | None = None
    ) -> RenderResult:
        """MIDI -> instruments -> lo-fi chain -> loudness -> file (written atomically).
        `after_synthesis` is called once the synthesizer is done: work started there shares
        the cores with the effects, not with the synthesizer's threads."""
        config = self.config
        out_path = Path(out_path)
        check_suffix(out_path, config.format)  # before minutes of synthesis, not after
        rate = config.sample_rate_hz
        clean, layers, drums_added = self.synthesize(midi_path)
        if after_synthesis is not None:
            after_synthesis()
        amount = config.effective_lofi_amount
        if config.lofi_per_bar:  # a schedule: the depth moves bar by bar
            depths = config.lofi_per_bar
            amount = sum(depths) / len(depths)
            deepest = max(depths)
            wet = apply_chain(build_chain(config.lofi, deepest, rate), clean.T, rate).T
            starts = bar_start_seconds(load_score(midi_path, require_notes=True), len(depths))
            mix = depth_envelope(starts, depths, len(clean), rate) / max(deepest, 1e-9)
            audio = clean * (1.0 - mix[:, None]) + wet * mix[:, None]
        else:
            audio = apply_chain(build_chain(config.lofi, amount, rate), clean.T, rate).T
        audio, lufs = normalise_loudness(audio, rate, config.target_lufs, config.peak_dbfs)
        write_audio(out_path, audio, rate, config.format, config.bit_depth)
        peak = float(np.max(np.abs(audio)))
        result = RenderResult(
            path=out_path,
            seconds=len(audio) / rate,
            sample_rate_hz=rate,
            lufs=round(lufs, 2),
            peak_dbfs=round(20 * math.log10(max(peak, 1e-12)), 2),
            lofi_amount=amount,
            drums_added=drums_added,
            layers=[asdict(layer) for layer in layers],
        )
        from midimix.audio import sidecar_path  # (soundfile: not for --help)

        sidecar = {k: v for k, v in asdict(result).items() if k != "path"}
        sidecar.update(
            midi=str(midi_path), soundfont=str(self.soundfont), config=config_to_dict(config)
        )
        atomic_write_json(sidecar_path(out_path), sidecar)
        return result


def bar_start_seconds(score: Any, bars: int) -> list[float]:
    """When each of the first `bars` bars starts, in seconds, from the score's time
    signatures (4/4 before the first) and tempo map."""
    tpq = int(score.ticks_per_quarter)
    ticks = bar_start_ticks(score, bars)
    tempos = sorted((int(t.time), float(t.qpm)) for t in score.tempos) or [(0, 120.0)]
    seconds = []
    for target in ticks:
        elapsed, at, qpm = 0.0, 0, tempos[0][1]
        for time, next_qpm in tempos:
            if time >= target:
                break
            elapsed += (time - at) / tpq * 60.0 / qpm
            at, qpm = time, next_qpm
        seconds.append(elapsed + (target - at) / tpq * 60.0 / qpm)
    return seconds


def depth_envelope(
    starts_s: list[float], depths: tuple[float, ...], samples: int, sample_rate_hz: int
) -> np.ndarray:
    """(samples,) depth per sample: each bar's depth at its middle, linear in between, held
    before the first middle and after the last."""
    ends = [
        *starts_s[1:],
        starts_s[-1] + (starts_s[-1] - starts_s[-2] if len(starts_s) > 1 else 2.0),
    ]
    middles = [(a + b) / 2 for a, b in zip(starts_s, ends, strict=True)]
    t = np.arange(samples) / sample_rate_hz
    return np.interp(t, middles, depths).astype(np.float32)


def suffix_format(path: Path) -> str:
    """The audio format a file name asks for: piece.mp3 -> "mp3"; ConfigError for a suffix
    that is none of FORMATS (render writes nothing its name would misdescribe)."""
    suffix = Path(path).suffix
    fmt = suffix.lower().removeprefix(".")
    if fmt not in FORMATS:
        problem = f"{suffix} is not an audio format render writes" if suffix else "no suffix"
        raise ConfigError(
            f"{path}: {problem}; end the output name with {', '.join('.' + f for f in FORMATS)}"
        )
    return fmt


def check_suffix(path: Path, fmt: str) -> None:
    """Refuse to write `fmt` data under a name whose suffix says otherwise (FLAC in a .wav)."""
    named = suffix_format(path)
    if named != fmt:
        raise ConfigError(
            f"{path} ends in .{named} but the format asked for is {fmt}; name it .{fmt}, or "
            f"ask for {named} (--format {named})"
        )


def write_audio(
    path: Path, audio: np.ndarray, sample_rate_hz: int, fmt: str, bit_depth: int
) -> None:
    """Write (samples, channels) float audio atomically as WAV, FLAC or MP3."""
    import soundfile as sf

    path = Path(path)
    if fmt == "mp3" and "MP3" not in sf.available_formats():
        raise DependencyError(
            "MP3 needs libsndfile >= 1.1 with MPEG support; write --format flac or wav instead"
        )
    subtype = {"wav": f"PCM_{bit_depth}", "flac": f"PCM_{bit_depth}", "mp3": "MPEG_LAYER_III"}[fmt]
    with atomic_path(path) as tmp:
        try:
            sf.write(str(tmp), audio, sample_rate_hz, subtype=subtype, format=fmt.upper())
        except sf.LibsndfileError:
            if disk_is_full(path):  # libsndfile words ENOSPC as "System error."
                raise disk_full_error(path) from None
            raise


# ---------------------------------------------------------------------------------------------
# Public functions


@functools.lru_cache(maxsize=2)
def _cached_renderer(soundfont: Path, sample_rate_hz: int, synth_gain: float) -> Renderer:
    return Renderer(RenderConfig(soundfont, sample_rate_hz, synth_gain=synth_gain))


def _renderer_for(config: RenderConfig) -> Renderer:
    """A loaded synthesizer for this SoundFont and rate: loaded once, then reused."""
    soundfont = find_soundfont(config.soundfont).resolve()
    renderer = _cached_renderer(soundfont, config.sample_rate_hz, config.synth_gain)
    renderer.config = config
    return renderer


def render(
    midi_path: Path,
    out_path: Path,
    config: RenderConfig | None = None,
    after_synthesis: Callable[[], object] | None = None,
) -> Path:
    """Render one MIDI file to `out_path` (format from the config); returns the path."""
    return render_file(midi_path, out_path, config or RenderConfig(), after_synthesis).path


def render_piece(
    midi_path: Path,
    weights: dict[str, float],
    seed: int = 0,
    weights_per_bar: list[dict[str, float]] | None = None,
    after_synthesis: Callable[[], object] | None = None,
) -> Path:
    """<stem>.wav beside a generated <stem>.mid, instruments and lo-fi depth following the
    mix's weights (and, for a schedule, the lo-fi depth following each bar's weights): the
    `render_audio` callback that `generate` takes. `after_synthesis`: see `Renderer.render`."""
    positive = {genre: weight for genre, weight in weights.items() if weight > 0}
    per_bar = None
    if weights_per_bar and len({round(w.get(LOFI_GENRE, 0.0), 6) for w in weights_per_bar}) > 1:
        per_bar = tuple(w.get(LOFI_GENRE, 0.0) for w in weights_per_bar)
    config = RenderConfig(genre_weights=positive or None, seed=seed, lofi_per_bar=per_bar)
    return render(midi_path, Path(midi_path).with_suffix(".wav"), config, after_synthesis)


def render_file(
    midi_path: Path,
    out_path: Path,
    config: RenderConfig,
    after_synthesis: Callable[[], object] | None = None,
) -> RenderResult:
    """Like `render`, with the measurements (duration, LUFS, peak, instruments)."""
    return _renderer_for(config).render(Path(midi_path), Path(out_path), after_synthesis)


_WORKER: dict[str, Renderer] = {}


def _init_worker(config: RenderConfig) -> None:
    _WORKER["renderer"] = Renderer(config)


def _render_item(item: Item) -> dict[str, Any]:
    from midimix.audio import sidecar_path

    result = _WORKER["renderer"].render(item.source, item.output)
    return {
        "outputs": [str(result.path), str(sidecar_path(result.path))],
        "seconds_audio": round(result.seconds, 3),
        "lufs": result.lufs,
        "lofi_amount": result.lofi_amount,
        "drums_added": result.drums_added,
    }


def _items(midi_paths: Iterable[Path], out_dir: Path, fmt: str, genre: str) -> list[Item]:
    items: list[Item] = []
    seen: dict[str, int] = {}
    for path in map(Path, midi_paths):
        count = seen[path.stem] = seen.get(path.stem, 0) + 1
        item_id = path.stem if count == 1 else f"{path.stem}-{count}"
        items.append(Item(item_id, genre, path, Path(out_dir) / f"{item_id}.{fmt}"))
    return items


def render_many(
    midi_paths: Sequence[Path],
    out_dir: Path,
    config: RenderConfig | None = None,
    progress: bool = True,
) -> StageSummary:
    """Render many MIDI files into `out_dir` with one synthesizer per worker (resumable)."""
    config = config or RenderConfig()
    find_soundfont(config.soundfont)  # fail before any work when there is none
    weights = config.genre_weights or {}
    genre = "+".join(f"{g}{w:.2f}" for g, w in weights.items()) or "as-written"
    out_dir = Path(out_dir)
    items = _items(midi_paths, out_dir, config.format, genre)
    params = config_to_dict(config)
    for key in ("workers", "shard"):  # how the work is split does not change the output
        params.pop(key)
    save_config(config, out_dir, "render")
    return run_items(
        "render",
        items,
        _render_item,
        Manifest(out_dir / "manifest.jsonl"),
        params,
        workers=config.workers,
        shard=parse_shard(config.shard),
        known_errors=(InputError,),
        initializer=functools.partial(_init_worker, config),
        progress=progress,
    )


# ---------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser("render", __doc__)
    parser.add_argument("midi", nargs="+", type=Path, help="MIDI files to render")
    files = parser.add_argument_group("files")
    out = files.add_mutually_exclusive_group()
    out.add_argument(
        "-o",
        "--out",
        type=Path,
        help=f"output file, one input only; its suffix (.wav, .flac, .mp3) is the format "
        f"(default {OUT_DIR}/<MIDI name>.<format>)",
    )
    out.add_argument(
        "--out-dir",
        type=Path,
        help=f"output folder, resumable, for several inputs (default {OUT_DIR}/)",
    )
    files.add_argument(
        "--compare-png",
        type=Path,
        help="one input: also write before/after spectrograms of the lo-fi chain",
    )
    add_config_arguments(parser, RenderConfig)
    return parser


def _write_comparison(renderer: Renderer, midi: Path, png: Path) -> None:
    """Spectrograms of the clean render and of the lo-fi chain's, side by side (inspect's)."""
    from midimix.inspect import InspectConfig, compare_figure, save_figure

    config = renderer.config
    rate = config.sample_rate_hz
    clean, _, _ = renderer.synthesize(midi)
    wet = apply_chain(build_chain(config.lofi, config.effective_lofi_amount, rate), clean.T, rate).T
    before, _ = normalise_loudness(clean, rate, config.target_lufs, config.peak_dbfs)
    after, _ = normalise_loudness(wet, rate, config.target_lufs, config.peak_dbfs)
    view = InspectConfig()
    figure = compare_figure(
        (before.mean(axis=1), rate), (after.mean(axis=1), rate), ("clean render", "lo-fi chain"),
        view,
    )  # fmt: skip
    save_figure(figure, png, view.dpi)


@cli_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(RenderConfig, args)
    single = len(args.midi) == 1 and args.out_dir is None
    if args.out is not None and not single:
        raise ConfigError("-o/--out takes one input file; use --out-dir for several")
    if not single:
        summary = render_many(args.midi, args.out_dir or OUT_DIR, config)
        print(summary.text())
        return summary.exit_code
    out = args.out or OUT_DIR / f"{args.midi[0].stem}.{config.format}"
    if args.out is not None and not hasattr(args, "format"):  # the name's suffix decides
        config = dataclasses.replace(config, format=suffix_format(out))
    result = render_file(args.midi[0], out, config)
    drums = ", drums added" if result.drums_added else ""
    print(
        f"wrote {result.path} ({result.seconds:.1f} s, {result.lufs:.1f} LUFS, peak "
        f"{result.peak_dbfs:.1f} dBFS, lo-fi amount {result.lofi_amount:.2f}{drums})"
    )
    if args.compare_png:
        _write_comparison(_renderer_for(config), args.midi[0], args.compare_png)
        print(f"wrote {args.compare_png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
