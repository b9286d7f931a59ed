"""Tokenizer with genre tokens, the tokenize stage, splits and bad inputs, on real miditok.

Fixtures are made in code: lo-fi-like jazz-chord pieces written with symusic on the 16th-note
grid, a Bach chorale exported from music21's corpus, and real broken MIDI files."""

from __future__ import annotations

import dataclasses
import json
from fractions import Fraction
from pathlib import Path

import pytest
from symusic.core import NoteTick as Note
from symusic.core import ScoreTick as Score
from symusic.core import TempoTick as Tempo
from symusic.core import TimeSignatureTick as TimeSignature
from symusic.core import TrackTick as Track

from midimix import performance
from midimix.config import config_to_dict
from midimix.errors import ConfigError, InputError, ItemError
from midimix.midifile import load_score
from midimix.options import config_from_args
from midimix.scores import augment, prepare_score, transpositions
from midimix.tokenize import (
    build_parser,
    load_sequences,
    main,
    source_of,
    split_sources,
    tokenize,
)
from midimix.tokenizer import GenreTokenizer, TokenizeConfig, genre_token, train_bpe

TPQ = 480
SIXTEENTH = TPQ // 4
CHORDS = [[62, 65, 69, 72], [55, 59, 62, 65], [60, 64, 67, 71], [57, 60, 64, 67]]  # ii-V-I-vi

NoteKey = tuple[int, Fraction, Fraction]  # pitch, onset and duration in beats


def lofi_piece(seed: int, bars: int = 4, tempo_bpm: float = 80.0) -> Score:
    """Jazz chords (whole bars) under a syncopated melody, all on the 16th grid."""
    score = Score(TPQ)
    track = Track("piano", 0)
    for bar in range(bars):
        chord = CHORDS[(bar + seed) % len(CHORDS)]
        start = bar * 4 * TPQ
        for pitch in chord:
            track.notes.append(Note(start, 4 * TPQ, pitch, 56))
        for step, (pos, dur) in enumerate([(0, 3), (3, 2), (6, 4), (11, 5)]):
            pitch = chord[(step + seed) % 4] + 12
            track.notes.append(Note(start + pos * SIXTEENTH, dur * SIXTEENTH, pitch, 88))
    score.tracks.append(track)
    score.tempos.append(Tempo(0, tempo_bpm))
    score.time_signatures.append(TimeSignature(0, 4, 4))
    return score


def note_set(score: Score) -> set[NoteKey]:
    tpq = score.ticks_per_quarter
    return {
        (n.pitch, Fraction(n.time, tpq), Fraction(n.duration, tpq))
        for t in score.tracks
        for n in t.notes
    }


def f1(reference: set[NoteKey], estimate: set[NoteKey]) -> float:
    hits = len(reference & estimate)
    return 2 * hits / (len(reference) + len(estimate)) if reference or estimate else 1.0


def quantised(tokenizer: GenreTokenizer, score: Score) -> set[NoteKey]:
    """The notes as the tokenizer's grid sees them (miditok's own preprocessing)."""
    return note_set(tokenizer.miditok.preprocess_score(tokenizer.prepare(score)))


@pytest.fixture(scope="module")
def bach_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import music21

    path = tmp_path_factory.mktemp("bach") / "bwv66.6.mid"
    music21.corpus.parse("bach/bwv66.6").write("midi", fp=str(path))
    return path


@pytest.fixture(scope="module")
def remi() -> GenreTokenizer:
    return GenreTokenizer.build(["classical", "lofi"], TokenizeConfig())


@pytest.fixture(scope="module")
def remi_bpe(bach_path: Path) -> GenreTokenizer:
    tokenizer = GenreTokenizer.build(["classical", "lofi"], TokenizeConfig())
    pieces = [lofi_piece(s) for s in range(4)] + [load_score(bach_path)]
    train_bpe(tokenizer, [tokenizer.encode(p) for p in pieces], vocab_size=400)
    return tokenizer


# --- round trips ------------------------------------------------------------------------


@pytest.mark.parametrize("tokenization", ["REMI", "TSD"])
def test_round_trip_of_a_piece_on_the_grid_keeps_every_note(tokenization: str) -> None:
    tokenizer = GenreTokenizer.build(["lofi"], TokenizeConfig(tokenization=tokenization))
    piece = lofi_piece(1)
    ids = tokenizer.encode(piece)
    decoded = tokenizer.decode([tokenizer.bos_id, tokenizer.genre_id("lofi"), *ids])
    assert note_set(decoded) == note_set(piece)  # 32 notes in, the same 32 out
    assert len(note_set(piece)) == 32


def test_round_trip_of_a_bach_chorale_has_f1_one_after_quantisation(
    remi: GenreTokenizer, bach_path: Path
) -> None:
    score = load_score(bach_path)
    reference = quantised(remi, score)
    decoded = note_set(remi.decode(remi.encode(bach_path)))
    assert len(reference) > 100  # four voices, all merged into one part
    assert f1(reference, decoded) == 1.0


def test_round_trip_with_bpe_keeps_every_note_and_uses_merged_ids(
    remi_bpe: GenreTokenizer, bach_path: Path
) -> None:
    for piece in (lofi_piece(2), load_score(bach_path)):
        ids = remi_bpe.encode(piece)
        assert max(ids) >= remi_bpe.base_vocab_size  # merged tokens are in use
        assert f1(quantised(remi_bpe, piece), note_set(remi_bpe.decode(ids))) == 1.0
    base = remi_bpe.encode_base(remi_bpe.prepare(lofi_piece(2)))
    assert len(remi_bpe.encode(lofi_piece(2))) < 0.6 * len(base)


def test_decode_to_file_writes_a_midi_with_the_notes(remi: GenreTokenizer, tmp_path: Path) -> None:
    piece = lofi_piece(0)
    path = remi.decode_to_file(remi.encode(piece), tmp_path / "out" / "piece.mid")
    assert note_set(Score(path)) == note_set(piece)


# --- the tokenizer: genres, types, save/load -----------------------------------------------


def test_genre_tokens_and_ids() -> None:
    tokenizer = GenreTokenizer.build(["hip_hop", "lofi"], TokenizeConfig())
    assert tokenizer.genres == ["hip_hop", "lofi"]
    assert genre_token("hip_hop") == "Genre_hip.hop"
    assert tokenizer.miditok[tokenizer.genre_id("hip_hop")] == "Genre_hip.hop"
    assert tokenizer.miditok[tokenizer.any_id] == "Genre_any"
    assert (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id) == (0, 1, 2)
    with pytest.raises(ConfigError, match="unknown genre 'jazz'.*hip_hop, lofi"):
        tokenizer.genre_id("jazz")
    with pytest.raises(ConfigError, match="no spaces or slashes"):
        GenreTokenizer.build(["lo fi"], TokenizeConfig())


def test_token_types(remi: GenreTokenizer, remi_bpe: GenreTokenizer) -> None:
    types = remi.token_types()
    assert len(types) == remi.vocab_size
    assert {types[i] for i in remi.special_ids} == {"Special"}
    assert types[remi.bar_id] == "Bar"  # type: ignore[index]
    assert types[remi.miditok.vocab["Pitch_60"]] == "Pitch"
    bpe_types = remi_bpe.token_types()
    assert len(bpe_types) == remi_bpe.vocab_size > remi_bpe.base_vocab_size
    for i in range(remi_bpe.base_vocab_size, remi_bpe.vocab_size):
        first = remi_bpe.base_tokens(i)
        assert bpe_types[i] == (first[0].split("_")[0] if first else "Special")


@pytest.mark.parametrize("trained", [False, True])
def test_save_and_load_give_the_same_tokenizer(
    trained: bool, remi: GenreTokenizer, remi_bpe: GenreTokenizer, bach_path: Path, tmp_path: Path
) -> None:
    tokenizer = remi_bpe if trained else remi
    tokenizer.save(tmp_path)
    loaded = GenreTokenizer.load(tmp_path)
    assert loaded.vocab_size == tokenizer.vocab_size
    assert loaded.miditok.vocab == tokenizer.miditok.vocab
    assert loaded.token_types() == tokenizer.token_types()
    assert loaded.genre_ids == tokenizer.genre_ids
    assert loaded.encode(bach_path) == tokenizer.encode(bach_path)


def test_load_of_a_missing_or_broken_tokenizer_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="run `midimix tokenize`"):
        GenreTokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(InputError, match="not a midimix tokenizer file"):
        GenreTokenizer.load(tmp_path)


# --- tracks, drums, augmentation ---------------------------------------------------------


def band_piece() -> Score:
    """Piano chords, a bass line and a drum track: 8 + 4 + 8 notes."""
    score = lofi_piece(0, bars=1)  # 8 notes, program 0
    bass = Track("bass", 33)
    for beat in range(4):
        bass.notes.append(Note(beat * TPQ, TPQ, 38 + beat, 90))
    drums = Track("drums", 0, True)
    for eighth in range(8):
        drums.notes.append(Note(eighth * TPQ // 2, TPQ // 4, 42, 70))
    score.tracks.append(bass)
    score.tracks.append(drums)
    return score


def test_merge_drops_drums_and_keeps_every_pitched_note() -> None:
    prepared = prepare_score(band_piece(), tracks="merge", drums="drop")
    assert len(prepared.tracks) == 1 and prepared.tracks[0].program == 0
    assert prepared.note_num() == 12
    kept = prepare_score(band_piece(), tracks="merge", drums="keep")
    assert [t.is_drum for t in kept.tracks] == [False, True] and kept.note_num() == 20


def test_merging_keeps_one_of_doubled_notes_the_longest() -> None:
    score = Score(TPQ)
    for name, duration in (("alto", TPQ), ("tenor", 2 * TPQ)):  # a unison of two voices
        voice = Track(name, 0)
        voice.notes.append(Note(0, duration, 64, 80))
        voice.notes.append(Note(TPQ, TPQ, 60 if name == "alto" else 55, 80))
        score.tracks.append(voice)
    merged = prepare_score(score).tracks[0]
    assert [(n.time, n.pitch, n.duration) for n in merged.notes] == [
        (0, 64, 2 * TPQ),
        (TPQ, 55, TPQ),
        (TPQ, 60, TPQ),
    ]


def test_programs_mode_keeps_instruments_and_drums() -> None:
    tokenizer = GenreTokenizer.build(["lofi"], TokenizeConfig(tracks="programs", drums="keep"))
    decoded = tokenizer.decode(tokenizer.encode(band_piece()))
    programs = sorted((t.program, t.is_drum, len(t.notes)) for t in decoded.tracks)
    assert programs == [(0, False, 8), (0, True, 8), (33, False, 4)]


def test_transpositions_keep_notes_in_the_piano_range() -> None:
    assert transpositions((30, 106), 3) == [-3, -2, -1, 1, 2]
    assert transpositions((21, 108), 2) == []
    shifted = augment(lofi_piece(0), semitones=-2, tempo_scale=1.1, velocity_offset=100)
    assert {n.pitch for n in shifted.tracks[0].notes} == {
        n.pitch - 2 for n in lofi_piece(0).tracks[0].notes
    }
    assert {n.velocity for n in shifted.tracks[0].notes} == {127}
    assert shifted.tempos[0].qpm == pytest.approx(88.0, abs=0.01)


# --- splits -------------------------------------------------------------------------------


def test_source_of_clip_ids() -> None:
    assert source_of("rainy-day_0003") == "rainy-day"
    assert source_of("take_2_0012") == "take_2"
    assert source_of("bwv66.6") == "bwv66.6"
    assert source_of("intro_12") == "intro_12"  # not a 4-digit clip index


def test_splits_put_every_source_in_one_split_deterministically() -> None:
    sources = {"lofi": [f"lofi/s{i}" for i in range(20)], "classical": ["classical/a", "c/b"]}
    splits = split_sources(sources, fraction=0.25, seed=7)
    assert split_sources(sources, fraction=0.25, seed=7) == splits
    assert sum(s == "validation" for k, s in splits.items() if k.startswith("lofi")) == 5
    assert sorted(splits.values()).count("validation") == 6  # 5 lo-fi + 1 of 2 classical
    assert split_sources(sources, fraction=0.25, seed=8) != splits


# --- the stage ----------------------------------------------------------------------------


def broken_files(folder: Path) -> dict[str, str]:
    """Real bad inputs, by file name -> the reason the manifest must give."""
    (folder / "corrupt.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\xff")
    (folder / "zero.mid").write_bytes(b"")
    empty = Score(TPQ)
    empty.tracks.append(Track("piano", 0))
    empty.dump_midi(str(folder / "silent.mid"))
    fast = lofi_piece(0)
    fast.tempos[0] = Tempo(0, 4000.0)
    fast.dump_midi(str(folder / "fast.mid"))
    return {"corrupt": "corrupt MIDI", "zero": "empty (0 bytes)", "fast": "absurd tempo"}


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory, bach_path: Path) -> dict:
    root = tmp_path_factory.mktemp("midi")
    (root / "lofi").mkdir()
    (root / "classical" / "chorales").mkdir(parents=True)
    for k in range(6):  # three source recordings of two clips each
        lofi_piece(k).dump_midi(str(root / "lofi" / f"song{k // 2}_{k:04d}.mid"))
    (root / "classical" / "chorales" / "bwv66.6.midi").write_bytes(bach_path.read_bytes())
    lofi_piece(3).dump_midi(str(root / "classical" / "other.mid"))
    reasons = broken_files(root / "classical")
    out = tmp_path_factory.mktemp("tokens")
    config = TokenizeConfig(validation_fraction=0.34, transpose_semitones=1, progress=False)
    first = tokenize(root, out, config)
    second = tokenize(root, out, config)
    return {"root": root, "out": out, "first": first, "second": second, "reasons": reasons}


def test_stage_tokenizes_good_files_and_skips_bad_ones_with_reasons(stage: dict) -> None:
    first = stage["first"]
    assert (first.summary.done, first.summary.failed, first.summary.empty) == (9, 3, 1)
    failures = dict(first.summary.failures)
    for name, reason in stage["reasons"].items():
        assert reason in failures[f"classical/{name}"]
    records = [json.loads(line) for line in (stage["out"] / "manifest.jsonl").open()]
    silent = [r for r in records if r["id"] == "classical/silent"][0]
    assert silent["status"] == "empty" and "no notes" in silent["reason"]


def test_stage_is_resumable(stage: dict) -> None:
    second = stage["second"]
    assert (second.summary.done, second.summary.skipped, second.summary.failed) == (0, 9, 3)
    assert second.num_sequences == stage["first"].num_sequences


def test_stage_outputs_sequences_splits_and_tokenizer(stage: dict) -> None:
    out = stage["out"]
    rows = [json.loads(line) for line in (out / "sequences.jsonl").open()]
    splits = json.loads((out / "splits.json").read_text())
    originals = [r for r in rows if r["augment"] is None]
    assert sorted(r["id"] for r in originals) == sorted(splits["train"] + splits["validation"])
    assert len(originals) == 8  # 6 lo-fi clips, the chorale, other.mid
    # no source recording on both sides, and augmented copies only in train
    train_sources = {r["source"] for r in rows if r["split"] == "train"}
    val_sources = {r["source"] for r in rows if r["split"] == "validation"}
    assert train_sources and val_sources and not train_sources & val_sources
    assert {r["split"] for r in rows if r["augment"]} == {"train"}
    assert {r["augment"]["transpose"] for r in rows if r["augment"]} == {-1, 1}
    tokenizer = GenreTokenizer.load(out)
    assert tokenizer.genres == ["classical", "lofi"]
    bach = [r for r in originals if r["id"] == "classical/chorales/bwv66.6"][0]
    assert bach["source"] == "classical/chorales/bwv66.6"
    assert bach["ids"] == tokenizer.encode(stage["root"] / "classical/chorales/bwv66.6.midi")
    n_train = sum(r["split"] == "train" for r in rows)
    assert len(load_sequences(out, "train")) == n_train
    assert len(load_sequences(out, "validation")) == len(rows) - n_train


def test_stage_fits_the_performance_on_the_training_pieces_only(stage: dict) -> None:
    """The lo-fi clips are on the grid at velocities 56 (chords, bin 63) and 88 (melody,
    bin 95): the performance says so, from the training clips alone."""
    out = stage["out"]
    fitted = performance.from_dict(json.loads((out / performance.FILE_NAME).read_text()))
    splits = json.loads((out / "splits.json").read_text())
    lofi = fitted["lofi"]
    assert lofi.pieces == sum(i.startswith("lofi/") for i in splits["train"]) < 6
    assert lofi.notes == lofi.pieces * 4 * 8  # 4 bars of a 4-note chord and 4 melody notes
    assert lofi.groove == [[0.0] * 21] * 4
    assert lofi.velocities == {"63": [56.0] * 21, "95": [88.0] * 21}
    assert {n for n in lofi.durations} == {"3", "2", "4", "5", "16"}


def test_stage_rejects_an_empty_genre_folder_and_a_bad_genre_name(tmp_path: Path) -> None:
    (tmp_path / "lofi").mkdir()
    with pytest.raises(ConfigError, match="has no .mid/.midi files"):
        tokenize(tmp_path, tmp_path / "out", TokenizeConfig(progress=False))
    with pytest.raises(ConfigError, match="'Lo Fi' is not usable"):
        tokenize({"Lo Fi": tmp_path / "lofi"}, tmp_path / "out", TokenizeConfig())


def test_config_checks_name_field_and_range() -> None:
    with pytest.raises(ConfigError, match=r"positions_per_beat must be in \[1, 32\], got 0"):
        TokenizeConfig(positions_per_beat=0)
    with pytest.raises(ConfigError, match="tracks must be one of merge, programs"):
        TokenizeConfig(tracks="split")


def test_load_score_reasons(tmp_path: Path) -> None:
    broken_files(tmp_path)
    for name, reason in {"corrupt": "corrupt MIDI", "zero": r"empty \(0 bytes\)"}.items():
        with pytest.raises(ItemError, match=reason):
            load_score(tmp_path / f"{name}.mid")


def test_cli_prints_summary_and_fails_clearly(
    stage: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lofi = stage["root"] / "lofi"
    assert main([f"lofi={lofi}", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "tokenize: 6 done, 0 up to date, 0 failed" in out and "tokens/beat: lofi" in out
    assert main(["--positions-per-beat", "0", str(stage["root"])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: positions_per_beat must be in [1, 32], got 0"]


def test_cli_flags_used_in_the_docs_reach_the_config() -> None:
    argv = ["lofi=a", "classical=b", "--out", "x", "--workers", "2", "--no-progress"]
    argv += ["--bpe-vocab-size", "1000", "--shard", "1/2", "--drums", "keep"]
    argv += ["--tempo-jitter", "0.1", "--extra", '{"note": "run 1"}']
    args = build_parser().parse_args(argv)
    config = config_from_args(TokenizeConfig, args)
    assert (args.inputs, args.out) == (["lofi=a", "classical=b"], Path("x"))
    assert config == TokenizeConfig(
        workers=2,
        progress=False,
        bpe_vocab_size=1000,
        shard="1/2",
        drums="keep",
        tempo_jitter=0.1,
        extra={"note": "run 1"},
    )


def test_saved_config_is_given_back_with_config_flag(stage: dict) -> None:
    path = stage["out"] / "tokenize.config.json"
    saved = TokenizeConfig(validation_fraction=0.34, transpose_semitones=1, progress=False)
    assert json.loads(path.read_text()) == config_to_dict(saved)
    args = build_parser().parse_args(["--config", str(path), "--seed", "5"])
    assert config_from_args(TokenizeConfig, args) == dataclasses.replace(saved, seed=5)


def test_names_other_modules_import_from_the_stage_module() -> None:
    import importlib

    import midimix.midifile
    import midimix.scores
    import midimix.tokenizer

    # the module, not `midimix.tokenize`: the package's public API names the stage function so
    stage = importlib.import_module("midimix.tokenize")
    for module in (midimix.tokenizer, midimix.scores, midimix.midifile):
        for name in stage.__all__:
            if hasattr(module, name):
                assert getattr(stage, name) is getattr(module, name), name
    assert stage.TokenizeConfig is TokenizeConfig
