"""Classical scores from the music21 package's own corpus, exported as ~30 s MIDI segments.

music21 ships a corpus of encoded public-domain scores (Bach chorales, Palestrina masses,
Monteverdi madrigals, Beethoven/Haydn/Mozart string quartets, trecento songs, ...). Each
score is parsed once with music21 and converted here straight into a symusic score (notes with
ties merged, tempo marks, time signatures, bar lines), which is much faster than music21's own
MIDI writer on long scores. The score is then cut at bar lines into segments of 8-16 bars
lasting about 30 s each, so classical and lo-fi pieces have comparable lengths.

Tempo: the score's metronome mark (a number, or a tempo word music21 knows such as
"Allegro") where it has one; otherwise a default for the composer's period (`PERIOD_QPM`).
Velocities: scores carry few dynamics, so each note's velocity is the dynamic mark in force
(mf where none) plus a metric accent, a phrase arch and a little seeded noise
(`humanize_velocity=False` keeps the plain dynamic level).
"""

from __future__ import annotations

import hashlib
import math
import warnings
import xml.etree.ElementTree
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from symusic.core import NoteTick, ScoreTick, TempoTick, TimeSignatureTick, TrackTick

TICKS_PER_QUARTER = 480

# Composer folders of music21's corpus that hold art music, with their period. Folk-song
# collections (ryansMammoth, oneills1850, essenFolksong, ...) and analyses (.rntxt) are left out.
COMPOSER_PERIODS: dict[str, str] = {
    "trecento": "medieval",
    "ciconia": "medieval",
    "luca": "medieval",
    "josquin": "renaissance",
    "palestrina": "renaissance",
    "lusitano": "renaissance",
    "monteverdi": "renaissance",
    "bach": "baroque",
    "cpebach": "baroque",
    "handel": "baroque",
    "corelli": "baroque",
    "haydn": "classical",
    "mozart": "classical",
    "beethoven": "classical",
    "schubert": "romantic",
    "weber": "romantic",
    "schumann_robert": "romantic",
    "schumann_clara": "romantic",
    "chopin": "romantic",
    "verdi": "romantic",
    "beach": "romantic",
    "schoenberg": "modern",
    "webern": "modern",
}
# Encodings whose own licence restricts derived files: left out unless asked for by name.
RESTRICTED_COMPOSERS: dict[str, str] = {
    "palestrina": "Humdrum encodings (c) 2000 John Miller, whose licence reserves the rights to "
    "all derivative electronic formats",
}
DEFAULT_COMPOSERS = tuple(c for c in COMPOSER_PERIODS if c not in RESTRICTED_COMPOSERS)
# Default tempo (quarter notes per minute) where a score has no metronome mark. Renaissance
# and medieval scores are notated in long values (half-note beat), hence the faster quarter.
PERIOD_QPM: dict[str, float] = {
    "medieval": 120.0,
    "renaissance": 120.0,
    "baroque": 90.0,
    "classical": 108.0,
    "romantic": 92.0,
    "modern": 80.0,
}
DEFAULT_PERIOD = "classical"
# Formats in order of preference when the same work is stored twice (bwv277.krn / .mxl).
SCORE_SUFFIXES = (".mxl", ".musicxml", ".xml", ".krn", ".abc")
MIN_SEGMENT_NOTES = 8  # a segment with fewer notes (rests, a final chord) is dropped
DYNAMIC_VELOCITY_RANGE = (36.0, 112.0)  # velocity of pp..ff (music21 volume scalar 0..1)


def loading_errors() -> tuple[type[BaseException], ...]:
    """What music21 raises on a badly formed or unsupported score.

    Besides music21's own exceptions, its parsers let plain Python errors through on malformed
    data (an IndexError on an empty MuseData directory, a KeyError on an unknown Humdrum
    spine, ...): those are loading errors too, so a bad score is skipped, not fatal."""
    from music21.exceptions21 import Music21Exception

    return (
        Music21Exception,
        xml.etree.ElementTree.ParseError,
        zipfile.BadZipFile,
        UnicodeDecodeError,
        ValueError,
        IndexError,
        KeyError,
        AttributeError,
        TypeError,
        ZeroDivisionError,
    )


@dataclass(frozen=True)
class SegmentSpec:
    """How scores are cut into segments."""

    target_seconds: float = 30.0  # a segment lasts about this long
    min_bars: int = 8
    max_bars: int = 16
    humanize_velocity: bool = True
    program: int | None = 0  # GM program of every part (0 = piano); None keeps the score's


def music21_corpus_dir() -> Path:
    import music21

    return Path(music21.__file__).parent / "corpus"


def composer_of(path: Path) -> str:
    """The composer folder of a score inside music21's corpus (else its parent folder)."""
    parts = path.parts
    if "corpus" in parts:
        i = len(parts) - 1 - parts[::-1].index("corpus")
        if i + 1 < len(parts) - 1:
            return parts[i + 1]
    return path.parent.name


def corpus_scores(composers: Sequence[str] | None = None) -> list[Path]:
    """The art-music scores of music21's corpus, one file per work, interleaved by composer.

    `composers` None means DEFAULT_COMPOSERS: all art music except RESTRICTED_COMPOSERS.

    Interleaving (one score of each composer in turn) means a cap on the number of scores
    keeps the mix of composers instead of filling up with Palestrina's 1,300 mass movements."""
    root = music21_corpus_dir()
    wanted = list(composers) if composers else list(DEFAULT_COMPOSERS)
    by_work: dict[tuple[Path, str], Path] = {}
    for name in wanted:
        folder = root / name
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.suffix not in SCORE_SUFFIXES or not path.is_file():
                continue
            key = (path.parent, path.stem)
            old = by_work.get(key)
            if old is None or SCORE_SUFFIXES.index(path.suffix) < SCORE_SUFFIXES.index(old.suffix):
                by_work[key] = path
    per_composer: dict[str, list[Path]] = {name: [] for name in wanted}
    for path in sorted(by_work.values()):
        per_composer[composer_of(path)].append(path)
    queues = [paths for paths in per_composer.values() if paths]
    out: list[Path] = []
    for i in range(max((len(q) for q in queues), default=0)):
        out += [q[i] for q in queues if i < len(q)]
    return out


def score_id(path: Path) -> str:
    """A file-name-safe id: composer plus the path inside the composer folder."""
    composer = composer_of(path)
    parts = path.with_suffix("").parts
    tail = parts[parts.index(composer) + 1 :] if composer in parts else parts[-1:]
    text = "-".join([composer, *tail])
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text).replace(".", "_")


def _period_qpm(path: Path) -> float:
    return PERIOD_QPM[COMPOSER_PERIODS.get(composer_of(path), DEFAULT_PERIOD)]


@dataclass
class _Part:
    name: str
    program: int
    notes: list[tuple[float, float, int, float]]  # (start, end) in quarters, pitch, volume 0..1


@dataclass
class ScoreData:
    """What the export needs from a music21 score, in quarter notes from the start."""

    parts: list[_Part]
    bar_starts: list[float]  # quarter offsets of the bar lines, then the end
    tempos: list[tuple[float, float]]  # (offset, quarter notes per minute)
    time_signatures: list[tuple[float, int, int]]
    tempo_from_score: bool


def load_scores(path: Path) -> list[Any]:
    """Parse a score file with music21 (using music21's own parse cache); an Opus gives all."""
    from music21 import converter, stream

    with warnings.catch_warnings():
        # music21 warns about every overfull measure it repairs; the repaired score is used
        warnings.simplefilter("ignore")
        parsed = converter.parse(path)
    if isinstance(parsed, stream.Opus):
        return list(parsed.scores)
    return [parsed]


def _merge_ties(elements: Sequence[Any], volume_at: Any) -> list[tuple[float, float, int, float]]:
    """Notes of one part with tied notes merged (far faster than music21's stripTies)."""
    notes: list[list[float]] = []
    open_ties: dict[int, int] = {}  # midi pitch -> index in notes of the note a tie continues
    for element in elements:
        if element.duration.isGrace or element.quarterLength <= 0:
            continue  # grace notes take no time in the score: left out
        start = float(element.offset)
        end = start + float(element.quarterLength)
        members = element.notes if element.isChord else [element]
        for member in members:
            if getattr(member, "isUnpitched", False) or not hasattr(member, "pitch"):
                continue
            pitch = int(round(member.pitch.ps))
            tie = member.tie if member.tie is not None else element.tie
            kind = tie.type if tie is not None else None
            if kind in ("stop", "continue") and pitch in open_ties:
                notes[open_ties[pitch]][1] = end
                if kind == "stop":
                    del open_ties[pitch]
                continue
            notes.append([start, end, float(pitch), volume_at(start)])
            if kind == "start":
                open_ties[pitch] = len(notes) - 1
    return [(s, e, int(p), v) for s, e, p, v in notes]


def _dynamics_lookup(flat: Any) -> Any:
    """A function offset -> volume scalar (0..1) of the dynamic mark in force (mf = 0.55)."""
    from music21 import dynamics

    marks = sorted(
        (float(d.offset), float(d.volumeScalar))
        for d in flat.getElementsByClass(dynamics.Dynamic)
        if d.volumeScalar is not None
    )

    def volume_at(offset: float) -> float:
        level = 0.55
        for mark_offset, scalar in marks:
            if mark_offset > offset:
                break
            level = scalar
        return level

    return volume_at


def score_data(score: Any, path: Path) -> ScoreData:
    """Notes, bars, tempos and time signatures of a parsed music21 score."""
    from music21 import meter, stream, tempo

    parts = list(score.parts) or [score]
    out_parts: list[_Part] = []
    for part in parts:
        flat = part.flatten()
        notes = _merge_ties(list(flat.notes), _dynamics_lookup(flat))
        instrument = part.getInstrument(returnDefault=True)
        program = instrument.midiProgram if instrument.midiProgram is not None else 0
        out_parts.append(
            _Part(str(part.partName or instrument.instrumentName or ""), program, notes)
        )
    end = max((n[1] for p in out_parts for n in p.notes), default=0.0)

    first = parts[0]
    measures = list(first.getElementsByClass(stream.Measure))
    bar_starts = sorted({float(m.offset) for m in measures if float(m.offset) < end})
    if not bar_starts:  # no bar lines in the file: 4-quarter bars
        bar_starts = [4.0 * i for i in range(math.ceil(end / 4.0))]
    bar_starts.append(end)

    flat_first = first.flatten()
    tempos: list[tuple[float, float]] = []
    marks = list(score.getElementsByClass(tempo.MetronomeMark))  # score-level, then part 1
    for mark in sorted(marks, key=lambda m: float(m.offset)) or flat_first.getElementsByClass(
        tempo.MetronomeMark
    ):
        # a number, or a tempo word (text) music21 maps to one; never music21's bare default
        if mark.number is None and not mark.text:
            continue
        qpm = mark.getQuarterBPM()
        if qpm and 10.0 <= float(qpm) <= 400.0:
            tempos.append((float(mark.offset), float(qpm)))
    from_score = bool(tempos)
    if not tempos or tempos[0][0] > 0.0:
        tempos.insert(0, (0.0, _period_qpm(path)))
    signatures = [
        (float(ts.offset), int(ts.numerator), int(ts.denominator))
        for ts in flat_first.getElementsByClass(meter.TimeSignature)
    ] or [(0.0, 4, 4)]
    return ScoreData(out_parts, bar_starts, tempos, signatures, from_score)


def _seconds_between(start: float, end: float, tempos: list[tuple[float, float]]) -> float:
    """Seconds from quarter offset `start` to `end` under the tempo map."""
    total = 0.0
    for i, (offset, qpm) in enumerate(tempos):
        nxt = tempos[i + 1][0] if i + 1 < len(tempos) else math.inf
        lo, hi = max(start, offset), min(end, nxt)
        if hi > lo:
            total += (hi - lo) * 60.0 / qpm
    return total


def segment_bars(
    bar_starts: list[float], tempos: list[tuple[float, float]], spec: SegmentSpec
) -> list[tuple[float, float]]:
    """Cut the bars into near-equal runs of min_bars..max_bars bars, about target_seconds long.

    The number of segments is the one nearest total / target_seconds that keeps each run
    within the bar limits (a piece shorter than min_bars bars stays whole)."""
    n_bars = len(bar_starts) - 1
    if n_bars <= 0:
        return []
    total = _seconds_between(bar_starts[0], bar_starts[-1], tempos)
    fewest = max(1, math.ceil(n_bars / spec.max_bars))
    most = max(fewest, n_bars // spec.min_bars)
    count = min(max(round(total / spec.target_seconds), fewest), most)
    edges = [round(i * n_bars / count) for i in range(count + 1)]
    return [(bar_starts[a], bar_starts[b]) for a, b in zip(edges, edges[1:], strict=False)]


def _velocity(
    volume: float, start: float, seg: tuple[float, float], beat_q: float, rng: Any, humanize: bool
) -> int:
    lo, hi = DYNAMIC_VELOCITY_RANGE
    velocity = lo + (hi - lo) * volume
    if humanize:
        position = (start - seg[0]) % (beat_q * 4) if beat_q else 0.0
        on_beat = abs(position / beat_q - round(position / beat_q)) < 1e-6 if beat_q else False
        accent = 8.0 if position < 1e-6 else (3.0 if on_beat else -3.0)
        arch = 6.0 * math.sin(math.pi * (start - seg[0]) / max(seg[1] - seg[0], 1e-6))
        velocity += accent + arch + float(rng.normal(0.0, 3.0))
    return min(127, max(1, round(velocity)))


def build_segment(
    data: ScoreData, seg: tuple[float, float], spec: SegmentSpec, seed: int
) -> ScoreTick:
    """One segment as a symusic score starting at tick 0 (notes cut at the segment's end)."""
    rng = np.random.default_rng(seed)
    tpq = TICKS_PER_QUARTER
    start_q, end_q = seg

    def tick(offset: float) -> int:
        return int(round((offset - start_q) * tpq))

    score = ScoreTick(tpq)
    in_force = [t for t in data.tempos if t[0] <= start_q][-1:]
    for offset, qpm in in_force + [t for t in data.tempos if start_q < t[0] < end_q]:
        score.tempos.append(TempoTick(max(0, tick(offset)), qpm))
    signatures = [s for s in data.time_signatures if s[0] <= start_q][-1:] or [(0.0, 4, 4)]
    signatures += [s for s in data.time_signatures if start_q < s[0] < end_q]
    for offset, num, den in signatures:
        score.time_signatures.append(TimeSignatureTick(max(0, tick(offset)), num, den))
    beat_q = 4.0 / signatures[0][2]
    for part in data.parts:
        program = spec.program if spec.program is not None else part.program
        track = TrackTick(part.name, program, False)
        for start, end, pitch, volume in part.notes:
            if not (start_q <= start < end_q) or not 0 <= pitch <= 127:
                continue
            t0, t1 = tick(start), tick(min(end, end_q))
            velocity = _velocity(volume, start, seg, beat_q, rng, spec.humanize_velocity)
            track.notes.append(NoteTick(t0, max(1, t1 - t0), pitch, velocity))
        if len(track.notes):
            score.tracks.append(track)
    return score


def export_score(path: Path, spec: SegmentSpec) -> tuple[list[ScoreTick], dict[str, Any]]:
    """Parse one score file and cut it into segments; also return facts for the manifest."""
    segments: list[ScoreTick] = []
    facts: dict[str, Any] = {"composer": composer_of(path), "scores": 0, "notes": 0, "bars": 0}
    seed_base = int(hashlib.sha256(score_id(path).encode()).hexdigest()[:8], 16)
    for score in load_scores(path):
        data = score_data(score, path)
        facts["scores"] += 1
        facts["notes"] += sum(len(p.notes) for p in data.parts)
        facts["bars"] += len(data.bar_starts) - 1
        facts["qpm"] = data.tempos[0][1]
        facts["tempo_from_score"] = data.tempo_from_score
        for seg in segment_bars(data.bar_starts, data.tempos, spec):
            segment = build_segment(data, seg, spec, seed_base + len(segments))
            if segment.note_num() >= MIN_SEGMENT_NOTES:
                segments.append(segment)
    return segments, facts
