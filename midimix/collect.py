"""collect: gather a user's audio files into `data/raw/<genre>/<id>.<ext>` with a manifest.

Sources are folders (searched recursively for wav, flac, mp3, ogg, m4a/aac, ...), single
files, or URLs (downloaded with yt-dlp, the optional `midimix[download]` extra). The id is
the first 16 hex digits of the content's sha256, so the same recording found twice (a copy
in another folder, or under another name) is stored once. Files are copied, never moved.

    python -m midimix.collect --genre lofi=~/music/lofi --genre classical=~/music/bach.flac
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from midimix.audio import SUFFIX_BY_FORMAT, AudioError, is_audio_name, probe
from midimix.config import RAW_DIR, as_mapping, check_genre_name, check_range, parse_shard
from midimix.errors import ConfigError, DependencyError, InputError, cli_errors
from midimix.inputs import input_digest
from midimix.manifest import Item, Manifest, StageSummary, atomic_path, run_items
from midimix.options import add_config_arguments, config_from_args, option, stage_parser

ID_HEX_DIGITS = 16  # 64 bits of sha256: collisions are out of reach for any music collection

Source = Path | str  # a path, or an http(s) URL as a string


@dataclass
class CollectConfig:
    workers: int = 1  # worker processes; copying is disk-bound, so more rarely help
    shard: str | None = field(default=None, metadata=option(metavar="K/N"))  # run only shard K of N
    progress: bool = True  # progress bar on stderr
    download_dir: Path | None = None  # where URLs are downloaded; none: RAW_DIR/.downloads

    def __post_init__(self) -> None:
        check_range("workers", self.workers, 1, 256)
        parse_shard(self.shard)


def is_url(source: Source) -> bool:
    return isinstance(source, str) and source.split("://", 1)[0].lower() in (
        "http",
        "https",
        "file",
    )


class _QuietLogger:
    """yt-dlp's logger: it prints its errors itself even when quiet; the error it raises
    becomes collect's one line instead."""

    def debug(self, message: str) -> None:
        pass

    def info(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        pass

    def error(self, message: str) -> None:
        pass


def download(url: str, out_dir: Path) -> list[Path]:
    """Download the audio of `url` (a page yt-dlp knows, or a direct link) into `out_dir`."""
    try:
        import yt_dlp
    except ImportError as error:
        raise DependencyError(
            f"downloading {url} needs yt-dlp, which is not installed: "
            "pip install 'midimix[download]' (or pip install yt-dlp)"
        ) from error
    out_dir.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {
        "format": "bestaudio/best",
        "outtmpl": str(out_dir / "%(id)s.%(ext)s"),
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "logger": _QuietLogger(),
        "enable_file_urls": url.startswith("file:"),  # local files: how the tests run it
    }
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            info = ydl.extract_info(url, download=True)
    except yt_dlp.utils.DownloadError as error:
        reason = str(error).removeprefix("ERROR: ").splitlines()[0]
        reason = reason.split(" (caused by ")[0]  # the same words again, from the transport
        raise InputError(f"could not download {url}: {reason}") from error
    entries = info.get("entries") or [info]  # a playlist has entries
    paths = []
    for entry in entries:
        for download_info in entry.get("requested_downloads") or [entry]:
            path = Path(download_info.get("filepath") or ydl.prepare_filename(download_info))
            if path.exists():
                paths.append(path)
    return paths


def find_files(source: Path) -> tuple[list[Path], int]:
    """Audio files under a folder (by extension) or the file itself; and how many were ignored.

    A single file is taken whatever its name, so a wrong file gets a reason in the manifest."""
    if source.is_file():
        return [source], 0
    if not source.is_dir():
        raise InputError(f"{source} does not exist; expected an audio file or a folder of audio")
    found, ignored = [], 0
    for path in sorted(source.rglob("*")):
        if any(p.startswith(".") for p in path.relative_to(source).parts):
            continue
        if is_audio_name(path):  # a folder or a link loop by such a name is recorded as failed
            found.append(path)
        elif path.is_file():
            ignored += 1
    return found, ignored


def normalise_sources(
    sources: Sequence[Source] | Mapping[str, Sequence[Source]],
) -> dict[str, list[Source]]:
    """{genre: [sources]}; a plain list holds folders with one sub-folder per genre."""
    if isinstance(sources, Mapping):
        return {check_genre_name(g): list(paths) for g, paths in sources.items()}
    out: dict[str, list[Source]] = {}
    for root in sources:
        for genre, folder in as_mapping(Path(root)).items():
            out.setdefault(genre, []).append(folder)
    if not out:
        raise ConfigError("no genre folders found; give {genre: [paths]} or folders of genres")
    return out


def collect_one(item: Item) -> dict[str, Any]:
    """Check that the file is audio, then copy it (atomically) to its place under raw/."""
    info = probe(item.source)
    output = item.output
    if not is_audio_name(output):  # a file given by a name prepare would not recognise
        output = output.with_suffix(SUFFIX_BY_FORMAT.get(info.format, ".mka"))
    if not output.exists():
        with atomic_path(output) as tmp:
            shutil.copyfile(item.source, tmp)
    return {
        "output": str(output),
        "duration_seconds": round(info.duration_seconds, 3),
        "sample_rate_hz": info.sample_rate_hz,
        "channels": info.channels,
        "format": f"{info.format}/{info.subtype}",
    }


def collect(
    sources: Sequence[Source] | Mapping[str, Sequence[Source]],
    raw_dir: Path,
    config: CollectConfig,
) -> StageSummary:
    """Copy the audio of `sources` into `raw_dir/<genre>/<id>.<ext>`; manifest
    `raw_dir/manifest.jsonl` (source path, sha256, duration, sample rate, channels, genre).

    Content found twice is stored once, under the genre it was first given with; the record
    lists the other places in "duplicates"."""
    raw_dir = Path(raw_dir)
    by_genre = normalise_sources(sources)
    download_dir = config.download_dir or raw_dir / ".downloads"
    items: dict[str, Item] = {}
    ignored = 0
    for genre, genre_sources in by_genre.items():
        for source in genre_sources:
            url = None
            if is_url(source):
                url = str(source)
                # one folder per URL: yt-dlp finds its earlier download there and skips it
                url_dir = download_dir / hashlib.sha256(url.encode()).hexdigest()[:12]
                files = download(url, url_dir)
            elif isinstance(source, str) and "://" in source:
                raise InputError(f"{source}: only http(s):// and file:// URLs can be downloaded")
            else:
                files, skipped = find_files(Path(source).expanduser())
                ignored += skipped
            for path in files:
                try:
                    digest = input_digest(path)
                except OSError as error:  # recorded as this item's failure, the rest go on
                    sid = "unreadable-" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
                    reason = error.strerror or str(error)
                    output = raw_dir / genre / f"{sid}{path.suffix.lower()}"
                    items[sid] = Item(sid, genre, path, output, {"unreadable": reason})
                    continue
                sid = digest[:ID_HEX_DIGITS]
                if sid in items:
                    items[sid].extra["duplicates"].append(str(path))
                    continue
                output = raw_dir / genre / f"{sid}{path.suffix.lower() or '.audio'}"
                extra: dict[str, Any] = {"sha256": digest, "duplicates": []}
                if url:
                    extra["url"] = url
                items[sid] = Item(sid, genre, path, output, extra)
    summary = run_items(
        "collect",
        list(items.values()),
        collect_one,
        Manifest(raw_dir / "manifest.jsonl"),
        {},  # nothing changes a copy: same content, same output
        workers=config.workers,
        shard=parse_shard(config.shard),
        known_errors=(AudioError, OSError),
        progress=config.progress,
        hash_inputs=_known_digest,
    )
    if ignored:  # said once, not per file: cover art and playlists are common in music folders
        print(f"collect: ignored {ignored} files that are not audio by extension", file=sys.stderr)
    return summary


def _known_digest(item: Item) -> str:
    """The digest found while listing; an unreadable input's reason as an OSError."""
    if "unreadable" in item.extra:
        raise OSError(errno.EINVAL, item.extra["unreadable"])
    return str(item.extra["sha256"])


def parse_genre_sources(pairs: list[str]) -> dict[str, list[Source]]:
    """['lofi=PATH', 'lofi=URL', 'classical=PATH'] -> {genre: [sources]}; a genre may repeat."""
    out: dict[str, list[Source]] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not value:
            raise ConfigError(f"expected GENRE=PATH or GENRE=URL (e.g. lofi=~/music), got {pair!r}")
        source: Source = value if "://" in value else Path(value).expanduser()
        out.setdefault(check_genre_name(name.strip()), []).append(source)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser("collect", __doc__)
    parser.add_argument(
        "--genre",
        action="append",
        required=True,
        metavar="GENRE=PATH",
        help="a genre and a folder, file or URL; repeat for more (lofi=~/music/lofi)",
    )
    parser.add_argument(
        "--raw-dir",
        type=Path,
        default=RAW_DIR,
        metavar="PATH",
        help="output: one sub-folder per genre (default: %(default)s)",
    )
    add_config_arguments(parser, CollectConfig)
    return parser


@cli_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(CollectConfig, args)
    summary = collect(parse_genre_sources(args.genre), args.raw_dir, config)
    print(summary.text())
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
