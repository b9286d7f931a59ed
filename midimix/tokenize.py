"""MIDI -> genre-labelled token sequences: one folder of MIDI files per genre in, a tokenizer,
token sequences and leak-free train/validation splits out.

`tokenize(midi_dirs, out_dir, config)` reads one folder of MIDI files per genre and writes
to `out_dir`:
- tokenizer.json      the miditok tokenizer with BOS/EOS/PAD and one Genre_<g> token per genre
                      plus the neutral Genre_any (`GenreTokenizer.save` / `.load`);
- sequences.jsonl     one line per piece (and per augmented copy of a training piece):
                      {"id", "genre", "source", "split", "ids", "augment"}; ids are the body
                      only: the dataset adds BOS and the genre token;
- splits.json         {"train": [ids], "validation": [ids]}, split by source recording;
- performance.json    per genre, the timing and dynamics the grid drops, from the training
                      split (`midimix.performance`), stored by training in the model;
- tokenize.config.json, stats.json (tokens per beat per genre), manifest.jsonl.

The base ids of each file (and of its augmented copies) live in its manifest record: writing
one small file per MIDI file would cost more than tokenizing it.

The work per file (load and check with `midimix.midifile`, merge tracks, augment with
`midimix.scores`, encode to base ids with `midimix.tokenizer`) runs under the stage contract
(`run_items`: resumable, atomic, sharded, workers); the optional BPE training and the final
files need every file, so they run after it, on the whole set.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import json
import math
import os
import random
import re
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from midimix import performance
from midimix.config import (
    MIDI_DIR,
    MIDI_SUFFIXES,
    TOKENS_DIR,
    as_mapping,
    check_choice,
    parse_genre_paths,
    parse_shard,
    save_config,
)
from midimix.errors import ConfigError, InputError, ItemError, cli_errors
from midimix.inputs import item_digest
from midimix.manifest import (
    STATUS_EMPTY,
    STATUS_OK,
    Item,
    Manifest,
    StageSummary,
    atomic_path,
    run_items,
)
from midimix.midifile import is_midi_name, load_score
from midimix.options import add_config_arguments, config_from_args, stage_parser
from midimix.scores import (
    MAX_PITCH,
    MIN_PITCH,
    augment,
    augment_plan,
    pitch_bounds,
    score_beats,
)
from midimix.tokenizer import (
    TOKENIZER_FILE,
    GenreTokenizer,
    TokenizeConfig,
    _miditok_config,
    train_bpe,
)

SPLITS = ("train", "validation")
CLIP_ID_RE = re.compile(r"^(?P<source>.+)_(?P<index>\d{4})$")  # prepare: <source>_<NNNN>
SEQUENCES_FILE = "sequences.jsonl"
SPLITS_FILE = "splits.json"
STATS_FILE = "stats.json"
MANIFEST_FILE = "manifest.jsonl"


@dataclass
class TokenizeResult:
    out_dir: Path
    tokenizer_path: Path | None  # None for a shard run: run once without --shard to finish
    sequences_path: Path | None
    splits_path: Path | None
    summary: StageSummary
    num_sequences: int = 0
    tokens_per_beat: dict[str, float] = field(default_factory=dict)  # genre -> base tokens
    tokens_per_beat_bpe: dict[str, float] = field(default_factory=dict)  # with BPE, if any

    def text(self) -> str:
        lines = [self.summary.text()]
        if self.sequences_path:
            tpb = ", ".join(f"{g} {v:.2f}" for g, v in self.tokens_per_beat.items())
            lines.append(f"  {self.num_sequences} sequences -> {self.out_dir}; tokens/beat: {tpb}")
            if self.tokens_per_beat_bpe:
                bpe = ", ".join(f"{g} {v:.2f}" for g, v in self.tokens_per_beat_bpe.items())
                lines.append(f"  with BPE: {bpe}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------- inputs and splits


def source_of(item_id: str) -> str:
    """The source recording of a clip id: the part before a trailing `_NNNN`."""
    match = CLIP_ID_RE.match(item_id)
    return match.group("source") if match else item_id


def find_midi(folders: Mapping[str, Path]) -> list[Item]:
    """One item per MIDI file (recursive); id '<genre>/<path below the genre folder>'."""
    items: list[Item] = []
    for genre, folder in sorted(folders.items()):
        if not folder.is_dir():
            raise ConfigError(f"genre folder {folder} ({genre}) does not exist")
        # not only files: a folder or a link loop named like MIDI is recorded as failed
        paths = sorted(p for p in folder.rglob("*") if is_midi_name(p))
        if not paths:
            raise ConfigError(
                f"genre folder {folder} ({genre}) has no {'/'.join(MIDI_SUFFIXES)} files: put "
                "MIDI files there or leave the genre out"
            )
        for path in paths:
            rel = path.relative_to(folder).with_suffix("").as_posix()
            item_id = f"{genre}/{rel}"
            source = f"{genre}/{source_of(rel)}"
            items.append(Item(item_id, genre, path, Path(), {"recording": source}))
    return items


def split_sources(
    sources_by_genre: Mapping[str, Sequence[str]], fraction: float, seed: int
) -> dict[str, str]:
    """source -> split. Per genre, round(fraction * sources) sources (at least one when
    the genre has two or more) go to validation, chosen by a seeded shuffle."""
    out: dict[str, str] = {}
    for genre in sorted(sources_by_genre):
        sources = sorted(set(sources_by_genre[genre]))
        random.Random(f"{seed}:{genre}").shuffle(sources)
        n_val = round(fraction * len(sources))
        if fraction > 0 and n_val == 0 and len(sources) >= 2:
            n_val = 1
        for i, source in enumerate(sources):
            out[source] = "validation" if i < n_val else "train"
    return out


def load_sequences(
    tokens_dir: Path, split: str, copies: bool = True
) -> list[tuple[str, list[int]]]:
    """(genre, body ids) of every sequence of a split ('train' includes augmented copies
    unless `copies` is off)."""
    check_choice("split", split, SPLITS)
    path = Path(tokens_dir) / SEQUENCES_FILE
    if not path.is_file():
        raise InputError(f"no {SEQUENCES_FILE} in {tokens_dir}: run `midimix tokenize` first")
    out: list[tuple[str, list[int]]] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row["split"] == split and (copies or row.get("augment") is None):
                out.append((row["genre"], [int(i) for i in row["ids"]]))
    return out


# ---------------------------------------------------------------------------- the stage

_WORKER: dict[str, Any] = {}


class BufferedManifest(Manifest):
    """The stage manifest with one open handle, flushed per line but synced to disk once,
    at `close`: a file takes milliseconds to tokenize, less than one fsync here, and a killed
    process still loses nothing that was flushed (only a machine crash could)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._handle: IO[bytes] | None = None

    def append(self, record: dict[str, Any]) -> None:
        """One whole line: a torn last line (a kill) is closed first, and a write that fails
        (a full disk) is cut back off, as `Manifest.append` does."""
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode("utf-8")
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a+b")  # noqa: SIM115 (closed in close)
            size = self._handle.seek(0, os.SEEK_END)
            if size:
                self._handle.seek(size - 1)
                if self._handle.read(1) != b"\n":
                    line = b"\n" + line
        size = self._handle.seek(0, os.SEEK_END)
        try:
            self._handle.write(line)
            self._handle.flush()
        except OSError:
            with contextlib.suppress(OSError):
                self._handle.truncate(size)
            raise

    def close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            try:
                os.fsync(handle.fileno())
            finally:
                handle.close()


def _init_worker(genres: list[str], config: TokenizeConfig) -> None:
    _WORKER["tokenizer"] = GenreTokenizer.build(genres, config)


def _tokenize_item(item: Item, config: TokenizeConfig) -> dict[str, Any]:
    """Load, check, prepare, augment and encode one file; the base ids go in its record."""
    tokenizer: GenreTokenizer = _WORKER["tokenizer"]
    prepared = tokenizer.prepare(load_score(item.source))
    ids = tokenizer.encode_base(prepared)
    beats = round(score_beats(prepared), 3)
    if not ids or prepared.note_num() == 0:
        reason = "no notes" + (" (after dropping drums)" if tokenizer.drums == "drop" else "")
        return {"status": STATUS_EMPTY, "reason": reason, "beats": beats, "variants": []}
    if tokenizer.note_count(ids) == 0:
        low, high = pitch_bounds(prepared) or (0, 0)
        reason = (
            f"none of its {prepared.note_num()} notes can be encoded: their pitches "
            f"({low}-{high}) lie outside the tokenizer's range {MIN_PITCH}-{MAX_PITCH}"
        )
        return {"status": STATUS_EMPTY, "reason": reason, "beats": beats, "variants": []}
    variants: list[dict[str, Any]] = [{"name": "", "augment": None, "ids": ids}]
    for plan in augment_plan(item.id, pitch_bounds(prepared), **config.augment_params()):
        copy = augment(prepared, plan["transpose"], plan["tempo_scale"], plan["velocity_offset"])
        variants.append({"name": plan["name"], "augment": plan, "ids": tokenizer.encode_base(copy)})
    return {"status": STATUS_OK, "tokens": len(ids), "beats": beats, "variants": variants}


def tokenize(
    midi_dirs: Mapping[str, Path] | Path, out_dir: Path, config: TokenizeConfig
) -> TokenizeResult:
    """Tokenize one folder of MIDI per genre into `out_dir` (see the module docstring)."""
    out_dir = Path(out_dir)
    folders = as_mapping(midi_dirs)
    if not folders:
        raise ConfigError(f"no genre folders in {midi_dirs}: expected one sub-folder per genre")
    genres = sorted(folders)
    items = find_midi(folders)
    for item in items:
        item.output = out_dir / MANIFEST_FILE  # the ids are in the record itself
    tokenizer = GenreTokenizer.build(genres, config)
    params = {"genres": genres, **config.tokenizer_params(), **config.augment_params()}
    _WORKER["tokenizer"] = tokenizer  # the single-process path uses this one
    manifest = BufferedManifest(out_dir / MANIFEST_FILE)
    try:
        summary = run_items(
            "tokenize",
            items,
            functools.partial(_tokenize_item, config=config),
            manifest,
            params,
            workers=config.workers,
            shard=parse_shard(config.shard),
            initializer=(
                functools.partial(_init_worker, genres, config) if config.workers > 1 else None
            ),
            progress=config.progress,
            hash_inputs=item_digest,
        )
    finally:
        manifest.close()
    result = TokenizeResult(out_dir, None, None, None, summary)
    if config.shard is not None and parse_shard(config.shard)[1] > 1:
        return result  # the final files need every shard: run once more without --shard
    return _assemble(items, genres, tokenizer, out_dir, config, result)


def _assemble(
    items: list[Item],
    genres: list[str],
    tokenizer: GenreTokenizer,
    out_dir: Path,
    config: TokenizeConfig,
    result: TokenizeResult,
) -> TokenizeResult:
    """Splits, optional BPE, sequences.jsonl, tokenizer.json, stats and config."""
    records = Manifest(out_dir / MANIFEST_FILE).records()
    done = [i for i in items if records.get(i.id, {}).get("status") == STATUS_OK]
    sources: dict[str, list[str]] = defaultdict(list)
    for item in items:  # every file, good or bad, so that a split never depends on failures
        sources[item.genre].append(item.extra["recording"])
    split_of_source = split_sources(sources, config.validation_fraction, config.seed)
    splits: dict[str, list[str]] = {name: [] for name in SPLITS}
    pieces = []
    for item in done:
        data = records[item.id]
        split = split_of_source[item.extra["recording"]]
        splits[split].append(item.id)
        pieces.append((item, split, data))

    if config.bpe_vocab_size:
        train_ids = [v["ids"] for _, split, d in pieces if split == "train" for v in d["variants"]]
        train_bpe(tokenizer, train_ids, config.bpe_vocab_size)

    rows = []
    base_len: dict[str, float] = defaultdict(float)
    bpe_len: dict[str, float] = defaultdict(float)
    beats: dict[str, float] = defaultdict(float)
    for item, split, data in pieces:
        for variant in data["variants"]:
            if variant["augment"] is not None and split != "train":
                continue  # augmented copies only ever train
            ids = tokenizer.bpe_encode(variant["ids"])
            suffix = f"@{variant['name']}" if variant["name"] else ""
            row = {
                "id": item.id + suffix,
                "genre": item.genre,
                "source": item.extra["recording"],
                "split": split,
                "ids": ids,
                "augment": variant["augment"],
            }
            rows.append(json.dumps(row))
            if variant["augment"] is None:
                base_len[item.genre] += len(variant["ids"])
                bpe_len[item.genre] += len(ids)
                beats[item.genre] += data["beats"]

    _write_text(out_dir / TOKENIZER_FILE, tokenizer.to_json())
    _write_text(out_dir / SEQUENCES_FILE, "".join(r + "\n" for r in rows))
    _write_text(out_dir / SPLITS_FILE, _json_text(splits))
    save_config(config, out_dir, "tokenize")
    result.tokens_per_beat = {g: _ratio(base_len[g], beats[g]) for g in genres}
    if tokenizer.is_trained:
        result.tokens_per_beat_bpe = {g: _ratio(bpe_len[g], beats[g]) for g in genres}
    stats = {
        "genres": genres,
        "vocab_size": tokenizer.vocab_size,
        "base_vocab_size": tokenizer.base_vocab_size,
        "pieces": {s: len(v) for s, v in splits.items()},
        "sequences": len(rows),
        "tokens_per_beat": result.tokens_per_beat,
        "tokens_per_beat_bpe": result.tokens_per_beat_bpe,
    }
    _write_text(out_dir / STATS_FILE, _json_text(stats))
    train_items = [item for item, split, _ in pieces if split == "train"]
    performances = fit_performance(train_items, tokenizer)
    _write_text(out_dir / performance.FILE_NAME, _json_text(performance.to_dict(performances)))
    result.tokenizer_path = out_dir / TOKENIZER_FILE
    result.sequences_path = out_dir / SEQUENCES_FILE
    result.splits_path = out_dir / SPLITS_FILE
    result.num_sequences = len(rows)
    return result


def fit_performance(
    items: Sequence[Item], tokenizer: GenreTokenizer
) -> dict[str, performance.GenrePerformance]:
    """The timing and dynamics the grid drops (`midimix.performance`), per genre, from the
    original training pieces as the tokenizer prepares them (never the validation split)."""
    by_genre: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_genre[item.genre].append(item)

    def scores(genre_items: list[Item]) -> Any:
        for item in genre_items:
            with contextlib.suppress(ItemError):  # tokenized a moment ago: only if it changed
                yield tokenizer.prepare(load_score(item.source))

    bins = [int(v) for v in tokenizer.miditok.velocities]
    return performance.fit_genres(
        {g: scores(group) for g, group in by_genre.items()}, tokenizer.steps_per_beat, bins
    )


def _write_text(path: Path, text: str) -> None:
    """Atomic (temporary file, then rename) without fsync: these files are rewritten by
    every run from the manifest, which is synced, so a crash cannot leave them stale. An empty
    text is a valid file (no piece tokenized: no sequences), not a write that failed."""
    with atomic_path(path, allow_empty=not text) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _json_text(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def _ratio(num: float, den: float) -> float:
    return round(num / den, 3) if den > 0 and math.isfinite(den) else 0.0


# ---------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser("tokenize", __doc__)
    parser.add_argument(
        "inputs",
        nargs="*",
        help=f"GENRE=FOLDER pairs, or one folder with a sub-folder per genre (default {MIDI_DIR})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=TOKENS_DIR,
        metavar="FOLDER",
        help=f"output folder (default: {TOKENS_DIR})",
    )
    add_config_arguments(parser, TokenizeConfig)
    return parser


@cli_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(TokenizeConfig, args)
    inputs: Mapping[str, Path] | Path
    if not args.inputs:
        inputs = MIDI_DIR
    elif len(args.inputs) == 1 and "=" not in args.inputs[0]:
        inputs = Path(args.inputs[0])
    else:
        inputs = parse_genre_paths(args.inputs)
    try:
        result = tokenize(inputs, args.out, config)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise InputError(
            f"the disk is full writing to {args.out}: free some space and run again; the "
            "files already tokenized are kept"
        ) from error
    print(result.text())
    return result.summary.exit_code


__all__ = [  # the stage, and the names other modules import from here (defined elsewhere)
    "SEQUENCES_FILE",
    "TOKENIZER_FILE",
    "GenreTokenizer",
    "TokenizeConfig",
    "TokenizeResult",
    "_miditok_config",
    "load_score",
    "load_sequences",
    "main",
    "score_beats",
    "tokenize",
]

if __name__ == "__main__":
    sys.exit(main())
