"""prepare: cut raw audio into fixed-length mono clips at basic-pitch's rate.

Each source file is decoded in blocks, mixed to mono, resampled (streaming soxr) to
`sample_rate_hz` and cut into consecutive `clip_seconds` clips; the last one is zero-padded
when at least `min_remainder_seconds` of audio is left for it. Clip `<source_id>_<index:04d>`
starts at `index * clip_seconds` seconds of the source, so its position can always be
recovered. Clips whose peak is below `silence_dbfs` are not written (nothing to transcribe)
and are listed in the record; a source that is silent throughout is recorded as "empty".

    python -m midimix.prepare --raw-dir data/raw --clips-dir data/clips --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import re
import sys
import unicodedata
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from midimix.audio import AudioError, is_audio_name, iter_mono, probe
from midimix.config import CLIPS_DIR, RAW_DIR, as_mapping, check_range, parse_shard, save_config
from midimix.errors import ConfigError, cli_errors
from midimix.inputs import item_digest
from midimix.manifest import STATUS_EMPTY, Item, Manifest, StageSummary, atomic_path, run_items
from midimix.options import add_config_arguments, config_from_args, option, stage_parser

_RUN = option(group="run")  # settings of how the stage runs, not of the clips it writes
_SHARD = option(group="run", metavar="K/N")
CLIP_SUBTYPE = "PCM_16"  # 16-bit wav: what basic-pitch reads; silence stays exact zeros
_SAFE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass
class PrepareConfig:
    clip_seconds: float = 30.0  # length of each clip in seconds
    sample_rate_hz: int = 22050  # sample rate of the clips: basic-pitch's own, so transcribe
    # resamples nothing
    min_remainder_seconds: float = 5.0  # a last piece shorter than this is dropped (under 5 s
    # is less than two bars at 100 BPM); the one kept is zero-padded to a whole clip
    silence_dbfs: float = -60.0  # a clip whose peak is below this is not written: nothing to
    # transcribe
    block_seconds: float = field(default=20.0, metadata=_RUN)  # seconds of audio decoded at a
    # time: 7 MB of 44.1 kHz stereo
    workers: int = field(default=1, metadata=_RUN)  # worker processes, one source file each
    shard: str | None = field(default=None, metadata=_SHARD)  # run only shard K of N
    progress: bool = field(default=True, metadata=_RUN)  # progress bar on stderr

    def __post_init__(self) -> None:
        check_range("clip_seconds", self.clip_seconds, 0.1, 3600)
        check_range("sample_rate_hz", self.sample_rate_hz, 1000, 384000)
        # at or above clip_seconds it means: never keep a padded clip
        check_range("min_remainder_seconds", self.min_remainder_seconds, 0)
        check_range("silence_dbfs", self.silence_dbfs, -200, 0)
        check_range("block_seconds", self.block_seconds, 0.1, 3600)
        check_range("workers", self.workers, 1, 256)
        parse_shard(self.shard)

    @property
    def clip_samples(self) -> int:
        return round(self.clip_seconds * self.sample_rate_hz)

    @property
    def min_remainder_samples(self) -> int:
        return round(self.min_remainder_seconds * self.sample_rate_hz)

    def params(self) -> dict[str, Any]:
        """The options that change the clips (what up-to-date checks compare)."""
        return {
            "clip_seconds": self.clip_seconds,
            "sample_rate_hz": self.sample_rate_hz,
            "min_remainder_seconds": self.min_remainder_seconds,
            "silence_dbfs": self.silence_dbfs,
            "clip_subtype": CLIP_SUBTYPE,
            "nonfinite_samples": "zeroed",  # before: a NaN stretch made its clip silent
        }


def clip_id(source_id: str, clip_index: int) -> str:
    return f"{source_id}_{clip_index:04d}"


def source_id_for(path: Path, root: Path) -> str:
    """The file stem when it is a plain ASCII name (collect's ids are); otherwise an ASCII
    slug of it plus a short hash of its path, so non-ASCII names give stable, safe ids."""
    stem = path.stem
    if _SAFE_ID_RE.match(stem):
        return stem
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9]+", "-", ascii_stem).strip("-")[:40] or "audio"
    rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
    return f"{slug}-{zlib.crc32(rel.encode()):08x}"


def find_sources(raw: Path | Mapping[str, Path]) -> list[tuple[str, str, Path]]:
    """(genre, source id, path) for every audio file under the genre folders, ids unique."""
    found: list[tuple[str, str, Path]] = []
    used: set[str] = set()
    for genre, folder in sorted(as_mapping(raw).items()):
        if not folder.is_dir():
            raise ConfigError(f"genre folder {folder} does not exist; expected a folder of audio")
        # not only files: a folder or a link loop named like audio is recorded as failed
        for path in sorted(p for p in folder.rglob("*") if is_audio_name(p)):
            if any(part.startswith(".") for part in path.relative_to(folder).parts):
                continue  # hidden files, including our own temporary files
            sid = source_id_for(path, folder)
            if sid in used:  # song.mp3 beside song.wav, or one stem in two genres
                sid = f"{sid}-{zlib.crc32(str(path).encode()):08x}"
            used.add(sid)
            found.append((genre, sid, path))
    return found


def cut_clips(
    blocks: Iterator[np.ndarray], clip_samples: int, min_remainder_samples: int
) -> Iterator[tuple[int, np.ndarray, int]]:
    """(clip index, clip, padded samples) from a stream of mono blocks of any sizes.

    Every clip has exactly `clip_samples` samples; the last is zero-padded if at least
    `min_remainder_samples` (and at least one) samples are left for it, else dropped."""
    pending: list[np.ndarray] = []
    pending_samples = 0
    index = 0
    for block in blocks:
        pending.append(block)
        pending_samples += len(block)
        if pending_samples < clip_samples:
            continue
        joined = np.concatenate(pending)
        start = 0
        while len(joined) - start >= clip_samples:
            yield index, joined[start : start + clip_samples], 0
            index += 1
            start += clip_samples
        pending = [joined[start:]]
        pending_samples = len(joined) - start
    if pending_samples >= max(min_remainder_samples, 1):
        clip = np.zeros(clip_samples, dtype=np.float32)
        clip[:pending_samples] = np.concatenate(pending)
        yield index, clip, clip_samples - pending_samples


def peak_dbfs(samples: np.ndarray) -> float:
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    return 20 * np.log10(peak) if peak > 0 else float("-inf")


def write_clip(path: Path, samples: np.ndarray, sample_rate_hz: int) -> bool:
    """Write atomically unless an identical clip is there already; True if written.

    A clip file under its final name is always complete (atomic rename), so after a kill
    the clips already done are found equal and not written twice."""
    import soundfile as sf

    # libsndfile reads 16-bit as value / 32768: scaling back by 32768 makes a 16-bit source
    # at the target rate pass through unchanged, bit for bit
    pcm = np.clip(np.round(samples * 32768.0), -32768, 32767).astype(np.int16)
    if path.exists():
        with contextlib.suppress(sf.LibsndfileError, RuntimeError):
            old, old_rate = sf.read(str(path), dtype="int16")
            if old_rate == sample_rate_hz and np.array_equal(old, pcm):
                return False
    with atomic_path(path) as tmp:
        sf.write(str(tmp), pcm, sample_rate_hz, subtype=CLIP_SUBTYPE, format="WAV")
    return True


def _remove_stale_temporaries(folder: Path, source_id: str) -> None:
    """A run killed mid-write leaves a hidden temporary file; clear this source's ones."""
    pattern = re.compile(rf"^\.{re.escape(source_id)}_\d{{4,}}\.tmp\d+\.wav$")
    for stale in folder.glob(f".{source_id}_*.tmp*.wav"):
        if pattern.match(stale.name):
            stale.unlink(missing_ok=True)


def _remove_other_clips(folder: Path, source_id: str, keep: set[str]) -> None:
    """Clips of this source from a run with other options (a longer clip, a kept remainder
    now dropped, a clip now silent) would be taken for current ones downstream."""
    pattern = re.compile(rf"^{re.escape(source_id)}_\d{{4,}}\.wav$")
    for old in folder.glob(f"{source_id}_*.wav"):
        if pattern.match(old.name) and old.name not in keep:
            old.unlink(missing_ok=True)


def prepare_one(item: Item, config: PrepareConfig, clips_dir: Path) -> dict[str, Any]:
    """Cut one source file into clips; the record fields of run_items."""
    info = probe(item.source)
    folder = clips_dir / item.genre
    _remove_stale_temporaries(folder, item.id)
    notes = []
    if info.sample_rate_hz < config.sample_rate_hz:
        notes.append(
            f"upsampled from {info.sample_rate_hz} Hz: nothing above "
            f"{info.sample_rate_hz // 2} Hz in these clips"
        )
    if info.channels > 2:
        notes.append(f"{info.channels} channels mixed down to mono")
    clips: list[dict[str, Any]] = []
    silent: list[int] = []
    written = 0
    seen_samples = 0

    def counted(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        nonlocal seen_samples
        for block in blocks:
            seen_samples += len(block)
            yield block

    nonfinite: list[int] = []
    blocks = counted(
        iter_mono(item.source, info, config.sample_rate_hz, config.block_seconds, nonfinite)
    )
    try:
        for index, samples, padded in cut_clips(
            blocks, config.clip_samples, config.min_remainder_samples
        ):
            if peak_dbfs(samples) < config.silence_dbfs:
                silent.append(index)
                continue
            cid = clip_id(item.id, index)
            path = folder / f"{cid}.wav"
            written += write_clip(path, samples, config.sample_rate_hz)
            clips.append(
                {
                    "id": cid,
                    "path": str(path),
                    "index": index,
                    "start_seconds": round(index * config.clip_seconds, 6),
                    "padded_samples": padded,
                }
            )
    except AudioError:
        for clip in clips:  # keep no clips of a source that turned out broken
            Path(clip["path"]).unlink(missing_ok=True)
        raise
    _remove_other_clips(folder, item.id, keep={Path(clip["path"]).name for clip in clips})
    duration_seconds = seen_samples / config.sample_rate_hz
    record: dict[str, Any] = {
        "source_id": item.id,
        "sample_rate_in_hz": info.sample_rate_hz,
        "channels_in": info.channels,
        "format_in": f"{info.format}/{info.subtype}",
        "duration_seconds": round(duration_seconds, 3),
        "clips": clips,
        "silent_clips": silent,
        "clips_written": written,
        "outputs": [clip["path"] for clip in clips],
        "output": clips[0]["path"] if clips else None,
    }
    if nonfinite:
        record["nonfinite_samples"] = sum(nonfinite)
        notes.append(
            f"{sum(nonfinite)} samples were NaN or infinite (a broken float file): set to 0"
        )
    if notes:
        record["notes"] = notes
    if not clips:
        record["status"] = STATUS_EMPTY
        if silent:
            record["reason"] = (
                f"pure silence: every clip peaks below silence_dbfs={config.silence_dbfs:g} dBFS"
            )
            if nonfinite:
                record["reason"] += f" once its {sum(nonfinite)} NaN or infinite samples are 0"
        else:
            record["reason"] = (
                f"only {duration_seconds:.2f} s of audio, shorter than "
                f"min_remainder_seconds={config.min_remainder_seconds:g}; lower it to keep it"
            )
    return record


def prepare(
    raw_dir: Path | Mapping[str, Path], clips_dir: Path, config: PrepareConfig
) -> StageSummary:
    """Cut every audio file under `raw_dir`'s genre folders into clips under `clips_dir`.

    `raw_dir` is a folder with one sub-folder per genre (collect's output or any such
    folder) or a {genre: folder} mapping. Manifest: `clips_dir/manifest.jsonl`, one record
    per source file with its clips (id, path, index, start_seconds, padded_samples)."""
    clips_dir = Path(clips_dir)
    sources = find_sources(raw_dir if isinstance(raw_dir, Mapping) else Path(raw_dir))
    items = [
        Item(sid, genre, path, clips_dir / genre / f"{clip_id(sid, 0)}.wav")
        for genre, sid, path in sources
    ]
    save_config(config, clips_dir, "prepare")
    return run_items(
        "prepare",
        items,
        functools.partial(prepare_one, config=config, clips_dir=clips_dir),
        Manifest(clips_dir / "manifest.jsonl"),
        config.params(),
        workers=config.workers,
        shard=parse_shard(config.shard),
        known_errors=(AudioError, OSError),
        progress=config.progress,
        hash_inputs=item_digest,
        # the parent holds no synthesizer or model session: forked workers are safe and
        # skip the per-worker imports (librosa, basic-pitch) that spawned ones pay
        start_method="fork",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser("prepare", __doc__)
    parser.add_argument(
        "--raw-dir",
        type=Path,
        default=RAW_DIR,
        metavar="PATH",
        help="input: raw audio, one sub-folder per genre (default: %(default)s)",
    )
    parser.add_argument(
        "--clips-dir",
        type=Path,
        default=CLIPS_DIR,
        metavar="PATH",
        help="output: <genre>/ folders of clips (default: %(default)s)",
    )
    add_config_arguments(parser, PrepareConfig, default_group="clips")
    return parser


@cli_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(PrepareConfig, args)
    summary = prepare(args.raw_dir, args.clips_dir, config)
    print(summary_text(summary))
    return summary.exit_code


def summary_text(summary: StageSummary) -> str:
    """The shared summary plus the clip count and why items came out empty."""
    clips = sum(len(r.get("clips", [])) for r in summary.records)
    written = sum(r.get("clips_written", 0) for r in summary.records)
    lines = [summary.text()]
    if clips:  # a clip already on disk with the same samples is not written again
        lines.append(f"  {clips} clips from the sources done now ({written} files written)")
    lines += [
        f"  empty {r['id']}: {r.get('reason', '')}"
        for r in summary.records
        if r.get("status") == STATUS_EMPTY
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
