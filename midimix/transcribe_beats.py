"""Helpers of `midimix.transcribe`: beat tracking, the tempo map, drum onsets, MIDI writing.

The tempo map makes every tracked beat one quarter note: tick = 480 x (beat index at that
time), interpolated linearly between beats, so the MIDI's beat grid is the music's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from midimix.manifest import atomic_path

HOP_SAMPLES = 512  # librosa's default hop for onset envelopes: 23 ms at 22,050 Hz
DEFAULT_BPM = 120.0  # basic-pitch's fixed tempo, used when no beat is found
# librosa's beats sit this late against the notes' true onsets (the onset envelope peaks
# after the attack): 34-48 ms, median 40 ms, on the round-trip set at 70-140 BPM
BEAT_LAG_S = 0.040
# `--drums` writes no drum track for a clip whose percussive share above 2 kHz is lower:
# between the drum-free (<= 0.52) and drummed (>= 0.88) pieces of the tempo set
MIN_DRUM_SHARE = 0.7
# centre of the log-normal tempo prior (one octave wide) that picks among the autocorrelation's
# peaks: 110 measured best of 90-120 on the tempo set (librosa: 120; docs/transcribe.md)
PRIOR_BPM = 110.0
# Inputs longer than this are analysed (onset envelope, flatness) block by block, so that a
# spectrogram of an hour of audio (1.3 GB) is never held at once; the blocks' frames are the
# whole input's frames, each computed with its neighbours' samples around it.
BLOCK_SECONDS = 120.0


@dataclass(frozen=True)
class Beats:
    tempo_bpm: (
        float  # from a line fitted through the beat times (or librosa's estimate with < 2 beats)
    )
    times_s: np.ndarray  # beat times in seconds, rising
    confidence: float  # 0-1: how much onset strength sits on the beats rather than between


def track_beats(
    audio: np.ndarray,
    sample_rate_hz: int,
    tempo_range: tuple[float, float] | None = None,
    prior_bpm: float = PRIOR_BPM,
) -> Beats:
    """Beats and tempo of the audio; with `tempo_range` (lo, hi BPM) the estimate is moved by
    octaves (x2, /2) into the range before the beats are tracked."""
    import librosa

    envelope = onset_envelope(audio, sample_rate_hz)
    tempo = global_tempo(envelope, sample_rate_hz, prior_bpm=prior_bpm)
    if tempo_range is not None:
        tempo = fold_tempo(tempo, tempo_range)
    _, frames = librosa.beat.beat_track(
        onset_envelope=envelope, sr=sample_rate_hz, hop_length=HOP_SAMPLES, bpm=tempo
    )
    times_s = librosa.frames_to_time(frames, sr=sample_rate_hz, hop_length=HOP_SAMPLES)
    times_s = np.maximum(smooth_beats(times_s) - BEAT_LAG_S, 0.0)
    if len(times_s) >= 2:
        # a line fitted through all beats: finer than one beat interval, which is whole hops
        seconds_per_beat = np.polyfit(np.arange(len(times_s)), times_s, 1)[0]
        tempo_bpm = float(60.0 / seconds_per_beat)
    else:
        tempo_bpm = tempo
    return Beats(tempo_bpm, np.asarray(times_s, float), beat_confidence(envelope, frames))


def block_samples(sample_rate_hz: int, hop: int, block_seconds: float = BLOCK_SECONDS) -> int:
    """The samples of one `framewise` block: about `block_seconds`, whole hops."""
    return max(1, round(block_seconds * sample_rate_hz / hop)) * hop


def framewise(
    audio: np.ndarray,
    sample_rate_hz: int,
    hop: int,
    frames_of: Callable[[np.ndarray], np.ndarray],
    block_seconds: float = BLOCK_SECONDS,
) -> np.ndarray:
    """`frames_of(audio)`, a centred frame-wise feature with this hop, computed on blocks of
    about `block_seconds` for long inputs. Each block is given 16 hops of its neighbours'
    samples on both sides (more than the 2048-sample frames and one frame of lag need), and
    keeps just its own frames. The frames agree with one pass over the whole input except
    where the feature scales by its input's maximum (the onset envelope's 80 dB floor)."""
    block = block_samples(sample_rate_hz, hop, block_seconds)
    if len(audio) <= block:
        return frames_of(audio)
    margin = 16 * hop
    total = 1 + len(audio) // hop  # centred frames of the whole input
    parts = []
    for start in range(0, len(audio), block):
        lo = max(start - margin, 0)
        frames = frames_of(audio[lo : start + block + margin])
        first = (start - lo) // hop
        parts.append(frames[first : first + min(block // hop, total - start // hop)])
    return np.concatenate(parts)


def onset_envelope(audio: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    """librosa's onset strength (mel spectrogram in dB, floored 80 dB under its loudest bin,
    rises summed per frame), computed in blocks for a long input with the floor taken from
    the whole input's loudest bin, so the blocks give the frames of one pass."""
    import librosa

    def mel(y: np.ndarray) -> np.ndarray:
        return librosa.feature.melspectrogram(y=y, sr=sample_rate_hz, hop_length=HOP_SAMPLES)

    if len(audio) <= block_samples(sample_rate_hz, HOP_SAMPLES):  # one pass, no floor to find
        return librosa.onset.onset_strength(y=audio, sr=sample_rate_hz, hop_length=HOP_SAMPLES)
    loudest = float(framewise(audio, sample_rate_hz, HOP_SAMPLES, lambda y: mel(y).max(0)).max())
    floor_db = float(librosa.power_to_db(np.float32(loudest))) - 80.0

    def strength(y: np.ndarray) -> np.ndarray:
        decibels = np.maximum(librosa.power_to_db(mel(y), top_db=None), floor_db)
        return librosa.onset.onset_strength(S=decibels, sr=sample_rate_hz, hop_length=HOP_SAMPLES)

    return framewise(audio, sample_rate_hz, HOP_SAMPLES, strength)


def fold_tempo(tempo_bpm: float, tempo_range: tuple[float, float]) -> float:
    """`tempo_bpm` times the power of two that brings it into [lo, hi], or nearest to it (in
    log distance) when the range is narrower than an octave."""
    lo, hi = tempo_range
    candidates = [tempo_bpm * 2.0**k for k in range(-4, 5)]
    inside = [t for t in candidates if lo <= t <= hi]
    if inside:  # a range wider than an octave can hold two: keep the one nearest the estimate
        return min(inside, key=lambda t: abs(np.log(t / tempo_bpm)))
    return min(candidates, key=lambda t: min(abs(np.log(t / lo)), abs(np.log(t / hi))))


def global_tempo(
    envelope: np.ndarray, sample_rate_hz: int, window_s: float = 8.0, prior_bpm: float = PRIOR_BPM
) -> float:
    """librosa's tempo estimate (its lags up to `window_s`, its log-normal prior around
    120 BPM) from one autocorrelation of the whole onset envelope, instead of from a tempogram
    of 8-s windows at every frame as `beat_track` makes it: the same tempo and beats on all 20
    pieces of the round-trip set, in a third of the time (15 ms less per 30 s clip)."""
    import librosa

    lags = int(librosa.time_to_frames(window_s, sr=sample_rate_hz, hop_length=HOP_SAMPLES))
    autocorrelation = librosa.autocorrelate(envelope, max_size=lags)
    if autocorrelation.max() <= 0:
        return DEFAULT_BPM
    tempogram = (autocorrelation / autocorrelation.max())[:, None]  # one frame: the whole clip
    bpm = librosa.feature.tempo(
        onset_envelope=envelope,
        sr=sample_rate_hz,
        hop_length=HOP_SAMPLES,
        tg=tempogram,
        start_bpm=prior_bpm,
    )
    return float(np.atleast_1d(bpm)[0])


def smooth_beats(times_s: np.ndarray, window_beats: int = 7) -> np.ndarray:
    """Beat times with the onset envelope's hop quantisation (23 ms, +-3 % of the tempo at
    90 BPM) smoothed out: a straight line fitted over each run of `window_beats` beats, so
    slow tempo changes are kept and the jitter between neighbouring beats is not."""
    from scipy.signal import savgol_filter

    window = min(window_beats, len(times_s) - (1 - len(times_s) % 2))  # odd, <= n
    if window < 3:
        return np.asarray(times_s, float)
    return np.asarray(savgol_filter(times_s, window, polyorder=1), float)


def beat_confidence(envelope: np.ndarray, beat_frames: np.ndarray) -> float:
    """1 - (mean onset strength) / (mean onset strength on the beats), floored at 0.

    A steady beat puts its onsets on the tracked beats (about 0.6-0.9 for rendered music);
    rubato or noise spreads them evenly (near 0)."""
    if len(beat_frames) < 2 or envelope.mean() <= 0:
        return 0.0
    # allow one frame of jitter on either side of each beat
    near = np.maximum.reduce(
        [envelope[np.clip(beat_frames + d, 0, len(envelope) - 1)] for d in (-1, 0, 1)]
    )
    return float(max(0.0, 1.0 - envelope.mean() / max(near.mean(), 1e-9)))


def spectral_flatness(audio: np.ndarray, sample_rate_hz: int) -> float:
    """Median spectral flatness over frames with sound: near 1 for white noise, near 0 for
    tones. Frames of silence are left out so that rests do not look like noise."""
    import librosa

    def flatness(y: np.ndarray) -> np.ndarray:
        return librosa.feature.spectral_flatness(y=y, n_fft=2048, hop_length=2048)[0]

    def loudness(y: np.ndarray) -> np.ndarray:
        return librosa.feature.rms(y=y, frame_length=2048, hop_length=2048)[0]

    flat = framewise(audio, sample_rate_hz, 2048, flatness)
    rms = framewise(audio, sample_rate_hz, 2048, loudness)
    loud = rms > 0.1 * rms.max() if rms.max() > 0 else np.zeros_like(rms, bool)
    return float(np.median(flat[loud])) if loud.any() else 0.0


def beat_grid(beats: Beats, end_s: float) -> np.ndarray:
    """Grid times in s, one a quarter note, starting at 0 and reaching past `end_s`.

    The tracked beats are extended before the first and after the last with the nearest
    beat interval; the stretch from 0 to the first grid point counts as one beat and is kept
    between half and one and a half beat intervals long."""
    times = beats.times_s
    if len(times) < 2:
        step = 60.0 / (beats.tempo_bpm or DEFAULT_BPM)
        return np.arange(0.0, end_s + 2 * step, step)
    first_step, last_step = times[1] - times[0], times[-1] - times[-2]
    before = times[0] - first_step * np.arange(int(times[0] // first_step) + 1, 0, -1)
    after = times[-1] + last_step * np.arange(1, int(max(end_s - times[-1], 0) // last_step) + 3)
    grid = np.concatenate([before, times, after])
    grid = grid[grid >= 0.5 * first_step]
    return np.concatenate([[0.0], grid])


def seconds_to_ticks(times_s: np.ndarray, grid_s: np.ndarray, ticks_per_beat: int) -> np.ndarray:
    beats = np.interp(times_s, grid_s, np.arange(len(grid_s), dtype=float))
    return np.round(beats * ticks_per_beat).astype(np.int64)


def percussive_share(audio: np.ndarray, sample_rate_hz: int, min_hz: float = 2000.0) -> float:
    """The percussive part's share (0-1) of the energy above `min_hz`, by librosa's HPSS.

    Drums put nearly all their energy up there in the percussive part: 0.88-1.00 on the tempo
    set's lo-fi and jazz pieces with drums (clean, lo-fi chain, MP3, noise); drum-free piano
    and electric piano 0.09-0.52 (the highest with hiss added)."""
    import librosa

    spectrum = np.abs(librosa.stft(audio, n_fft=1024, hop_length=HOP_SAMPLES))
    harmonic, percussive = librosa.decompose.hpss(spectrum)
    high = librosa.fft_frequencies(sr=sample_rate_hz, n_fft=1024) >= min_hz
    p, h = float((percussive[high] ** 2).sum()), float((harmonic[high] ** 2).sum())
    return p / (p + h) if p + h > 0 else 0.0


def pick_peaks(
    x: np.ndarray, pre_max: int, post_max: int, pre_avg: int, post_avg: int, delta: float, wait: int
) -> np.ndarray:
    """The frames `librosa.util.peak_pick` picks, in numpy: x[n] is the maximum of
    x[n - pre_max : n + post_max], at least `delta` above the mean of
    x[n - pre_avg : n + post_avg], and more than `wait` frames after the last peak. librosa's
    picker is a numba gufunc cached on disk, and a process that loaded it while another was
    writing the cache crashed in it (a segmentation fault in `librosa.util.peak_pick`, one of
    two cold starts in most rounds of benchmarks/bench_jit_cache.py)."""
    n = len(x)
    index = np.arange(n)
    padded = np.concatenate(
        [np.full(pre_max, -np.inf, np.float32), x, np.full(max(post_max - 1, 0), -np.inf)]
    )
    window_max = np.lib.stride_tricks.sliding_window_view(padded, pre_max + post_max).max(axis=1)
    sums = np.concatenate([[0.0], np.cumsum(x, dtype=np.float64)])
    lo, hi = np.maximum(index - pre_avg, 0), np.minimum(index + post_avg, n)
    window_mean = (sums[hi] - sums[lo]) / (hi - lo)
    candidates = np.flatnonzero((x == window_max[:n]) & (x >= window_mean + delta))
    picked: list[int] = []
    for frame in candidates:
        if not picked or frame > picked[-1] + wait:
            picked.append(int(frame))
    return np.array(picked, int)


def _unit(envelope: np.ndarray) -> np.ndarray | None:
    """The envelope scaled to 0-1 (None when flat or not finite: nothing to pick)."""
    x = np.asarray(envelope, dtype=np.float32)
    x = x - x.min()
    x = x / (x.max() + np.finfo(np.float32).tiny)
    return x if x.any() and np.all(np.isfinite(x)) else None


# Drum bands (Hz) and how far a band's onset envelope must rise above its local mean (0-1
# scale) to count as a hit: chosen on the even-numbered pieces of the tempo set with drums
# (benchmarks/bench_tempo.py --drums), the odd-numbered ones held out (docs/transcribe.md)
DRUM_BANDS = {
    "kick": (0.0, 150.0, 0.4),
    "snare": (150.0, 5000.0, 0.3),
    "hat": (5000.0, np.inf, 0.2),
}


def drum_hits(percussive: np.ndarray, sample_rate_hz: int) -> list[tuple[float, int, int]]:
    """(time s, GM drum pitch, velocity) for the hits of the percussive part, found band by
    band: kick below 150 Hz, snare 150 Hz-5 kHz, hi-hat above 5 kHz, each from the rise of its
    own band (spectral flux in dB), so a kick and a hat on one beat are both found (one onset
    per frame, classified by band, found no hat at all once the lo-fi chain had dulled them).

    A hit in one band that lands within 2 frames of a hit in the band below it, with a
    relatively larger rise there, is the lower drum's spill (a kick's attack reaches the snare
    band, a snare's rattle the hat band), not a drum of its own: snare spill needs twice the
    hat band's relative rise, since hats so often play with the snare."""
    import librosa

    from midimix.drums import CLOSED_HAT, KICK, SNARE  # (symusic: not for --help)

    spectrum = np.abs(librosa.stft(percussive, n_fft=1024, hop_length=HOP_SAMPLES))
    if not spectrum.any():
        return []
    decibels = librosa.amplitude_to_db(spectrum, ref=float(spectrum.max()), top_db=80.0)
    freqs_hz = librosa.fft_frequencies(sr=sample_rate_hz, n_fft=1024)
    rises = np.maximum(np.diff(decibels, axis=1, prepend=decibels[:, :1]), 0.0)
    peaks, heights = {}, {}
    for name, (low_hz, high_hz, delta) in DRUM_BANDS.items():
        band = rises[(freqs_hz >= low_hz) & (freqs_hz < high_hz)]
        unit = _unit(band.mean(axis=0)) if len(band) else None
        if unit is None:
            peaks[name], heights[name] = np.zeros(0, int), np.zeros(len(decibels[0]))
            continue
        peaks[name] = pick_peaks(unit, 3, 3, 10, 10, delta, wait=4)
        heights[name] = unit

    def own(name: str, other: str, spill: float) -> np.ndarray:
        """The band `name`'s peaks that are not spill from the band `other`."""
        others = peaks[other]
        keep = []
        for frame in peaks[name]:
            near = others[np.abs(others - frame) <= 2]
            if len(near) and heights[other][near[0]] * spill > heights[name][frame]:
                continue
            keep.append(frame)
        return np.array(keep, int)

    found = {
        "kick": peaks["kick"],
        "snare": own("snare", "kick", 1.0),
        "hat": own("hat", "snare", 0.5),
    }
    pitches = {"kick": KICK, "snare": SNARE, "hat": CLOSED_HAT}  # General MIDI drum keys
    hits = []
    for name, frames in found.items():
        times = librosa.frames_to_time(frames, sr=sample_rate_hz, hop_length=HOP_SAMPLES)
        velocities = np.clip(np.round(40 + 87 * heights[name][frames]), 1, 127)
        hits += [(float(t), pitches[name], int(v)) for t, v in zip(times, velocities, strict=True)]
    return sorted(hits)


def write_midi(
    path: Path,
    notes: list[tuple[float, float, int, float]],
    hits: list[tuple[float, int, int]],
    beats: Beats,
    end_s: float,
    tempo_map: str,
    ticks_per_beat: int,
) -> None:
    """Write the notes (and drum hits) with a tempo map: "beats" follows the tracked beats,
    "constant" uses the tracked tempo throughout, "off" writes 120 BPM as basic-pitch does."""
    import symusic

    if tempo_map == "beats":
        grid = beat_grid(beats, end_s)
    else:
        bpm = beats.tempo_bpm if tempo_map == "constant" else DEFAULT_BPM
        step = 60.0 / bpm
        grid = np.arange(0.0, end_s + 2 * step, step)
    score: Any = symusic.Score(ticks_per_beat)  # a ScoreTick (the factory hides its type)
    qpm = 60.0 / np.diff(grid)
    for k, value in enumerate(qpm):
        if k == 0 or abs(value - qpm[k - 1]) > 1e-3:
            score.tempos.append(symusic.Tempo(k * ticks_per_beat, float(round(value, 3))))
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    if notes:
        track: Any = symusic.Track("transcription", 0, False)
        starts = seconds_to_ticks(np.array([n[0] for n in notes]), grid, ticks_per_beat)
        ends = seconds_to_ticks(np.array([n[1] for n in notes]), grid, ticks_per_beat)
        for (_, _, pitch, amplitude), start, end in zip(notes, starts, ends, strict=True):
            velocity = int(np.clip(np.round(127 * amplitude), 1, 127))
            track.notes.append(symusic.Note(int(start), max(int(end - start), 1), pitch, velocity))
        track.notes.sort(key=lambda n: (n.time, n.pitch))
        score.tracks.append(track)
    if hits:
        kit: Any = symusic.Track("drums", 0, True)
        ticks = seconds_to_ticks(np.array([h[0] for h in hits]), grid, ticks_per_beat)
        duration = ticks_per_beat // 8
        for (_, pitch, velocity), tick in zip(hits, ticks, strict=True):
            kit.notes.append(symusic.Note(int(tick), duration, pitch, velocity))
        score.tracks.append(kit)
    with atomic_path(path) as tmp:
        score.dump_midi(str(tmp))
