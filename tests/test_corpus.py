"""The offline corpus: lo-fi rules hold on generated pieces, music21 scores export note for
note, bad scores are skipped with a reason, and the command line writes what it says."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import cast

import pretty_midi
import pytest
from symusic.core import ScoreSecond, ScoreTick, TrackTick

from midimix.corpus import CorpusConfig, build_corpus
from midimix.corpus.__main__ import build_parser, main
from midimix.corpus.classical import (
    SegmentSpec,
    composer_of,
    corpus_scores,
    export_score,
    load_scores,
    music21_corpus_dir,
    score_data,
    segment_bars,
)
from midimix.corpus.lofi import (
    CHORDS,
    CLOSED_HAT,
    EP_PROGRAM,
    KICK,
    SNARE,
    TICKS_PER_QUARTER,
    LofiTraits,
    _bar_plan,
    _movement,
    generate_lofi,
    step_tick,
)
from midimix.errors import ConfigError
from midimix.options import config_from_args

SEEDS = range(40)
ONE_SEGMENT = SegmentSpec(target_seconds=600.0, min_bars=1, max_bars=256, humanize_velocity=False)


@pytest.fixture(scope="module")
def pieces() -> list[tuple[ScoreTick, LofiTraits]]:
    return [generate_lofi(seed) for seed in SEEDS]


def _track(score: ScoreTick, name: str) -> TrackTick:
    return next(t for t in score.tracks if t.name == name)


def _chord_hits(score: ScoreTick) -> list[tuple[int, ...]]:
    """Electric-piano notes grouped by onset: one group per chord hit (timing jitter is per hit)."""
    groups: dict[int, list[int]] = defaultdict(list)
    for note in _track(score, "electric piano").notes:
        groups[note.time].append(note.pitch)
    return [tuple(sorted(groups[t])) for t in sorted(groups)]


# --- lo-fi rules -------------------------------------------------------------------------


def test_step_tick_swings_the_second_sixteenth() -> None:
    assert [step_tick(s, 0.5, 480) for s in range(5)] == [0, 120, 240, 360, 480]
    assert [step_tick(s, 0.6, 480) for s in range(4)] == [0, 144, 240, 384]


def test_tempo_length_tracks_and_ranges(pieces) -> None:
    for score, traits in pieces:
        assert len(score.tempos) == 1 and 60.0 <= score.tempos[0].qpm <= 90.0
        seconds = traits.bars * 4 * 60.0 / traits.tempo_qpm
        assert 24.0 <= seconds <= 40.0 and traits.bars in (8, 12, 16)
        names = [t.name for t in score.tracks]
        assert names[:3] == ["electric piano", "bass", "drums"]
        assert _track(score, "electric piano").program == EP_PROGRAM
        assert _track(score, "bass").program == 33
        if traits.melody_program is None:
            assert len(names) == 3
        else:
            assert names[3] == "melody" and _track(score, "melody").program in (4, 11)
        for track in score.tracks:
            if not track.is_drum:
                assert all(21 <= n.pitch <= 108 for n in track.notes)
                assert all(1 <= n.velocity <= 127 and n.duration > 0 for n in track.notes)


def test_every_chord_is_extended(pieces) -> None:
    assert all(len(set(v)) >= 4 for v in CHORDS.values())
    hits = [hit for score, _ in pieces for hit in _chord_hits(score)]
    assert len(hits) > 500
    assert all(len({p % 12 for p in hit}) >= 4 for hit in hits)  # 100% maj7/m7/9ths or richer


def test_voicings_move_less_than_root_position_blocks(pieces) -> None:
    for score, traits in pieces:
        voicings: list[tuple[int, ...]] = []
        for hit in _chord_hits(score):
            if not voicings or voicings[-1] != hit:
                voicings.append(hit)
        plan = _bar_plan(traits)
        roots = [c for bar in plan for _, c in bar.chords]
        blocks = [tuple(48 + c[0] + i for i in c[1:]) for c in roots]
        led = sum(_movement(a, b) for a, b in zip(voicings, voicings[1:], strict=False))
        naive = sum(_movement(a, b) for a, b in zip(blocks, blocks[1:], strict=False))
        assert led < naive, traits


def test_bass_plays_roots_and_fifths(pieces) -> None:
    bar_ticks = 4 * TICKS_PER_QUARTER
    for score, traits in pieces:
        plan = _bar_plan(traits)
        for note in _track(score, "bass").notes:
            bar = (note.time + TICKS_PER_QUARTER // 8) // bar_ticks  # jitter may start it early
            allowed = {(c[0] + i) % 12 for _, c in plan[bar].chords for i in (0, 7)}
            assert note.pitch % 12 in allowed


def test_drums_are_boom_bap_on_channel_10(pieces, tmp_path: Path) -> None:
    for score, _ in pieces:
        drums = _track(score, "drums")
        keys = {n.pitch for n in drums.notes}
        assert drums.is_drum and {KICK, SNARE, CLOSED_HAT} <= keys
        snares = [n.velocity for n in drums.notes if n.pitch == SNARE]
        assert min(snares) < 45 < max(snares)  # ghost notes beside full backbeats
    path = tmp_path / "piece.mid"
    pieces[0][0].dump_midi(path)
    pm = pretty_midi.PrettyMIDI(str(path))  # pretty_midi marks channel 10 (index 9) as drums
    assert [i.is_drum for i in pm.instruments][:3] == [False, False, True]
    assert {n.pitch for n in pm.instruments[2].notes} >= {36, 38}


def test_off_beat_sixteenths_are_delayed(pieces) -> None:
    eighth = TICKS_PER_QUARTER // 2
    checked = 0
    for score, traits in pieces:
        if traits.hats_per_beat != 4:
            continue
        hats = [n.time for n in _track(score, "drums").notes if n.pitch == CLOSED_HAT]
        offsets = [(t + eighth // 4) % eighth - eighth // 4 for t in hats]  # in the eighth
        second = [o for o in offsets if o > eighth // 4]
        first = [o for o in offsets if o <= eighth // 4]
        mean_second = sum(second) / len(second)
        assert len(second) > 10 and abs(sum(first) / len(first)) < 6
        assert mean_second > 0.5 * eighth + 0.04 * eighth  # later than straight sixteenths
        assert abs(mean_second - traits.swing * eighth) < 6
        checked += 1
    assert checked >= 5


def test_same_seed_same_bytes_and_variety() -> None:
    assert generate_lofi(7)[0].dumps_midi() == generate_lofi(7)[0].dumps_midi()
    assert generate_lofi(7)[0].dumps_midi() != generate_lofi(8)[0].dumps_midi()
    drawn = [generate_lofi(seed) for seed in range(100, 200)]
    digests = {hashlib.sha256(s.dumps_midi()).hexdigest() for s, _ in drawn}
    assert len(digests) == 100
    assert len({t.key_root for _, t in drawn}) == 12
    assert len({t.progression for _, t in drawn}) >= 12
    assert len({t.form for _, t in drawn}) == 4


# --- classical ---------------------------------------------------------------------------


def _music21_midi_notes(path: Path) -> list[tuple[int, int, int]]:
    """Notes of music21's own MIDI export: the reference for the direct export."""
    from music21.midi import translate

    midi = translate.streamToMidiFile(load_scores(path)[0]).writestr()
    score = ScoreTick.from_midi(midi)
    scale = TICKS_PER_QUARTER / score.ticks_per_quarter
    return sorted(
        (round(n.time * scale), n.pitch, round(n.duration * scale))
        for t in score.tracks
        for n in t.notes
    )


def _corpus_file(relative: str) -> Path:
    return music21_corpus_dir() / relative


@pytest.mark.parametrize(
    ("relative", "notes"), [("bach/bwv66.6.mxl", 163), ("bach/bwv1.6.mxl", None)]
)
def test_bach_chorales_export_note_for_note(relative: str, notes: int | None) -> None:
    path = _corpus_file(relative)
    segments, facts = export_score(path, ONE_SEGMENT)
    mine = sorted(
        (n.time, n.pitch, n.duration) for s in segments for t in s.tracks for n in t.notes
    )
    reference = _music21_midi_notes(path)
    assert mine == reference
    if notes is not None:
        assert len(mine) == notes == facts["notes"]
    assert segments[0].tempos[0].qpm == pytest.approx(90.0)  # no mark: the baroque default
    assert all(t.program == 0 for t in segments[0].tracks)


def test_long_score_is_cut_into_bar_aligned_segments() -> None:
    path = _corpus_file("palestrina/Agnus_01.krn")
    segments, facts = export_score(path, SegmentSpec())
    assert facts["bars"] == 36 and facts["notes"] == 429
    # 36 bars of 4/2 at 120 quarters a minute = 144 s -> 4 segments of 9 bars (36 s)
    assert len(segments) == 4
    assert sum(s.note_num() for s in segments) == 429
    seconds = [cast(ScoreSecond, s.to("second")).end() for s in segments]
    assert all(s == pytest.approx(36.0, abs=0.01) for s in seconds)
    assert all(s.time_signatures[0].numerator == 4 for s in segments)


def test_segment_bars_respects_bar_limits() -> None:
    bars = [4.0 * i for i in range(41)]  # 40 bars of 4/4
    tempo = [(0.0, 120.0)]  # 2 s a bar: 80 s in all
    spec = SegmentSpec(target_seconds=30.0, min_bars=8, max_bars=16)
    assert segment_bars(bars, tempo, spec) == [(0.0, 52.0), (52.0, 108.0), (108.0, 160.0)]
    short = [4.0 * i for i in range(6)]  # 5 bars: kept whole
    assert segment_bars(short, tempo, spec) == [(0.0, 20.0)]


def _tiny_score_file(folder: Path, name: str, notes: bool, qpm: float | None) -> Path:
    from music21 import converter, tempo

    text = "tinyNotation: 4/4 " + ("c4 d e f g a b c' " * 2 if notes else "r1 r1")
    part = converter.parse(text)
    if qpm is not None:
        first_bar = part.measure(1)
        assert first_bar is not None  # tinyNotation with a time signature makes bars
        first_bar.insert(0, tempo.MetronomeMark(number=qpm))
    return Path(part.write("musicxml", fp=folder / f"{name}.musicxml"))


def test_score_tempo_mark_is_kept(tmp_path: Path) -> None:
    path = _tiny_score_file(tmp_path, "marked", notes=True, qpm=72)
    data = score_data(load_scores(path)[0], path)
    assert data.tempo_from_score and data.tempos[0] == (0.0, 72.0)
    assert [n[2] for n in data.parts[0].notes] == [60, 62, 64, 65, 67, 69, 71, 72] * 2


def test_corpus_listing_is_deduplicated_and_interleaved() -> None:
    scores = corpus_scores()
    assert 600 < len(scores) < 700
    assert "palestrina" not in {composer_of(p) for p in scores}  # restricted: only by name
    assert len(corpus_scores(["palestrina"])) == 1318
    stems = [(p.parent, p.stem) for p in scores]
    assert len(set(stems)) == len(stems)  # bwv277.krn / .mxl: one of them
    assert not any(p.suffix == ".rntxt" for p in scores)
    first = [composer_of(p) for p in scores[:20]]
    assert len(set(first)) == 20  # one of each composer before any second score
    assert "ryansMammoth" not in {composer_of(p) for p in scores}


def test_bad_scores_are_skipped_with_reason(tmp_path: Path) -> None:
    good = _corpus_file("bach/bwv66.6.mxl")
    corrupt = tmp_path / "scores" / "truncated.mxl"
    corrupt.parent.mkdir()
    corrupt.write_bytes(good.read_bytes()[:2000])  # a real .mxl cut short
    empty = _tiny_score_file(corrupt.parent, "rests", notes=False, qpm=None)
    config = CorpusConfig(
        lofi=0, classical_sources=(good, corrupt, empty), workers=1, progress=False
    )
    summary = build_corpus(tmp_path / "out", config)
    assert (summary.done, summary.failed) == (1, 2)
    reasons = dict(summary.failures)
    assert reasons["scores-rests"].startswith("no segment with notes: the score holds 0 notes")
    assert reasons["scores-truncated"].startswith(
        "music21 cannot read this score (ParseError: not well-formed"
    )
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(corrupt).testzip()
    assert sorted(p.name for p in (tmp_path / "out" / "classical").iterdir()) == [
        "bach-bwv66_6-00.mid"
    ]


# --- the command line --------------------------------------------------------------------


def test_cli_writes_counts_and_resumes(tmp_path: Path, capsys) -> None:
    out = tmp_path / "corpus"
    chorale = _corpus_file("bach/bwv66.6.mxl")
    argv = ["--out-dir", str(out), "--lofi", "3", "--scores", str(chorale), "--quiet"]
    assert main(argv) == 0
    assert sorted(p.name for p in (out / "lofi").iterdir()) == [
        "lofi-00000.mid",
        "lofi-00001.mid",
        "lofi-00002.mid",
    ]
    assert [p.name for p in (out / "classical").iterdir()] == ["bach-bwv66_6-00.mid"]
    assert "1 classical segments and 3 lo-fi pieces" in capsys.readouterr().out
    first = (out / "lofi" / "lofi-00001.mid").read_bytes()
    assert main(argv) == 0
    assert "0 done, 4 up to date" in capsys.readouterr().out
    assert (out / "lofi" / "lofi-00001.mid").read_bytes() == first
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 4
    saved = json.loads((out / "corpus.config.json").read_text())
    assert (saved["lofi"], saved["classical_sources"], saved["progress"]) == (
        3,
        [str(chorale)],
        False,
    )
    assert not (out / "corpus_config.json").exists()  # one name: <stage>.config.json


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["--classical", "-1"], {"classical": None}, id="classical -1 is all"),
        pytest.param(["--classical", "3"], {"classical": 3}, id="classical count"),
        pytest.param(
            ["--classical-program", "-1"], {"classical_program": None}, id="score's programs"
        ),
        pytest.param(
            ["--composers", "bach, mozart"], {"composers": ("bach", "mozart")}, id="composers"
        ),
        pytest.param(
            ["--scores", "a.mxl", "b.krn"],
            {"classical_sources": (Path("a.mxl"), Path("b.krn"))},
            id="scores is --classical-sources",
        ),
        pytest.param(["--quiet"], {"progress": False}, id="quiet"),
        pytest.param(["--no-humanize"], {"humanize": False}, id="no humanize"),
        pytest.param([], {"classical": None, "classical_program": 0, "progress": True}, id="none"),
    ],
)
def test_cli_options_set_the_config(argv: list[str], expected: dict[str, object]) -> None:
    config = config_from_args(CorpusConfig, build_parser().parse_args(argv))
    assert {name: getattr(config, name) for name in expected} == expected


def test_cli_rejects_bad_options(capsys) -> None:
    assert main(["--lofi", "-2"]) == 2
    assert "lofi must be in [0, 1e+06], got -2" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="composers"):
        CorpusConfig(composers=("ryansMammoth",))
