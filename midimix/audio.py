"""Audio decoding shared by collect, prepare and inspect.

Files are read in blocks, never whole: libsndfile (through soundfile) reads wav, flac, ogg and
mp3; anything else it cannot open (m4a, aac, opus, ...) is decoded by an ffmpeg subprocess that
pipes raw float samples, also in blocks. Every problem becomes an `AudioError` whose message is
one line saying what is wrong with the file, so a batch can record it and go on."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from midimix.errors import ItemError

# The one list of audio file names, used by collect, prepare, pipeline and generate's prompts:
# what this module decodes (each is read back in tests/test_collect.py).
AUDIO_SUFFIXES = (
    ".wav", ".flac", ".mp3", ".ogg", ".opus", ".aif", ".aiff", ".aifc", ".au", ".caf",
    ".w64",  # libsndfile's
    ".oga", ".m4a", ".aac", ".webm", ".mka", ".wma",  # ffmpeg's (yt-dlp downloads .webm, .m4a)
)  # fmt: skip
# A suffix for a file whose own name has none that we know (decoders look at the content).
SUFFIX_BY_FORMAT = {
    "WAV": ".wav", "FLAC": ".flac", "OGG": ".ogg", "MP3": ".mp3", "AIFF": ".aiff", "AU": ".au",
    "CAF": ".caf", "W64": ".w64",
}  # fmt: skip
# Header fields outside these bounds are a broken or hostile header, not audio: refused before
# anything is allocated from them (a WAV claiming 32,767 channels would ask for 115 GB a block).
MAX_CHANNELS = 256  # more than any recording format in use (ambisonics, 22.2 and the like)
SAMPLE_RATE_RANGE_HZ = (1000, 768_000)
MAX_BLOCK_BYTES = 64 << 20  # one decoded block, float32 frames times channels
# A decoder that yields fewer frames than the header promised by more than this share is
# reading a truncated file (mp3 Xing headers, for one, state the full length).
_TRUNCATION_TOLERANCE = 0.01


class AudioError(ItemError):
    """A file that cannot be decoded as audio: not audio, empty, truncated or corrupt."""


@dataclass(frozen=True)
class AudioInfo:
    sample_rate_hz: int
    channels: int
    frames: int  # as the header states; may be an estimate for compressed formats
    format: str  # "WAV", "FLAC", "MP3", ... or the ffmpeg codec name
    subtype: str  # sample format: "PCM_16", "PCM_24", "PCM_U8", "VORBIS", ...
    decoder: str  # "soundfile" or "ffmpeg"

    @property
    def duration_seconds(self) -> float:
        return self.frames / self.sample_rate_hz


def sidecar_path(out_path: Path) -> Path:
    """piece.wav -> piece.render.json, the record render writes beside its audio (what was
    rendered, how, the measured loudness); here so that generate finds it without render."""
    return out_path.with_name(out_path.stem + ".render.json")


def is_audio_name(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_SUFFIXES


def probe(path: Path) -> AudioInfo:
    """Header information, checked: raises `AudioError` for a file that holds no audio."""
    path = Path(path)
    try:
        size_bytes = path.stat().st_size
    except OSError as error:
        raise AudioError(f"cannot read {path.name}: {error.strerror}") from error
    if size_bytes == 0:
        raise AudioError("empty file (0 bytes): not audio; remove it or copy it again")
    try:
        with quiet_stderr():
            info = sf.info(str(path))
        result = AudioInfo(
            int(info.samplerate), int(info.channels), int(info.frames),
            str(info.format), str(info.subtype), "soundfile",
        )  # fmt: skip
    except (sf.LibsndfileError, RuntimeError) as sf_error:
        result = _probe_ffmpeg(path, reason=_sf_reason(sf_error))
    if result.decoder == "soundfile" and result.format == "OGG":
        _check_ogg_end(path)  # a cut file may read as 0 samples or as a shorter one
    if result.frames <= 0:
        raise AudioError("the file holds no audio (0 samples): remove it or export it again")
    _check_header_fields(result)
    if result.decoder == "soundfile" and result.format == "WAV":
        _check_wav_length(path, result)
    return result


def _check_header_fields(info: AudioInfo) -> None:
    """Refuse channel counts and sample rates no recording has, before they size a buffer."""
    if not 1 <= info.channels <= MAX_CHANNELS:
        raise AudioError(
            f"the header claims {info.channels} channels (at most {MAX_CHANNELS} are read): a "
            "broken header; export the file again"
        )
    low, high = SAMPLE_RATE_RANGE_HZ
    if not low <= info.sample_rate_hz <= high:
        raise AudioError(
            f"the header claims a sample rate of {info.sample_rate_hz} Hz (expected {low}-{high}"
            " Hz): a broken header; export the file again"
        )


# libsndfile's words for a file it opened but could not decode, and what they mean here
SNDFILE_CANNOT_OPEN = "File does not exist or is not a regular file (possibly a pipe?)"
CANNOT_DECODE = "its data could not be decoded: corrupt, or a format that is not supported"


def _sf_reason(error: BaseException) -> str:
    text = str(error).split(":", 1)[-1].strip() if ":" in str(error) else str(error)
    return text.replace(SNDFILE_CANNOT_OPEN, CANNOT_DECODE).rstrip(".") or type(error).__name__


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block: C libraries write their own notes
    there, past sys.stderr (libsndfile's mp3 decoder on a corrupt file, "Illegal
    Audio-MPEG-Header ..."; libinstpatch's glib noise on a corrupt SoundFont); the error
    raised says what was wrong instead."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _probe_ffmpeg(path: Path, reason: str) -> AudioInfo:
    """ffprobe for what libsndfile cannot open; `reason` is libsndfile's complaint."""
    not_audio = AudioError(
        f"not an audio file that libsndfile or ffmpeg can read ({reason}); "
        f"expected one of {', '.join(AUDIO_SUFFIXES)}"
    )
    if shutil.which("ffprobe") is None:
        raise AudioError(f"{reason}; install ffmpeg to read this format (apt-get install ffmpeg)")
    command = [
        "ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
        "stream=codec_name,sample_rate,channels,duration,duration_ts,sample_fmt:format=duration",
        "-of", "json", str(path),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise not_audio
    found = json.loads(done.stdout or "{}")
    streams = found.get("streams") or []
    if not streams:
        raise not_audio
    stream = streams[0]
    rate_hz = int(stream.get("sample_rate") or 0)
    channels = int(stream.get("channels") or 0)
    if rate_hz <= 0 or channels <= 0:
        raise not_audio
    duration = stream.get("duration") or (found.get("format") or {}).get("duration") or 0
    frames = round(float(duration) * rate_hz)
    codec = str(stream.get("codec_name", "unknown"))
    return AudioInfo(
        rate_hz, channels, frames, codec.upper(), str(stream.get("sample_fmt")), "ffmpeg"
    )


def _check_wav_length(path: Path, info: AudioInfo) -> None:
    """libsndfile quietly reads a cut WAV up to its end; the data chunk's size says more."""
    with open(path, "rb") as handle:
        head = handle.read(1 << 16)
    size_bytes = path.stat().st_size
    if head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        return
    fmt = "<I" if head[:4] == b"RIFF" else ">I"
    offset = 12
    while offset + 8 <= len(head):
        chunk_id = head[offset : offset + 4]
        (chunk_bytes,) = struct.unpack(fmt, head[offset + 4 : offset + 8])
        if chunk_id == b"data":
            present_bytes = size_bytes - (offset + 8)
            # 0xFFFFFFFF and 0 mark a stream written without a final size; trust libsndfile
            if 0 < chunk_bytes < 0xFFFFFFFF and present_bytes < chunk_bytes:
                promised_seconds = info.duration_seconds * chunk_bytes / max(present_bytes, 1)
                raise AudioError(
                    f"truncated WAV: the header promises {promised_seconds:.1f} s but the file "
                    f"holds {info.duration_seconds:.1f} s; copy or export it again"
                )
            return
        offset += 8 + chunk_bytes + (chunk_bytes & 1)


def _check_ogg_end(path: Path) -> None:
    """libsndfile takes the length of an Ogg stream from its last page, so a cut file reads as
    a whole shorter one. A complete stream ends with a whole page flagged end-of-stream."""
    size_bytes = path.stat().st_size
    with open(path, "rb") as handle:
        handle.seek(max(0, size_bytes - (1 << 16)))  # a page is at most 65,307 bytes
        tail = handle.read()
    start = tail.rfind(b"OggS")
    while start >= 0:  # the last page that ends exactly at the end of the file
        segments = tail[start + 26] if start + 27 <= len(tail) else 0
        table = tail[start + 27 : start + 27 + segments]
        if start + 27 <= len(tail) and start + 27 + segments + sum(table) == len(tail):
            if tail[start + 5] & 0x04:  # header type: end of stream
                return
            break
        start = tail.rfind(b"OggS", 0, start)
    raise AudioError(
        "truncated Ogg file: it stops before the end of its stream; copy or export it again"
    )


def iter_blocks(path: Path, info: AudioInfo, block_frames: int) -> Iterator[np.ndarray]:
    """Float32 blocks of shape (frames, channels) in [-1, 1], the last one shorter.

    Raises `AudioError` when decoding stops early (corrupt or truncated data)."""
    blocks = _sf_blocks if info.decoder == "soundfile" else _ffmpeg_blocks
    total_frames = 0
    for block in blocks(path, info, block_frames):
        total_frames += len(block)
        yield block
    if info.decoder == "soundfile" and total_frames < info.frames * (1 - _TRUNCATION_TOLERANCE):
        raise AudioError(
            f"truncated or corrupt: decoding ended at {total_frames / info.sample_rate_hz:.1f} s "
            f"of the {info.duration_seconds:.1f} s the header states; copy or export it again"
        )


def _sf_blocks(path: Path, info: AudioInfo, block_frames: int) -> Iterator[np.ndarray]:
    done_frames = 0
    try:
        with sf.SoundFile(str(path)) as handle:
            while True:
                block = handle.read(block_frames, dtype="float32", always_2d=True)
                if len(block) == 0:
                    return
                done_frames += len(block)
                yield block
    except (sf.LibsndfileError, RuntimeError) as error:
        raise AudioError(
            f"corrupt or truncated: decoding failed after {done_frames / info.sample_rate_hz:.1f} "
            f"s ({_sf_reason(error)}); copy or export the file again"
        ) from error


def _ffmpeg_blocks(path: Path, info: AudioInfo, block_frames: int) -> Iterator[np.ndarray]:
    command = [
        "ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-map", "0:a:0",
        "-f", "f32le", "-acodec", "pcm_f32le", "-",
    ]  # fmt: skip
    frame_bytes = 4 * info.channels
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None  # set by PIPE above
    try:
        pending = b""
        while chunk := process.stdout.read(block_frames * frame_bytes - len(pending)):
            pending += chunk
            if len(pending) == block_frames * frame_bytes:
                yield np.frombuffer(pending, dtype="<f4").reshape(-1, info.channels)
                pending = b""
        whole = len(pending) - len(pending) % frame_bytes
        if whole:
            yield np.frombuffer(pending[:whole], dtype="<f4").reshape(-1, info.channels)
        errors = process.stderr.read().decode(errors="replace").strip()
        if process.wait() != 0:
            line = errors.splitlines()[-1] if errors else f"exit status {process.returncode}"
            raise AudioError(f"ffmpeg could not decode the file ({line}); copy or export it again")
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()
        process.stderr.close()


def to_mono(block: np.ndarray) -> np.ndarray:
    """Mean of the channels: keeps the level of a centred source, for any channel count."""
    mono = np.array(block[:, 0], dtype=np.float32)  # a copy, contiguous
    for channel in range(1, block.shape[1]):
        mono += block[:, channel]  # column adds: ~10x faster than mean(axis=1) on (n, 2)
    if block.shape[1] > 1:
        mono *= np.float32(1 / block.shape[1])
    return mono


def repair_nonfinite(mono: np.ndarray) -> int:
    """Set NaN and infinite samples (a float file's broken stretch) to 0, in place; how many.

    Left in, one NaN spreads through the resampler's filter and makes a whole clip NaN, whose
    peak then reads as silence."""
    bad = ~np.isfinite(mono)
    count = int(np.count_nonzero(bad))
    if count:
        mono[bad] = 0.0
    return count


def iter_mono(
    path: Path,
    info: AudioInfo,
    sample_rate_hz: int,
    block_seconds: float = 60.0,
    nonfinite: list[int] | None = None,
) -> Iterator[np.ndarray]:
    """Mono float32 blocks at `sample_rate_hz`, resampled by a streaming soxr (HQ) resampler.

    The stream keeps its filter state between blocks, so the output equals one-shot
    resampling of the whole file while memory stays at one block. NaN and infinite samples
    are set to 0 first; `nonfinite`, when given, receives how many there were (one count per
    block that had any)."""
    import soxr

    def mono_blocks() -> Iterator[np.ndarray]:
        for block in iter_blocks(path, info, block_frames):
            mono = to_mono(block)
            count = repair_nonfinite(mono)
            if count and nonfinite is not None:
                nonfinite.append(count)
            yield mono

    block_frames = max(1, round(block_seconds * info.sample_rate_hz))
    block_frames = min(block_frames, max(1, MAX_BLOCK_BYTES // (4 * info.channels)))
    if info.sample_rate_hz == sample_rate_hz:
        yield from mono_blocks()
        return
    stream = soxr.ResampleStream(
        info.sample_rate_hz, sample_rate_hz, 1, dtype="float32", quality="HQ"
    )
    for block in mono_blocks():
        out = stream.resample_chunk(block, last=False)
        if len(out):
            yield out
    tail = stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
    if len(tail):
        yield tail


def read_mono(
    path: Path, sample_rate_hz: int | None = None, offset_seconds: float = 0.0,
    max_seconds: float | None = None,
) -> tuple[np.ndarray, int]:  # fmt: skip
    """An excerpt as one mono float32 array (for plots: keep it short), and its rate in Hz."""
    info = probe(path)
    rate_hz = sample_rate_hz or info.sample_rate_hz
    start = round(offset_seconds * rate_hz)
    stop = None if max_seconds is None else start + round(max_seconds * rate_hz)
    parts: list[np.ndarray] = []
    seen = 0
    for block in iter_mono(path, info, rate_hz, block_seconds=10.0):
        lo, hi = max(start - seen, 0), len(block) if stop is None else min(stop - seen, len(block))
        if hi > lo:
            parts.append(block[lo:hi])
        seen += len(block)
        if stop is not None and seen >= stop:
            break
    samples = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    return samples, rate_hz
