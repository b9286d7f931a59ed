"""Transcribe: 30-second clips to beat-aligned MIDI with basic-pitch's ICASSP-2022 model.

data/clips/<genre>/<id>.wav -> data/midi/<genre>/<id>.mid, under the stage contract (resumable,
atomic, manifest, workers, shards). The model runs on onnxruntime directly, one session per
worker; notes come from basic-pitch's own note creation; the MIDI's tempo map follows the
beats that librosa finds, so bars and beats in the MIDI fall where the music's do.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from midimix.config import (
    CLIPS_DIR,
    MIDI_DIR,
    as_mapping,
    check_choice,
    check_range,
    parse_shard,
    save_config,
)
from midimix.errors import ConfigError, InputError, cli_errors
from midimix.jit_cache import compile_once, use_user_cache
from midimix.manifest import (
    STATUS_EMPTY,
    Item,
    Manifest,
    StageSummary,
    cores_per_worker,
    run_items,
)
from midimix.options import add_config_arguments, config_from_args, option, stage_parser
from midimix.transcribe_beats import (
    MIN_DRUM_SHARE,
    drum_hits,
    percussive_share,
    spectral_flatness,
    track_beats,
    write_midi,
)

use_user_cache()  # before librosa is imported, here and in every worker (midimix.jit_cache)

SAMPLE_RATE_HZ = 22050  # basic-pitch's rate
FFT_HOP = 256  # basic-pitch's model hop: one output frame per 256 samples
WINDOW_SAMPLES = 2 * SAMPLE_RATE_HZ - FFT_HOP  # the model's input window (just under 2 s)
OVERLAP_FRAMES = 30  # frames shared by neighbouring windows, as basic-pitch's predict uses
OVERLAP_SAMPLES = OVERLAP_FRAMES * FFT_HOP
HOP_SAMPLES = WINDOW_SAMPLES - OVERLAP_SAMPLES
WINDOW_FRAMES = 172  # model output frames per window
EDGE_FRAMES = OVERLAP_FRAMES // 2  # zeros in front of the audio, as basic-pitch's predict pads
# the aligned layout's least overlap between neighbouring windows, crossfaded: 16 windows for
# a 30 s clip instead of predict's 19 (docs/transcribe.md)
MIN_SEAM_FRAMES = 8
WINDOW_LAYOUTS = ("aligned", "basic-pitch")
TICKS_PER_BEAT = 480
TEMPO_MAPS = ("beats", "constant", "off")
ONSET_THRESHOLD = 0.7  # measured best on the round-trip set (basic-pitch's own: 0.5)
HPSS_ONSET_THRESHOLD = 0.5  # measured best on the harmonic part of the lo-fi pieces
# the default onset threshold is per clip: ONSET_RATIO x the clip's onset level (the 99.99th
# percentile of its onset activations), at most the thresholds above; tuned on degraded audio
# with the clean round-trip set held to its score (docs/transcribe.md, bench_degraded_notes.py)
ONSET_RATIO = 0.78
ONSET_FLOOR = 0.2  # the per-clip threshold is at most this far below its cap
ONSET_LEVEL_QUANTILE = 0.9999
_LEVEL_BINS = 1 << 14  # the level is read off a histogram of this many bins over 0-1
_ONNX_OUTPUTS = (
    "StatefulPartitionedCall:1",
    "StatefulPartitionedCall:2",
    "StatefulPartitionedCall:0",
)
_ONNX_INPUT = "serving_default_input_2:0"


# how the fields are offered as flags: --help sections (the notes' is the default) and choices
_EMPTY = option(group="inputs that give no MIDI (recorded as empty)")
_RUN = option(group="how it runs")
_SHARD = option(group="how it runs", metavar="K/N")
_TEMPO_MAP = option(choices=TEMPO_MAPS, metavar="{" + ",".join(TEMPO_MAPS) + "}")
_LAYOUT = option(
    choices=WINDOW_LAYOUTS, group="how it runs", metavar="{" + ",".join(WINDOW_LAYOUTS) + "}"
)


@dataclass
class TranscribeConfig:
    """Note thresholds chosen by sweeps on the round-trip set and on degraded audio
    (docs/transcribe.md): onset F1 0.88 on the clean round-trip set against 0.66 for
    basic-pitch's own defaults (onset 0.5, frame 0.3, 127.7 ms, melodia)."""

    onset_threshold: float | None = None  # onset activation that starts a note, the same for
    # every clip; none: per clip, --onset-ratio x the clip's onset level, at most 0.7 (F1 peaks
    # there on clean audio) or 0.5 with --hpss, whose harmonic part has softer attacks
    onset_ratio: float = ONSET_RATIO  # with no --onset-threshold: the ratio to the clip's onset
    # level (99.99th percentile of its onset activations, 0.76-0.95 measured): a clip the model
    # hears less surely (noise, lo-fi) gets a lower threshold
    frame_threshold: float = 0.25  # activation that keeps a note sounding
    min_note_ms: float = 127.7  # shorter notes are dropped (92.9 ms scored the same)
    min_pitch_hz: float | None = None  # drop notes below (none: the model's range, from A0)
    max_pitch_hz: float | None = None  # drop notes above (none: up to C8)
    melodia: bool = False  # basic-pitch's "melodia trick", notes without an onset (-0.2 F1)
    tempo_map: str = field(default="beats", metadata=_TEMPO_MAP)  # beats: the tempo follows
    # the tracked beats; constant: one tracked tempo; off: 120 BPM as basic-pitch writes
    tempo_range: str | None = field(default=None, metadata=option(metavar="LO-HI"))  # BPM range
    # the music's tempo lies in (e.g. 60-90 for lo-fi): the estimate is doubled or halved into
    # it; none: the tracker's prior (centre 110 BPM) decides between double and half
    hpss: bool = False  # transcribe the harmonic part only, so drums do not become notes
    drums: bool = False  # add the percussive onsets as a General MIDI drum track
    max_flatness: float = field(default=0.3, metadata=_EMPTY)  # a clip with a higher mean
    # spectral flatness is noise: no notes written
    min_audio_seconds: float = field(default=2.0, metadata=_EMPTY)  # less audio than this
    # before the zero padding (one model window): nothing written
    window_layout: str = field(default="aligned", metadata=_LAYOUT)  # aligned: windows start
    # on whole model frames, overlap by 8+ frames and are crossfaded (16 windows for 30 s),
    # note times exact; basic-pitch: predict's windows, times and notes (19 for 30 s)
    batch_windows: int = field(default=1, metadata=_RUN)  # model windows per inference call
    # (1 measured fastest on CPU)
    threads: int = field(default=0, metadata=_RUN)  # onnxruntime threads per worker (0: cores
    # / workers)
    workers: int = field(default=1, metadata=_RUN)  # worker processes (one clip each)
    shard: str | None = field(default=None, metadata=_SHARD)  # run only shard K of N
    progress: bool = field(default=True, metadata=_RUN)  # progress bar on stderr

    def __post_init__(self) -> None:
        if self.onset_threshold is not None:
            check_range("onset_threshold", self.onset_threshold, 0.0, 1.0)
        check_range("onset_ratio", self.onset_ratio, 0.0, 2.0)
        check_range("frame_threshold", self.frame_threshold, 0.0, 1.0)
        check_range("min_note_ms", self.min_note_ms, 0.0, 10_000.0)
        for name in ("min_pitch_hz", "max_pitch_hz"):
            value = getattr(self, name)
            if value is not None:
                check_range(name, value, 20.0, 11_025.0)
        if self.min_pitch_hz and self.max_pitch_hz and self.min_pitch_hz >= self.max_pitch_hz:
            raise ConfigError(
                f"min_pitch_hz ({self.min_pitch_hz}) must be below max_pitch_hz "
                f"({self.max_pitch_hz})"
            )
        check_choice("tempo_map", self.tempo_map, TEMPO_MAPS)
        self.tempo_bounds()
        check_choice("window_layout", self.window_layout, WINDOW_LAYOUTS)
        check_range("max_flatness", self.max_flatness, 0.0, 1.0)
        check_range("min_audio_seconds", self.min_audio_seconds, 0.0, 3600.0)
        check_range("batch_windows", self.batch_windows, 1, 1024)
        check_range("threads", self.threads, 0, 256)
        check_range("workers", self.workers, 1, 256)
        parse_shard(self.shard)

    def tempo_bounds(self) -> tuple[float, float] | None:
        """`tempo_range` as (lo, hi) BPM, checked: 20 <= lo < hi <= 400."""
        if self.tempo_range is None:
            return None
        try:
            lo, hi = (float(part) for part in str(self.tempo_range).split("-"))
        except ValueError:
            raise ConfigError(
                f"tempo_range must be LO-HI in BPM (e.g. 60-90), got {self.tempo_range!r}"
            ) from None
        check_range("tempo_range low", lo, 20.0, 400.0)
        check_range("tempo_range high", hi, 20.0, 400.0)
        if lo >= hi:
            raise ConfigError(f"tempo_range: {lo:g} must be below {hi:g}")
        return lo, hi

    def params(self) -> dict[str, Any]:
        """What decides the output (not how fast or where it runs): the manifest's skip key."""
        skip = {"batch_windows", "threads", "workers", "shard", "progress"}
        return {k: v for k, v in vars(self).items() if k not in skip}


# -- the model ------------------------------------------------------------------------------

_SESSION: Any = None  # one onnxruntime session per process, made by `load_model`


def load_model(threads: int = 0) -> Any:
    """basic-pitch's ONNX model on onnxruntime's CPU provider (loaded once per process)."""
    global _SESSION
    if _SESSION is None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        _SESSION = ort.InferenceSession(
            str(model_path()), options, providers=["CPUExecutionProvider"]
        )
    return _SESSION


def model_path() -> Path:
    import logging

    # basic_pitch warns at import about every backend it does not find; only ONNX is used
    logging.disable(logging.WARNING)
    try:
        from basic_pitch import ICASSP_2022_MODEL_PATH
    finally:
        logging.disable(logging.NOTSET)
    return Path(ICASSP_2022_MODEL_PATH)


def window_audio(audio: np.ndarray) -> np.ndarray:
    """(n_windows, WINDOW_SAMPLES, 1) windows, laid out exactly as basic-pitch's predict does:
    half an overlap of zeros in front, a hop of WINDOW - OVERLAP, the last window zero-padded."""
    padded = np.concatenate([np.zeros(OVERLAP_SAMPLES // 2, np.float32), audio])
    n_windows = max(1, -(-len(padded) // HOP_SAMPLES))
    windows = np.zeros((n_windows, WINDOW_SAMPLES, 1), np.float32)
    for k in range(n_windows):
        segment = padded[k * HOP_SAMPLES : k * HOP_SAMPLES + WINDOW_SAMPLES]
        windows[k, : len(segment), 0] = segment
    return windows


def frame_count(audio: np.ndarray) -> int:
    """Model frames kept for the audio, counted as basic-pitch's predict counts them."""
    return int(np.floor(len(audio) * (SAMPLE_RATE_HZ // FFT_HOP) / SAMPLE_RATE_HZ))


def aligned_starts(n_frames: int) -> np.ndarray:
    """First frame of each window of the aligned layout, in frames of the audio with
    EDGE_FRAMES of zeros in front: as few windows as cover the audio plus EDGE_FRAMES of the
    silence after it, spread evenly, neighbours sharing at least MIN_SEAM_FRAMES frames.

    Starting every window on a whole frame (predict's hop is 141.27 frames) keeps all frames
    on one grid, so no per-window time correction is needed."""
    last = max(n_frames + 2 * EDGE_FRAMES - WINDOW_FRAMES, 0)
    n_windows = 1 + -(-last // (WINDOW_FRAMES - MIN_SEAM_FRAMES))
    return np.round(np.linspace(0, last, n_windows)).astype(int)


def _run_windows(session: Any, windows: np.ndarray, batch_windows: int) -> list[np.ndarray]:
    """The model's (note, onset, contour) outputs for every window, (n_windows, 172, bins)."""
    parts: list[list[np.ndarray]] = [[], [], []]
    for start in range(0, len(windows), batch_windows):
        outputs = session.run(
            list(_ONNX_OUTPUTS), {_ONNX_INPUT: windows[start : start + batch_windows]}
        )
        for part, value in zip(parts, outputs, strict=True):
            part.append(value)
    return [np.concatenate(part) for part in parts]


def run_model(
    audio: np.ndarray, session: Any, batch_windows: int = 1, layout: str = "aligned"
) -> dict[str, np.ndarray]:
    """Model activations {"note", "onset": (n_frames, 88)} (and "contour" (n_frames, 264)
    in basic-pitch's layout). The aligned layout cuts its windows from the audio batch by
    batch and adds each into the activations at once: memory is the audio plus the
    two activations (about 320 MB and 220 MB an hour of audio), not every window at once."""
    n_frames = frame_count(audio)
    if layout == "basic-pitch":
        outputs = _run_windows(session, window_audio(audio), batch_windows)
        half = OVERLAP_FRAMES // 2
        joined = [o[:, half:-half, :].reshape(-1, o.shape[2])[:n_frames] for o in outputs]
        return dict(zip(("note", "onset", "contour"), joined, strict=True))
    starts = aligned_starts(n_frames)
    weights = seam_weights(starts)
    names = _ONNX_OUTPUTS[:2]  # note and onset: the notes need no pitch contour
    joined = [np.zeros((starts[-1] + WINDOW_FRAMES, 88), np.float32) for _ in names]
    for first in range(0, len(starts), batch_windows):
        batch = starts[first : first + batch_windows]
        windows = np.stack([_aligned_window(audio, int(s)) for s in batch])[:, :, None]
        outputs = session.run(list(names), {_ONNX_INPUT: windows})
        for frames, output in zip(joined, outputs, strict=True):
            for k, start in enumerate(batch):
                frames[start : start + WINDOW_FRAMES] += weights[first + k][:, None] * output[k]
    return {name: frames[EDGE_FRAMES : EDGE_FRAMES + n_frames]
            for name, frames in zip(("note", "onset"), joined, strict=True)}  # fmt: skip


def _aligned_window(audio: np.ndarray, start_frame: int) -> np.ndarray:
    """The aligned layout's window that starts at `start_frame` (frames counted with
    EDGE_FRAMES of zeros in front of the audio), zero-padded past the audio's ends."""
    first = (start_frame - EDGE_FRAMES) * FFT_HOP
    window = np.zeros(WINDOW_SAMPLES, np.float32)
    lo, hi = max(first, 0), min(first + WINDOW_SAMPLES, len(audio))
    if hi > lo:
        window[lo - first : hi - first] = audio[lo:hi]
    return window


def seam_weights(starts: np.ndarray) -> np.ndarray:
    """(n_windows, WINDOW_FRAMES) weights that crossfade each overlap linearly, summing to 1.

    The activations ramp over the first and last ~5 frames of a window; with a hard cut in the
    middle of an 8-frame overlap a held note's activation jumped by 0.31 at every seam and the
    note was cut in two. Crossfaded, the largest jump is 0.034 (predict's layout: 0.04)."""
    weights = np.ones((len(starts), WINDOW_FRAMES), np.float32)
    for k in range(1, len(starts)):
        overlap = int(starts[k - 1] + WINDOW_FRAMES - starts[k])
        ramp = np.linspace(0.0, 1.0, overlap + 2)[1:-1]
        weights[k, :overlap] = ramp
        weights[k - 1, WINDOW_FRAMES - overlap :] = ramp[::-1]
    return weights


def onsets_with_inferred(
    onsets: np.ndarray, frames: np.ndarray, config: TranscribeConfig
) -> np.ndarray:
    """The onset activations with onsets inferred from jumps of the note activation, as
    basic-pitch's note creation adds them, but with no tie at the strongest onset.

    basic-pitch scales the inferred onsets so that the largest equals the clip's strongest
    onset; that one usually comes a frame before the model's own onset peak of the same note,
    the two frames tie, and its strict peak picking finds no peak: the clip's strongest note
    was dropped (the last of three tones, in tests). Inferred values that beat the model's are
    scaled by 0.999, so a tie goes to the model's onset."""
    from basic_pitch.note_creation import constrain_frequency, get_infered_onsets

    onsets, frames = constrain_frequency(onsets, frames, config.max_pitch_hz, config.min_pitch_hz)
    if frames.max() <= 0:  # nothing sounds in the range: no jumps to infer onsets from
        return onsets
    combined = get_infered_onsets(onsets, frames)
    return np.where(combined > onsets, combined * 0.999, combined)


# Long inputs are turned into notes a minute of frames at a time: basic-pitch's note creation
# holds several float64 copies of the activations (33 MB a minute of audio). Each block also
# sees the 30 s after it, so every note up to 30 s long ends where one pass would end it.
NOTE_BLOCK_FRAMES = round(60 * SAMPLE_RATE_HZ / FFT_HOP)
NOTE_TAIL_FRAMES = round(30 * SAMPLE_RATE_HZ / FFT_HOP)
NOTE_HEAD_FRAMES = 4  # frames before a block: the two-frame jumps and the peak picking need them


def frame_jumps(frames: np.ndarray, at_start: bool) -> np.ndarray:
    """How much each frame's note activation rose over both of the two frames before it (0 if
    it fell), zero for the input's first two frames: the onsets basic-pitch infers, before
    they are scaled. `at_start`: `frames` begins at the input's first frame."""
    frames = frames.astype(np.float64)  # as basic-pitch computes them: the same thresholds hit
    rise = np.full_like(frames, np.inf)
    for lag in (1, 2):
        rise[lag:] = np.minimum(rise[lag:], frames[lag:] - frames[:-lag])
        rise[:lag] = np.minimum(rise[:lag], frames[:lag])  # zeros before the input
    rise = np.maximum(rise, 0.0)
    if at_start:
        rise[:2] = 0.0
    return rise


def notes_in_blocks(
    frames: np.ndarray,
    onsets: np.ndarray,
    config: TranscribeConfig,
    decode: Callable[[np.ndarray, np.ndarray], list[tuple[int, int, int, float]]],
) -> list[tuple[int, int, int, float]]:
    """`onsets_with_inferred` and `decode` block by block: the inferred onsets are scaled by
    the whole input's maxima, each block keeps the notes that start in it, and the notes come
    in decode's order (latest first)."""
    from basic_pitch.note_creation import constrain_frequency

    n_frames = len(frames)
    bounds = [(max(a - NOTE_HEAD_FRAMES, 0), a) for a in range(0, n_frames, NOTE_BLOCK_FRAMES)]

    def block(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        return constrain_frequency(onsets[lo:hi].copy(), frames[lo:hi].copy(),
                                   config.max_pitch_hz, config.min_pitch_hz)  # fmt: skip

    onset_max = jump_max = frame_max = 0.0
    for lo, start in bounds:  # the whole input's maxima, as one pass would scale by
        o, f = block(lo, start + NOTE_BLOCK_FRAMES)
        onset_max, frame_max = max(onset_max, float(o.max())), max(frame_max, float(f.max()))
        jump_max = max(jump_max, float(frame_jumps(f, lo == 0)[start - lo :].max()))
    kept: list[list[tuple[int, int, int, float]]] = []
    for lo, start in bounds:
        o, f = block(lo, min(start + NOTE_BLOCK_FRAMES + NOTE_TAIL_FRAMES, n_frames))
        if frame_max > 0 and jump_max > 0:
            combined = np.maximum(o, onset_max * frame_jumps(f, lo == 0) / jump_max)
            o = np.where(combined > o, combined * 0.999, combined)
        end = start + NOTE_BLOCK_FRAMES
        kept.append([(s + lo, e + lo, p, a) for s, e, p, a in decode(f, o)
                     if start <= s + lo < end])  # fmt: skip
    return [event for events in reversed(kept) for event in events]


def onset_level(onsets: np.ndarray) -> float:
    """The clip's onset level: the ONSET_LEVEL_QUANTILE of its onset activations, read off a
    histogram of _LEVEL_BINS bins over 0-1 (to 0.0001) that is filled a minute of frames at a
    time, so an hour's activations are never copied whole."""
    counts = np.zeros(_LEVEL_BINS, np.int64)
    for start in range(0, len(onsets), NOTE_BLOCK_FRAMES):
        block = onsets[start : start + NOTE_BLOCK_FRAMES]
        bins = np.clip((block * _LEVEL_BINS).astype(np.int64), 0, _LEVEL_BINS - 1)
        counts += np.bincount(bins.ravel(), minlength=_LEVEL_BINS)
    if counts.sum() == 0:
        return 0.0
    rank = ONSET_LEVEL_QUANTILE * (counts.sum() - 1)
    return float(np.searchsorted(np.cumsum(counts), rank, side="right") / _LEVEL_BINS)


def clip_onset_threshold(onsets: np.ndarray, config: TranscribeConfig) -> float:
    """The onset threshold for one clip: `onset_threshold` if set, else `onset_ratio` x the
    clip's onset level, at most ONSET_THRESHOLD (HPSS_ONSET_THRESHOLD with hpss) and at least
    ONSET_FLOOR below that (no measured clip came near the floor: levels 0.76-0.95 gave
    0.59-0.7; it keeps a clip of faint activations from taking every small peak)."""
    if config.onset_threshold is not None:
        return config.onset_threshold
    cap = HPSS_ONSET_THRESHOLD if config.hpss else ONSET_THRESHOLD
    return float(np.clip(config.onset_ratio * onset_level(onsets), cap - ONSET_FLOOR, cap))


def activations_to_notes(
    activations: dict[str, np.ndarray], config: TranscribeConfig
) -> list[tuple[float, float, int, float]]:
    """(start s, end s, MIDI pitch, amplitude 0-1) by basic-pitch's own note creation."""
    from basic_pitch.note_creation import model_frames_to_time, output_to_notes_polyphonic

    frames_per_second = SAMPLE_RATE_HZ / FFT_HOP
    exact = config.window_layout == "basic-pitch"  # everything as predict does it
    frames, onsets = activations["note"], activations["onset"]
    onset_threshold = clip_onset_threshold(onsets, config)

    def decode(frames: np.ndarray, onsets: np.ndarray) -> list[tuple[int, int, int, float]]:
        return output_to_notes_polyphonic(
            frames,
            onsets,
            onset_thresh=onset_threshold,
            frame_thresh=config.frame_threshold,
            min_note_len=int(np.round(config.min_note_ms / 1000 * frames_per_second)),
            infer_onsets=exact,
            min_freq=config.min_pitch_hz,
            max_freq=config.max_pitch_hz,
            melodia_trick=config.melodia,
        )

    n_frames = len(frames)
    if not exact and n_frames > NOTE_BLOCK_FRAMES + NOTE_TAIL_FRAMES:
        events = notes_in_blocks(frames, onsets, config, decode)  # copies a block at a time
    else:
        if config.min_pitch_hz or config.max_pitch_hz:  # basic-pitch zeroes the rest in place
            frames, onsets = frames.copy(), onsets.copy()
        events = decode(frames, onsets if exact else onsets_with_inferred(onsets, frames, config))
    if exact:
        times_s = model_frames_to_time(n_frames)  # predict's per-window time correction
    else:
        times_s = np.arange(n_frames) * FFT_HOP / SAMPLE_RATE_HZ
    return [(float(times_s[s]), float(times_s[e]), int(p), float(a)) for s, e, p, a in events]


# -- the pieces of one clip -----------------------------------------------------------------


def load_clip(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 audio at 22,050 Hz (resampled if needed) and the file's own rate in Hz."""
    from midimix.audio import iter_mono, probe

    info = probe(path)
    # Filled block by block into one array sized from the header (grown if the header was
    # short), so a long input is held once, not twice as blocks and their concatenation.
    # A header's length is trusted up to an hour; beyond, the array doubles as samples come.
    expected = int(info.frames * SAMPLE_RATE_HZ / info.sample_rate_hz) + 1024
    audio = np.zeros(min(expected, 3600 * SAMPLE_RATE_HZ), np.float32)
    end = 0
    for block in iter_mono(path, info, SAMPLE_RATE_HZ):
        if end + len(block) > len(audio):
            audio = np.concatenate([audio[:end], np.zeros(max(end, len(block)), np.float32)])
        audio[end : end + len(block)] = block
        end += len(block)
    return audio[:end], info.sample_rate_hz


def audio_end(audio: np.ndarray) -> int:
    """Samples up to and including the last non-zero one: the rest is prepare's padding."""
    block = 1 << 20  # searched from the end a block at a time: no index array of every sample
    for end in range(len(audio), 0, -block):
        nonzero = np.flatnonzero(audio[max(end - block, 0) : end])
        if len(nonzero):
            return max(end - block, 0) + int(nonzero[-1]) + 1
    return 0


def transcribe_clip(item: Item, config: TranscribeConfig) -> dict[str, Any]:
    """One clip -> one MIDI file; returns the manifest fields (status "empty" with a reason
    for silence, noise or a too-short clip, where no MIDI file is written)."""
    cpu_start = time.process_time()
    record = _transcribe_clip(item, config)
    return {**record, "cpu_seconds": round(time.process_time() - cpu_start, 3)}


def _transcribe_clip(item: Item, config: TranscribeConfig) -> dict[str, Any]:
    audio, file_rate_hz = load_clip(item.source)
    record: dict[str, Any] = {}
    if file_rate_hz != SAMPLE_RATE_HZ:
        record["resampled_from_hz"] = file_rate_hz
    audio = audio[: audio_end(audio)]
    audio_seconds = len(audio) / SAMPLE_RATE_HZ
    record["audio_seconds"] = round(audio_seconds, 3)
    item.output.unlink(missing_ok=True)  # an empty result must not leave an older MIDI behind
    if len(audio) == 0:
        return _empty(record, "the clip is silent (all samples are zero): nothing to transcribe")
    if audio_seconds < config.min_audio_seconds:
        return _empty(
            record,
            f"the clip holds {audio_seconds:.2f} s of audio, shorter than the "
            f"{config.min_audio_seconds:g} s minimum (one model window); use longer clips",
        )
    flatness = spectral_flatness(audio, SAMPLE_RATE_HZ)
    record["spectral_flatness"] = round(flatness, 4)
    if flatness > config.max_flatness:
        return _empty(
            record,
            f"the clip sounds like noise (spectral flatness {flatness:.2f} > "
            f"{config.max_flatness:g}): no notes written; raise --max-flatness to transcribe it",
        )
    pitched, percussive = audio, audio
    if config.hpss:
        import librosa

        pitched, percussive = librosa.effects.hpss(audio)
    session = load_model(config.threads)
    activations = run_model(pitched, session, config.batch_windows, config.window_layout)
    notes = activations_to_notes(activations, config)
    del activations  # an hour of input holds 220 MB of them: gone before the beat tracking
    beats = track_beats(audio, SAMPLE_RATE_HZ, config.tempo_bounds())
    hits = []
    if config.drums:
        share = percussive_share(audio, SAMPLE_RATE_HZ)
        record["drum_share"] = round(share, 3)
        if share >= MIN_DRUM_SHARE:  # no drums in the clip: piano attacks are not kicks
            hits = drum_hits(percussive, SAMPLE_RATE_HZ)
    record.update(
        notes=len(notes),
        drum_hits=len(hits),
        tempo_bpm=round(beats.tempo_bpm, 2),
        beat_confidence=round(beats.confidence, 3),
        beats=len(beats.times_s),
    )
    if not notes and not hits:
        return _empty(record, "no notes found above the onset and frame thresholds")
    write_midi(item.output, notes, hits, beats, audio_seconds, config.tempo_map, TICKS_PER_BEAT)
    return record


def _empty(record: dict[str, Any], reason: str) -> dict[str, Any]:
    return {**record, "status": STATUS_EMPTY, "reason": reason, "output": None}


# what every clip needs, imported once by the server that forks the workers: librosa's beat
# tracking loads its compiled numba code at import (about 3 s, more than 5 clips' work)
_PRELOAD = ("librosa.beat", "librosa.onset", "librosa.feature", "basic_pitch.note_creation")


def _init_worker(threads: int) -> None:
    """A model session of this worker's own, run once so its buffers are allocated, and
    librosa warmed up on 3 s of a tone, so that the first clip costs what the others do."""
    import multiprocessing

    from threadpoolctl import threadpool_limits

    global _SESSION
    _SESSION = None  # never a session made for other threads, in another process
    if multiprocessing.parent_process() is not None:
        # a worker process: numpy's BLAS threads too (two workers with two each ran 10 %
        # slower per clip); run in the caller's own process, its settings are left alone
        threadpool_limits(threads)
    session = load_model(threads)
    session.run(list(_ONNX_OUTPUTS), {_ONNX_INPUT: np.zeros((1, WINDOW_SAMPLES, 1), np.float32)})
    tone = (0.1 * np.sin(np.arange(3 * SAMPLE_RATE_HZ) * 0.1)).astype(np.float32)
    spectral_flatness(tone, SAMPLE_RATE_HZ)
    track_beats(tone, SAMPLE_RATE_HZ)


def worker_threads(config: TranscribeConfig) -> int:
    """onnxruntime threads per worker: the cores shared out among the workers."""
    if config.threads:
        return config.threads
    return cores_per_worker(config.workers)


def find_clips(clips_dir: Path | dict[str, Path], midi_dir: Path) -> list[Item]:
    items = []
    for genre, folder in as_mapping(clips_dir).items():
        for wav in sorted(folder.glob("*.wav")):
            if not wav.name.startswith("."):
                items.append(Item(wav.stem, genre, wav, midi_dir / genre / f"{wav.stem}.mid"))
    return items


def warm_jit_cache() -> None:
    """Fill a cold numba cache in one process at a time, before any clip is transcribed.

    librosa's gufuncs (its peak picker, the beat tracker's dynamic programme) are compiled and
    cached on first use; two transcriptions started at once from a cold cache crashed with a
    segmentation fault in one of them, in 3 of 4 rounds of benchmarks/bench_jit_cache.py
    (inside `librosa.util.peak_pick` or `librosa.beat`'s `__last_beat`): one process ran a
    gufunc while the other was writing its cache entries. Here the first process takes an
    exclusive lock in the cache folder, runs on a short tone everything a clip runs (beat
    tracking, flatness, the drum share and hits, HPSS), which compiles and caches it, and
    leaves a marker for these numba and librosa versions; a process that waited on the lock
    finds the marker and goes on, loading a complete cache. With the marker there (every run
    after the first) this costs one stat."""
    from importlib.metadata import version

    def compile_() -> None:
        import librosa

        tone = (0.1 * np.sin(np.arange(3 * SAMPLE_RATE_HZ) * 0.1)).astype(np.float32)
        tone[:: SAMPLE_RATE_HZ // 4] = 0.5  # clicks: onsets for the peak picking
        spectral_flatness(tone, SAMPLE_RATE_HZ)
        track_beats(tone, SAMPLE_RATE_HZ)
        percussive_share(tone, SAMPLE_RATE_HZ)
        drum_hits(tone, SAMPLE_RATE_HZ)
        librosa.effects.hpss(tone)

    compile_once(f"numba{version('numba')}-librosa{version('librosa')}", compile_)


def transcribe(
    clips_dir: Path | dict[str, Path], midi_dir: Path, config: TranscribeConfig
) -> StageSummary:
    """Transcribe every clips_dir/<genre>/*.wav to midi_dir/<genre>/<id>.mid.

    Manifest: midi_dir/manifest.jsonl, one record per clip with notes, tempo_bpm,
    beat_confidence and, for an empty result, the reason."""
    from midimix.audio import AudioError

    midi_dir = Path(midi_dir)
    items = find_clips(clips_dir if isinstance(clips_dir, dict) else Path(clips_dir), midi_dir)
    save_config(config, midi_dir, "transcribe")
    warm_jit_cache()  # before any process runs librosa's compiled code
    threads = worker_threads(config)
    return run_items(
        "transcribe",
        items,
        functools.partial(transcribe_clip, config=config),
        Manifest(midi_dir / "manifest.jsonl"),
        config.params(),
        workers=config.workers,
        shard=parse_shard(config.shard),
        known_errors=(AudioError, OSError),
        initializer=functools.partial(_init_worker, threads),
        progress=config.progress,
        # workers forked from a clean server that imported librosa once: not forked from this
        # process, which may hold an onnxruntime session (a forked copy of one hangs), and not
        # spawned, which would import librosa again in every worker
        start_method="forkserver",
        preload=_PRELOAD,
    )


# -- command line ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser("transcribe", __doc__)
    parser.add_argument(
        "--clips-dir",
        type=Path,
        default=CLIPS_DIR,
        metavar="PATH",
        help="input: <genre>/*.wav clips (default: %(default)s)",
    )
    parser.add_argument(
        "--midi-dir",
        type=Path,
        default=MIDI_DIR,
        metavar="PATH",
        help="output: <genre>/*.mid (default: %(default)s)",
    )
    add_config_arguments(
        parser, TranscribeConfig, default_group="notes (defaults measured on the round-trip set)"
    )
    return parser


@cli_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(TranscribeConfig, args)
    if not args.clips_dir.is_dir():
        raise InputError(
            f"clips folder {args.clips_dir} does not exist; run `python -m midimix.prepare` "
            "first or pass --clips-dir"
        )
    summary = transcribe(args.clips_dir, args.midi_dir, config)
    print(summary.text())
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
