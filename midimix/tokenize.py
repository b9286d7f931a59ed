"""MIDI -> genre-labelled token sequences: the tokenizer, augmentation and leak-free splits.

`tokenize(midi_dirs, out_dir, config)` reads one folder of MIDI files per genre and writes
to `out_dir`:
- tokenizer.json      the miditok tokenizer with BOS/EOS/PAD and one Genre_<g> token per genre
                      plus the neutral Genre_any (`GenreTokenizer.save` / `.load`);
- sequences.jsonl     one line per piece (and per augmented copy of a training piece):
                      {"id", "genre", "source", "split", "ids", "augment"}; ids are the body
                      only: the dataset adds BOS and the genre token;
- splits.json         {"train": [ids], "validation": [ids]}, split by source recording;
- tokenize_config.json, stats.json (tokens per beat per genre), manifest.jsonl.

The base ids of each file (and of its augmented copies) live in its manifest record: writing
one small file per MIDI file would cost more than tokenizing it.

The work per file (load, check, merge tracks, augment, encode to base ids) runs under the
stage contract (`run_items`: resumable, atomic, sharded, workers); the optional BPE training
and the final files need every file, so they run after it, on the whole set.
"""

from __future__ import annotations

import argparse
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
from typing import IO, TYPE_CHECKING, Any

from midimix.config import (
    GENRE_ANY,
    MIDI_DIR,
    TOKENS_DIR,
    as_mapping,
    check_choice,
    check_genre_name,
    check_range,
    config_to_dict,
    parse_genre_paths,
    parse_shard,
)
from midimix.errors import ConfigError, InputError, ItemError, cli_errors
from midimix.manifest import (
    STATUS_EMPTY,
    STATUS_OK,
    Item,
    Manifest,
    StageSummary,
    atomic_path,
    atomic_write_text,
    run_items,
)

if TYPE_CHECKING:
    import miditok
    from symusic.core import ScoreTick, TrackTick  # what symusic.Score(...) returns

TOKENIZATIONS = ("REMI", "TSD")
TRACK_MODES = ("merge", "programs")  # one merged piano part, or one Program token per note
DRUM_MODES = ("drop", "keep")
SPLITS = ("train", "validation")
MIDI_SUFFIXES = (".mid", ".midi")
SANE_TEMPO_BPM = (10.0, 500.0)  # outside this a file is broken, not just fast or slow
MIN_PITCH, MAX_PITCH = 21, 108  # the piano range: transposition keeps notes inside it
CLIP_ID_RE = re.compile(r"^(?P<source>.+)_(?P<index>\d{4})$")  # prepare: <source>_<NNNN>

TOKENIZER_FILE = "tokenizer.json"
SEQUENCES_FILE = "sequences.jsonl"
SPLITS_FILE = "splits.json"
CONFIG_FILE = "tokenize_config.json"
STATS_FILE = "stats.json"
MANIFEST_FILE = "manifest.jsonl"
SPECIAL_TYPE = "Special"


@dataclass
class TokenizeConfig:
    tokenization: str = "REMI"  # REMI or TSD; REMI measured better here (docs/tokenize.md)
    positions_per_beat: int = 4  # 16th-note grid: enough for beat-aligned transcriptions
    max_duration_beats: int = 8  # longest Duration token; two 4/4 bars
    num_velocities: int = 8  # coarse dynamics: ppp..fff
    num_tempos: int = 16  # log-spaced tempo bins between the two bounds below
    min_tempo_bpm: int = 40
    max_tempo_bpm: int = 200
    tracks: str = "merge"  # merge: all pitched tracks into one part; programs: keep each
    drums: str = "drop"  # drop: drum tracks removed; keep: drums tokenized (PitchDrum)
    bpe_vocab_size: int = 0  # 0: no BPE; else the vocabulary size learned on the train split
    transpose_semitones: int = 2  # offline copies of each piece at -N..-1, +1..+N semitones
    tempo_jitter: float = 0.0  # each copy's tempo scaled by a factor in [1-j, 1+j]
    velocity_jitter: int = 0  # each copy's velocities shifted by an offset in [-v, v]
    validation_fraction: float = 0.1  # share of source recordings held out, per genre
    seed: int = 0  # split and augmentation randomness
    workers: int = 1
    shard: str | None = None  # 'K/N': tokenize only this share of files; no final files
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # free notes saved with the config

    def __post_init__(self) -> None:
        check_choice("tokenization", self.tokenization, TOKENIZATIONS)
        check_range("positions_per_beat", self.positions_per_beat, 1, 32)
        check_range("max_duration_beats", self.max_duration_beats, 1, 64)
        check_range("num_velocities", self.num_velocities, 1, 127)
        check_range("num_tempos", self.num_tempos, 1, 256)
        check_range("min_tempo_bpm", self.min_tempo_bpm, SANE_TEMPO_BPM[0], SANE_TEMPO_BPM[1])
        check_range("max_tempo_bpm", self.max_tempo_bpm, self.min_tempo_bpm + 1, SANE_TEMPO_BPM[1])
        check_choice("tracks", self.tracks, TRACK_MODES)
        check_choice("drums", self.drums, DRUM_MODES)
        if self.bpe_vocab_size:
            check_range("bpe_vocab_size", self.bpe_vocab_size, 300, 100_000)
        check_range("transpose_semitones", self.transpose_semitones, 0, 12)
        check_range("tempo_jitter", self.tempo_jitter, 0.0, 0.5)
        check_range("velocity_jitter", self.velocity_jitter, 0, 64)
        check_range("validation_fraction", self.validation_fraction, 0.0, 0.9)
        check_range("workers", self.workers, 1, 256)
        parse_shard(self.shard)

    def tokenizer_params(self) -> dict[str, Any]:
        """The fields that shape the vocabulary and the base ids (not BPE, splits, workers)."""
        keys = (
            "tokenization",
            "positions_per_beat",
            "max_duration_beats",
            "num_velocities",
            "num_tempos",
            "min_tempo_bpm",
            "max_tempo_bpm",
            "tracks",
            "drums",
        )
        return {key: getattr(self, key) for key in keys}


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


# ---------------------------------------------------------------------------------------
# Genre tokens


def genre_token(genre: str) -> str:
    """'Genre_<g>'. miditok splits a token's type from its value at '_', so an '_' inside a
    genre name is written '.', which genre names never contain (the mapping is one-to-one)."""
    return f"Genre_{genre.replace('_', '.')}"


def genre_of_token(token: str) -> str | None:
    """The genre of a 'Genre_<g>' token ('any' for the neutral one), None for other tokens."""
    if not token.startswith("Genre_"):
        return None
    return token[len("Genre_") :].replace(".", "_")


def _miditok_config(genres: Sequence[str], config: TokenizeConfig) -> miditok.TokenizerConfig:
    import miditok

    specials = ["PAD", "BOS", "EOS", *(genre_token(g) for g in genres), genre_token(GENRE_ANY)]
    use_programs = config.tracks == "programs" or config.drums == "keep"
    if config.tracks == "programs":
        programs = list(range(-1 if config.drums == "keep" else 0, 128))
    else:
        programs = [-1, 0]  # the merged part is program 0; -1 is the (kept) drum part
    return miditok.TokenizerConfig(
        pitch_range=(MIN_PITCH, MAX_PITCH + 1),
        beat_res={(0, config.max_duration_beats): config.positions_per_beat},
        num_velocities=config.num_velocities,
        special_tokens=specials,
        # REMI: BPE merges stay inside a bar, so every merged token that holds a Bar starts
        # with it and chunks can still start at bar lines.
        encode_ids_split="bar" if config.tokenization == "REMI" else "no",
        use_tempos=True,
        num_tempos=config.num_tempos,
        tempo_range=(config.min_tempo_bpm, config.max_tempo_bpm),
        log_tempos=True,
        use_time_signatures=True,
        time_signature_range={4: [2, 3, 4, 5, 6], 8: [3, 6, 9, 12]},
        use_programs=use_programs,
        programs=programs,
        one_token_stream_for_programs=True,
        remove_duplicated_notes=False,  # `prepare_score` does it, in numpy
        midimix=config.tokenizer_params(),  # kept in tokenizer.json (additional_params)
    )


# ---------------------------------------------------------------------------------------
# Scores: loading, checks, track handling, augmentation


def load_score(path: Path) -> ScoreTick:
    """A MIDI file as a `symusic.Score`; `ItemError` with the reason for a bad file."""
    from symusic.core import ScoreTick

    path = Path(path)
    if path.stat().st_size == 0:
        raise ItemError("zero-length file (0 bytes): not a MIDI file")
    try:
        score = ScoreTick(path)
    except RuntimeError as error:  # symusic's parser reports every malformed file this way
        raise ItemError(f"corrupt MIDI: {str(error).strip().splitlines()[0]}") from error
    check_score(score)
    return score


def check_score(score: ScoreTick) -> None:
    """Raise `ItemError` for a score that no tokenizer setting can make sense of."""
    for tempo in score.tempos:
        if not SANE_TEMPO_BPM[0] <= tempo.qpm <= SANE_TEMPO_BPM[1]:
            raise ItemError(
                f"absurd tempo {tempo.qpm:.1f} BPM at tick {tempo.time} (expected "
                f"{SANE_TEMPO_BPM[0]:g}-{SANE_TEMPO_BPM[1]:g} BPM): the file's tempo map is broken"
            )
    if score.note_num() > 0 and score.end() <= 0:
        raise ItemError("zero length: every note starts and ends at tick 0")


def prepare_score(score: ScoreTick, tracks: str = "merge", drums: str = "drop") -> ScoreTick:
    """Drop or keep drums, merge pitched tracks into one part (program 0) or keep them."""
    from symusic.core import ScoreTick, TrackTick, TrackTickList  # noqa: F811 (runtime)

    kept = [t for t in score.tracks if drums == "keep" or not t.is_drum]
    if tracks == "programs":
        out = score.copy()
        out.tracks = TrackTickList([t.copy() for t in kept])
        for track in out.tracks:
            dedupe_notes(track)
        return out
    out = ScoreTick(score.ticks_per_quarter)
    out.tempos = score.tempos.copy()
    out.time_signatures = score.time_signatures.copy()
    out.key_signatures = score.key_signatures.copy()
    for is_drum in (False, True):
        parts = [t for t in kept if t.is_drum == is_drum and len(t.notes) > 0]
        if parts:
            merged = TrackTick("drums" if is_drum else "part", 0, is_drum)
            for part in parts:
                merged.notes.extend(part.notes)
            dedupe_notes(merged)
            out.tracks.append(merged)
    return out


def dedupe_notes(track: TrackTick) -> None:
    """Sort notes by (onset, pitch) and keep the longest of notes with the same onset and
    pitch (merged voices often double a note), in place."""
    import numpy as np
    from symusic.core import NoteTickList

    if len(track.notes) == 0:
        return
    soa = track.notes.numpy()
    order = np.lexsort((-soa["duration"].astype(np.int64), soa["pitch"], soa["time"]))
    time, pitch = soa["time"][order], soa["pitch"][order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (time[1:] != time[:-1]) | (pitch[1:] != pitch[:-1])
    keep = order[first]
    columns = [np.ascontiguousarray(soa[key][keep]) for key in ("time", "duration", "pitch")]
    velocity = np.ascontiguousarray(soa["velocity"][keep])
    # the stub lacks @staticmethod, hence the ignore
    track.notes = NoteTickList.from_numpy(*columns, velocity)  # type: ignore[call-arg]


def pitch_bounds(score: ScoreTick) -> tuple[int, int] | None:
    """(lowest, highest) pitch of the pitched notes, None when there are none."""
    pitches = [n.pitch for t in score.tracks if not t.is_drum for n in t.notes]
    return (min(pitches), max(pitches)) if pitches else None


def transpositions(bounds: tuple[int, int] | None, max_semitones: int) -> list[int]:
    """Shifts in -N..N (not 0) that keep every note inside the piano range 21-108."""
    if bounds is None:
        return []
    low, high = bounds
    return [
        s
        for s in range(-max_semitones, max_semitones + 1)
        if s != 0 and low + s >= MIN_PITCH and high + s <= MAX_PITCH
    ]


def augment(
    score: ScoreTick, semitones: int, tempo_scale: float, velocity_offset: int
) -> ScoreTick:
    """A transposed copy (drums untouched) with scaled tempos and shifted velocities."""
    out = score.copy()
    for track in out.tracks:
        if semitones and not track.is_drum:
            track.shift_pitch(semitones, inplace=True)
        if velocity_offset:
            for note in track.notes:
                note.velocity = min(127, max(1, note.velocity + velocity_offset))
    if tempo_scale != 1.0:
        for tempo in out.tempos:
            tempo.qpm = tempo.qpm * tempo_scale
    return out


def augment_plan(
    item_id: str, bounds: tuple[int, int] | None, config: TokenizeConfig
) -> list[dict[str, Any]]:
    """The augmented copies of one piece, each {"name", "transpose", "tempo_scale",
    "velocity_offset"}; deterministic from (seed, item id)."""
    shifts = transpositions(bounds, config.transpose_semitones)
    jitter = config.tempo_jitter > 0 or config.velocity_jitter > 0
    if not shifts and jitter and bounds is not None:
        shifts = [0]  # jitter alone still makes one copy
    rng = random.Random(f"{config.seed}:{item_id}")
    plan = []
    for shift in shifts:
        scale = 1.0 + rng.uniform(-config.tempo_jitter, config.tempo_jitter)
        offset = rng.randint(-config.velocity_jitter, config.velocity_jitter)
        name = f"t{shift:+d}" if shift else "j"
        plan.append(
            {
                "name": name,
                "transpose": shift,
                "tempo_scale": round(scale, 4),
                "velocity_offset": offset,
            }
        )
    return plan


def score_beats(score: ScoreTick) -> float:
    """Length in quarter-note beats, up to the end of the last note."""
    return score.end() / score.ticks_per_quarter if score.ticks_per_quarter else 0.0


# ---------------------------------------------------------------------------------------
# The tokenizer


class GenreTokenizer:
    """A miditok tokenizer whose special tokens carry the genres, plus the track handling
    (merge / programs, drums) that every MIDI goes through before it is encoded."""

    def __init__(self, tokenizer: miditok.MusicTokenizer) -> None:
        self.miditok = tokenizer
        params = tokenizer.config.additional_params.get("midimix", {})
        self.tracks: str = params.get("tracks", "merge")
        self.drums: str = params.get("drums", "drop")
        vocab: dict[str, int] = tokenizer.vocab  # base vocabulary: specials keep their ids
        self.pad_id = vocab["PAD_None"]
        self.bos_id = vocab["BOS_None"]
        self.eos_id = vocab["EOS_None"]
        self.any_id = vocab[genre_token(GENRE_ANY)]
        self.genre_ids: dict[str, int] = {}
        for token in tokenizer.special_tokens:
            genre = genre_of_token(token)
            if genre is not None and genre != GENRE_ANY:
                self.genre_ids[genre] = vocab[token]
        self.genres: list[str] = list(self.genre_ids)
        self.special_ids: frozenset[int] = frozenset(tokenizer.special_tokens_ids)
        self._types: list[str] | None = None

    # construction and files

    @classmethod
    def build(cls, genres: list[str], config: TokenizeConfig) -> GenreTokenizer:
        import miditok

        if not genres:
            raise ConfigError("a tokenizer needs at least one genre, got none")
        names = [check_genre_name(g) for g in genres]
        if len(set(names)) != len(names):
            raise ConfigError(f"genres must be distinct, got {names}")
        tokenizer_class = getattr(miditok, config.tokenization)
        return cls(tokenizer_class(_miditok_config(names, config)))

    def save(self, folder: Path) -> None:
        """folder/tokenizer.json (atomic): miditok's own JSON, config and vocabulary."""
        atomic_write_text(Path(folder) / TOKENIZER_FILE, self.to_json())

    def to_json(self) -> str:
        """The text of tokenizer.json: miditok's config, vocabulary and BPE model."""
        return json.dumps(self.miditok.to_dict(), indent=1) + "\n"

    @classmethod
    def load(cls, folder: Path) -> GenreTokenizer:
        import miditok

        path = Path(folder)
        path = path / TOKENIZER_FILE if path.is_dir() else path
        if not path.is_file():
            raise InputError(f"no tokenizer at {path}: run `midimix tokenize` to make one")
        try:
            name = json.loads(path.read_text(encoding="utf-8"))["tokenization"]
            tokenizer_class = getattr(miditok, name)
            return cls(tokenizer_class(params=path))
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as error:
            raise InputError(
                f"{path} is not a midimix tokenizer file ({type(error).__name__}: {error}); "
                "re-run `midimix tokenize` to write it again"
            ) from error

    # properties

    @property
    def vocab_size(self) -> int:
        return int(self.miditok.vocab_size)

    @property
    def is_trained(self) -> bool:
        """True when BPE merges were learned: ids above the base vocabulary exist."""
        return bool(self.miditok.is_trained)

    @property
    def base_vocab_size(self) -> int:
        return len(self.miditok.vocab)

    def genre_id(self, genre: str) -> int:
        if genre == GENRE_ANY:
            return self.any_id
        if genre not in self.genre_ids:
            raise ConfigError(
                f"unknown genre {genre!r}: this tokenizer knows {', '.join(self.genres)} "
                f"(and {GENRE_ANY!r})"
            )
        return self.genre_ids[genre]

    def token_types(self) -> list[str]:
        """One type per id ("Bar", "Position", "Pitch", ...; "Special" for specials). With BPE
        a merged token has the type of its first base token; the bare word-start marker of
        BPE, which decodes to nothing, is also "Special" (never to be generated)."""
        if self._types is None:
            self._types = [self._token_type(i) for i in range(self.vocab_size)]
        return self._types

    def _token_type(self, id_: int) -> str:
        if id_ in self.special_ids:
            return SPECIAL_TYPE
        tokens = self.base_tokens(id_)
        return tokens[0].split("_")[0] if tokens else SPECIAL_TYPE

    def base_tokens(self, id_: int) -> list[str]:
        """The base tokens behind one id (one token without BPE, one or more with it)."""
        tok = self.miditok
        if id_ < self.base_vocab_size:
            return [tok[id_]]
        return list(tok._vocab_learned_bytes_to_tokens[tok._model.id_to_token(id_)])

    # encoding and decoding

    def prepare(self, score: ScoreTick) -> ScoreTick:
        return prepare_score(score, self.tracks, self.drums)

    def encode(self, midi: Path | ScoreTick) -> list[int]:
        """Body ids of a MIDI file or score (no BOS/genre/EOS), BPE-encoded when trained."""
        score = load_score(Path(midi)) if isinstance(midi, (str, Path)) else midi
        return self.bpe_encode(self.encode_base(self.prepare(score)))

    def encode_base(self, prepared: ScoreTick) -> list[int]:
        """Base-vocabulary ids of a score already passed through `prepare`."""
        # preprocess + _score_to_tokens is miditok's `encode` without the bar and beat
        # ticks it adds for its own BPE splitting: `bpe_encode` splits at Bar tokens instead.
        tok = self.miditok
        seq = tok._score_to_tokens(tok.preprocess_score(prepared))
        if isinstance(seq, list):  # one sequence per track: after merging there is at most one
            return [i for s in seq for i in s.ids]
        return list(seq.ids)

    def bpe_encode(self, base_ids: Sequence[int]) -> list[int]:
        """BPE over base ids, word by word (one word per bar for REMI), as miditok does."""
        if not self.is_trained or not base_ids:
            return list(base_ids)
        to_byte = self.miditok._vocab_base_id_to_byte
        words = ["".join(to_byte[i] for i in word) for word in split_words(base_ids, self.bar_id)]
        return list(self.miditok._model.encode(words, is_pretokenized=True).ids)

    @property
    def bar_id(self) -> int | None:
        """Id of the base Bar token, None for tokenizations without one (TSD)."""
        return self.miditok.vocab.get("Bar_None")

    def decode(self, ids: Sequence[int]) -> ScoreTick:
        """A score from ids; special tokens (BOS, genre, EOS, PAD) are ignored."""
        body = [int(i) for i in ids if int(i) not in self.special_ids]
        if self.is_trained:
            body = [i for i in body if self.base_tokens(i)]  # drop bare BPE word markers
        if not self.miditok.one_token_stream:
            return self.miditok.decode([body])
        return self.miditok.decode(body)

    def decode_to_file(self, ids: Sequence[int], path: Path) -> Path:
        path = Path(path)
        score = self.decode(ids)
        with atomic_path(path) as tmp:
            score.dump_midi(str(tmp))
        return path


def split_words(ids: Sequence[int], bar_id: int | None) -> list[list[int]]:
    """Cut a base-id sequence before every Bar token (the whole sequence when no Bar id)."""
    if bar_id is None:
        return [list(ids)]
    words: list[list[int]] = []
    for i in ids:
        if i == bar_id or not words:
            words.append([])
        words[-1].append(i)
    return words


def train_bpe(tokenizer: GenreTokenizer, base_sequences: list[list[int]], vocab_size: int) -> None:
    """Learn BPE merges (in place) from base-id sequences, cut into bar words."""
    if vocab_size <= tokenizer.base_vocab_size:
        raise ConfigError(
            f"bpe_vocab_size must exceed the base vocabulary ({tokenizer.base_vocab_size} "
            f"tokens), got {vocab_size}"
        )
    to_byte = tokenizer.miditok._vocab_base_id_to_byte
    corpus = [
        ["".join(to_byte[i] for i in word) for word in split_words(seq, tokenizer.bar_id)]
        for seq in base_sequences
        if seq
    ]
    if not corpus:
        raise ConfigError("BPE needs training pieces with notes; the train split has none")
    tokenizer.miditok.train(vocab_size=vocab_size, model="BPE", iterator=corpus)
    tokenizer._types = None


# ---------------------------------------------------------------------------------------
# Inputs and splits


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
        paths = sorted(
            p for p in folder.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file()
        )
        if not paths:
            raise ConfigError(
                f"genre folder {folder} ({genre}) has no .mid/.midi files: put MIDI files "
                "there or leave the genre out"
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


def load_sequences(tokens_dir: Path, split: str) -> list[tuple[str, list[int]]]:
    """(genre, body ids) of every sequence of a split ('train' includes augmented copies)."""
    check_choice("split", split, SPLITS)
    path = Path(tokens_dir) / SEQUENCES_FILE
    if not path.is_file():
        raise InputError(f"no {SEQUENCES_FILE} in {tokens_dir}: run `midimix tokenize` first")
    out: list[tuple[str, list[int]]] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row["split"] == split:
                out.append((row["genre"], [int(i) for i in row["ids"]]))
    return out


# ---------------------------------------------------------------------------------------
# The stage

_WORKER: dict[str, Any] = {}


class BufferedManifest(Manifest):
    """The stage manifest with one open handle, flushed per line but synced to disk once,
    at `close`: a file takes milliseconds to tokenize, less than one fsync here, and a killed
    process still loses nothing that was flushed (only a machine crash could)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._handle: IO[str] | None = None

    def append(self, record: dict[str, Any]) -> None:
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close)
        self._handle.write(json.dumps(record, sort_keys=True, default=str) + "\n")
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            os.fsync(self._handle.fileno())
            self._handle.close()
            self._handle = None


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
    variants: list[dict[str, Any]] = [{"name": "", "augment": None, "ids": ids}]
    for plan in augment_plan(item.id, pitch_bounds(prepared), config):
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
    params = {"genres": genres, **config.tokenizer_params(), **_augment_params(config)}
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
        )
    finally:
        manifest.close()
    result = TokenizeResult(out_dir, None, None, None, summary)
    if config.shard is not None and parse_shard(config.shard)[1] > 1:
        return result  # the final files need every shard: run once more without --shard
    return _assemble(items, genres, tokenizer, out_dir, config, result)


def _augment_params(config: TokenizeConfig) -> dict[str, Any]:
    keys = ("transpose_semitones", "tempo_jitter", "velocity_jitter", "seed")
    return {key: getattr(config, key) for key in keys}


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
    _write_text(out_dir / CONFIG_FILE, _json_text(config_to_dict(config)))
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
    result.tokenizer_path = out_dir / TOKENIZER_FILE
    result.sequences_path = out_dir / SEQUENCES_FILE
    result.splits_path = out_dir / SPLITS_FILE
    result.num_sequences = len(rows)
    return result


def _write_text(path: Path, text: str) -> None:
    """Atomic (temporary file, then rename) without fsync: these files are rewritten by
    every run from the manifest, which is synced, so a crash cannot leave them stale."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _json_text(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def _ratio(num: float, den: float) -> float:
    return round(num / den, 3) if den > 0 and math.isfinite(den) else 0.0


# ---------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    d = TokenizeConfig()
    p = argparse.ArgumentParser(
        prog="midimix tokenize",
        description="Turn one folder of MIDI files per genre into a tokenizer and token data.",
    )
    p.add_argument(
        "inputs",
        nargs="*",
        help=f"GENRE=FOLDER pairs, or one folder with a sub-folder per genre (default {MIDI_DIR})",
    )
    p.add_argument("--out", type=Path, default=TOKENS_DIR, help=f"output folder ({TOKENS_DIR})")
    vocab = p.add_argument_group("vocabulary (changes the tokenizer and the token ids)")
    vocab.add_argument(
        "--tokenization",
        choices=TOKENIZATIONS,
        default=d.tokenization,
        help="token scheme (%(default)s, which measured better here: docs/tokenize.md)",
    )
    vocab.add_argument(
        "--positions-per-beat",
        type=int,
        default=d.positions_per_beat,
        help="time grid positions per beat (%(default)s: 16th notes)",
    )
    vocab.add_argument(
        "--max-duration-beats",
        type=int,
        default=d.max_duration_beats,
        help="longest Duration token, in beats (%(default)s)",
    )
    vocab.add_argument(
        "--num-velocities",
        type=int,
        default=d.num_velocities,
        help="velocity bins (%(default)s)",
    )
    vocab.add_argument(
        "--num-tempos",
        type=int,
        default=d.num_tempos,
        help="log-spaced tempo bins between the min and max tempo (%(default)s)",
    )
    vocab.add_argument(
        "--min-tempo-bpm", type=int, default=d.min_tempo_bpm, help="lowest tempo bin (%(default)s)"
    )
    vocab.add_argument(
        "--max-tempo-bpm", type=int, default=d.max_tempo_bpm, help="highest tempo bin (%(default)s)"
    )
    vocab.add_argument(
        "--tracks",
        choices=TRACK_MODES,
        default=d.tracks,
        help="merge: all pitched tracks into one part; programs: keep each, with a Program "
        "token per note (%(default)s)",
    )
    vocab.add_argument(
        "--drums",
        choices=DRUM_MODES,
        default=d.drums,
        help="drop: drum tracks removed; keep: drums tokenized (%(default)s)",
    )
    vocab.add_argument(
        "--bpe-vocab-size",
        type=int,
        default=d.bpe_vocab_size,
        help="BPE vocabulary size learned on the train split; 0: no BPE (%(default)s)",
    )
    aug = p.add_argument_group("augmentation (extra copies of training pieces only)")
    aug.add_argument(
        "--transpose-semitones",
        type=int,
        default=d.transpose_semitones,
        help="N: copies transposed by -N..-1 and +1..+N semitones, kept within the piano "
        "range; 0: none (%(default)s)",
    )
    aug.add_argument(
        "--tempo-jitter",
        type=float,
        default=d.tempo_jitter,
        help="j: each copy's tempo scaled by a random factor in [1-j, 1+j] (%(default)s)",
    )
    aug.add_argument(
        "--velocity-jitter",
        type=int,
        default=d.velocity_jitter,
        help="v: each copy's velocities shifted by a random offset in [-v, v] (%(default)s)",
    )
    run = p.add_argument_group("split and run")
    run.add_argument(
        "--validation-fraction",
        type=float,
        default=d.validation_fraction,
        help="share of source recordings held out for validation, per genre (%(default)s)",
    )
    run.add_argument(
        "--seed",
        type=int,
        default=d.seed,
        help="seed of the split and the augmentation (%(default)s)",
    )
    run.add_argument(
        "--workers", type=int, default=d.workers, help="worker processes (%(default)s)"
    )
    run.add_argument(
        "--shard",
        default=None,
        help="K/N: only this share of the files, without the final files; run once without "
        "--shard to finish",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


@cli_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = TokenizeConfig(
        tokenization=args.tokenization,
        positions_per_beat=args.positions_per_beat,
        max_duration_beats=args.max_duration_beats,
        num_velocities=args.num_velocities,
        num_tempos=args.num_tempos,
        min_tempo_bpm=args.min_tempo_bpm,
        max_tempo_bpm=args.max_tempo_bpm,
        tracks=args.tracks,
        drums=args.drums,
        bpe_vocab_size=args.bpe_vocab_size,
        transpose_semitones=args.transpose_semitones,
        tempo_jitter=args.tempo_jitter,
        velocity_jitter=args.velocity_jitter,
        validation_fraction=args.validation_fraction,
        seed=args.seed,
        workers=args.workers,
        shard=args.shard,
        progress=not args.no_progress,
    )
    inputs: Mapping[str, Path] | Path
    if not args.inputs:
        inputs = MIDI_DIR
    elif len(args.inputs) == 1 and "=" not in args.inputs[0]:
        inputs = Path(args.inputs[0])
    else:
        inputs = parse_genre_paths(args.inputs)
    result = tokenize(inputs, args.out, config)
    print(result.text())
    return result.summary.exit_code


__all__ = [
    "GenreTokenizer",
    "TokenizeConfig",
    "TokenizeResult",
    "load_sequences",
    "tokenize",
]

if __name__ == "__main__":
    sys.exit(main())
