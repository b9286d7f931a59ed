"""The tokenizer: a miditok tokenizer whose special tokens carry the genres, and its settings.

`GenreTokenizer.build(genres, config)` makes one from a `TokenizeConfig`: BOS/EOS/PAD, one
`Genre_<g>` token per genre and the neutral `Genre_any` are special tokens of the vocabulary.
It prepares scores the same way for every caller (track merging, drums; `midimix.scores`),
encodes them to body ids (no BOS, genre or EOS: the dataset adds those), learns optional BPE
merges (`train_bpe`, one word per bar) and is saved as miditok's own tokenizer.json.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from midimix.config import GENRE_ANY, check_choice, check_genre_name, check_range, parse_shard
from midimix.errors import ConfigError, InputError, ItemError
from midimix.manifest import atomic_path, atomic_write_text
from midimix.midifile import SANE_TEMPO_BPM, load_score
from midimix.options import option
from midimix.scores import MAX_PITCH, MIN_PITCH, prepare_score, score_beats

if TYPE_CHECKING:
    import miditok
    from symusic.core import ScoreTick  # what symusic.Score(...) returns

TOKENIZATIONS = ("REMI", "TSD")
TRACK_MODES = ("merge", "programs")  # one merged piano part, or one Program token per note
DRUM_MODES = ("drop", "keep")
TOKENIZER_FILE = "tokenizer.json"
MAX_PIECE_BEATS = 50_000  # longer is a broken file (a note at tick 2**28), not a piece
SPECIAL_TYPE = "Special"

VOCABULARY = "vocabulary (changes the tokenizer and the token ids)"
AUGMENTATION = "augmentation (extra copies of training pieces only)"
RUN = "split and run"

T = TypeVar("T")


def _setting(default: T, group: str, **kwargs: Any) -> T:
    """A field listed under `group` in --help (further `option` settings in kwargs)."""
    if "choices" in kwargs:
        kwargs.setdefault("metavar", "{" + ",".join(kwargs["choices"]) + "}")
    return field(default=default, metadata=option(group=group, **kwargs))


@dataclass
class TokenizeConfig:
    tokenization: str = _setting("REMI", VOCABULARY, choices=TOKENIZATIONS)  # token scheme;
    # REMI measured better here (docs/tokenize.md)
    positions_per_beat: int = _setting(4, VOCABULARY)  # time grid positions per beat; 4 is
    # the 16th-note grid, enough for beat-aligned transcriptions
    max_duration_beats: int = _setting(8, VOCABULARY)  # longest Duration token, in beats
    num_velocities: int = _setting(8, VOCABULARY)  # velocity bins; 8: coarse dynamics, ppp..fff
    num_tempos: int = _setting(16, VOCABULARY)  # log-spaced tempo bins between the lowest and
    # the highest tempo
    min_tempo_bpm: int = _setting(40, VOCABULARY)  # lowest tempo bin
    max_tempo_bpm: int = _setting(200, VOCABULARY)  # highest tempo bin
    tracks: str = _setting("merge", VOCABULARY, choices=TRACK_MODES)  # merge: all pitched
    # tracks into one part; programs: keep each, with a Program token per note
    drums: str = _setting("drop", VOCABULARY, choices=DRUM_MODES)  # drop: drum tracks
    # removed; keep: drums tokenized as a drum part (PitchDrum tokens)
    bpe_vocab_size: int = _setting(0, VOCABULARY)  # BPE vocabulary size learned on the train
    # split; 0: no BPE
    transpose_semitones: int = _setting(2, AUGMENTATION)  # N: copies transposed by -N..-1
    # and +1..+N semitones, kept within the piano range; 0: none
    tempo_jitter: float = _setting(0.0, AUGMENTATION)  # j: each copy's tempo scaled by a
    # random factor in [1-j, 1+j]
    velocity_jitter: int = _setting(0, AUGMENTATION)  # v: each copy's velocities shifted by
    # a random offset in [-v, v]
    validation_fraction: float = _setting(0.1, RUN)  # share of source recordings held out
    # for validation, per genre
    seed: int = _setting(0, RUN)  # seed of the split and the augmentation
    workers: int = _setting(1, RUN)  # worker processes
    shard: str | None = _setting(None, RUN, metavar="K/N")  # only this share of the files,
    # without the final files; run once without --shard to finish
    progress: bool = _setting(True, RUN)  # show a progress bar
    extra: dict[str, Any] = field(  # free notes saved with the config (a JSON object)
        default_factory=dict, metadata=option(group=RUN)
    )

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

    def augment_params(self) -> dict[str, Any]:
        """The fields that decide the augmented copies (`midimix.scores.augment_plan`)."""
        keys = ("transpose_semitones", "tempo_jitter", "velocity_jitter", "seed")
        return {key: getattr(self, key) for key in keys}


# ---------------------------------------------------------------------------- genre tokens


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


# ---------------------------------------------------------------------------- the tokenizer


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
            if name not in TOKENIZATIONS:
                raise KeyError(f"tokenization {name!r} is not one of {', '.join(TOKENIZATIONS)}")
            tokenizer_class = getattr(miditok, name)
            loaded = cls(tokenizer_class(params=path))
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as error:
            raise InputError(
                f"{path} is not a midimix tokenizer file ({type(error).__name__}: {error}); "
                "re-run `midimix tokenize` to write it again"
            ) from error
        for genre in loaded.genres:  # they become file names: never trust them
            try:
                check_genre_name(genre)
            except ConfigError as error:
                raise InputError(f"{path} holds a genre token that is refused: {error}") from None
        return loaded

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
        """Base-vocabulary ids of a score already passed through `prepare`; an ItemError for
        a piece longer than MAX_PIECE_BEATS (one note at an absurd tick would otherwise cost
        a Bar token per bar up to it: minutes and millions of tokens)."""
        beats = score_beats(prepared)
        if beats > MAX_PIECE_BEATS:
            raise ItemError(
                f"the piece is {beats:,.0f} beats long (its last note ends at tick "
                f"{prepared.end():,}), more than the {MAX_PIECE_BEATS:,} beats (about 7 hours at "
                "120 BPM) a piece may have: a broken file, or a recording to cut into parts"
            )
        # preprocess + _score_to_tokens is miditok's `encode` without the bar and beat
        # ticks it adds for its own BPE splitting: `bpe_encode` splits at Bar tokens instead.
        tok = self.miditok
        seq = tok._score_to_tokens(tok.preprocess_score(prepared))
        if isinstance(seq, list):  # one sequence per track: after merging there is at most one
            return [i for s in seq for i in s.ids]
        return list(seq.ids)

    def note_count(self, base_ids: Sequence[int]) -> int:
        """Notes in base ids: their Pitch tokens. miditok drops notes outside its pitch range
        (21-108), so a score whose notes all lie outside encodes to bars and no notes."""
        tok = self.miditok
        return sum(1 for i in base_ids if tok[int(i)].startswith(("Pitch_", "PitchDrum_")))

    def bpe_encode(self, base_ids: Sequence[int]) -> list[int]:
        """BPE over base ids, word by word (one word per bar for REMI), as miditok does."""
        if not self.is_trained or not base_ids:
            return list(base_ids)
        to_byte = self.miditok._vocab_base_id_to_byte
        words = ["".join(to_byte[i] for i in word) for word in split_words(base_ids, self.bar_id)]
        return list(self.miditok._model.encode(words, is_pretokenized=True).ids)

    @property
    def steps_per_beat(self) -> int:
        """Onset grid positions per beat (the finest, where the grid changes with length)."""
        return max(self.miditok.config.beat_res.values())

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


def same_vocabulary(a: Path, b: Path) -> bool:
    """Whether two folders (token data sets or model folders) hold one vocabulary: an id of
    one names the same token in the other."""
    return GenreTokenizer.load(a).to_json() == GenreTokenizer.load(b).to_json()


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
