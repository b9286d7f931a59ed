"""The one MIDI loader: a file as a symusic tick-time score, or an `ItemError` saying why not.

Every stage that reads MIDI (tokenize, render, evaluate, a generation prompt) comes through
here, so a corrupt or absurd file is refused the same way everywhere, with a reason a batch
records before it goes on to the next file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from midimix.config import MIDI_SUFFIXES
from midimix.errors import ItemError

Score = Any  # symusic.ScoreTick; its stubs know no attributes
SANE_TEMPO_BPM = (10.0, 400.0)  # outside: a broken tempo map, not music
MAX_MIDI_BYTES = 64 * 1024 * 1024  # a real piece is a few hundred kB


def is_midi_name(path: Path) -> bool:
    return Path(path).suffix.lower() in MIDI_SUFFIXES


def load_score(path: Path, *, require_notes: bool = False) -> Score:
    """Read `path` with symusic and check what later stages divide by or index with."""
    from symusic.core import ScoreTick

    path = Path(path)
    if not path.is_file():
        raise ItemError(f"{path} does not exist or is not a file; expected a MIDI file (.mid)")
    size = path.stat().st_size
    if size == 0:
        raise ItemError(f"{path} is empty (0 bytes): not a MIDI file")
    if size > MAX_MIDI_BYTES:
        raise ItemError(f"{path} is {size / 2**20:.0f} MiB; a MIDI piece is far smaller")
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head != b"MThd":
        raise ItemError(f"{path} is not a MIDI file: it starts with {head!r}, not b'MThd'")
    try:
        score = ScoreTick(path)
    except (RuntimeError, ValueError, OSError) as error:  # symusic reports malformed files so
        reason = " ".join(str(error).split())[:120]
        raise ItemError(f"{path} is a corrupt MIDI file ({reason}); re-export it") from None
    check_score(score, path)
    if require_notes and score.note_num() == 0:
        raise ItemError(f"{path} has no notes; expected at least one note")
    return score


def check_score(score: Score, path: Path | str = "score") -> None:
    """Refuse what no stage can make sense of: no ticks per beat, a broken tempo map, a time
    signature with a zero, notes that all sit at tick 0."""
    if int(score.ticks_per_quarter) <= 0:
        raise ItemError(f"{path}: ticks per quarter note is {score.ticks_per_quarter}; must be > 0")
    for tempo in score.tempos:
        if not SANE_TEMPO_BPM[0] <= tempo.qpm <= SANE_TEMPO_BPM[1]:
            raise ItemError(
                f"{path}: absurd tempo {tempo.qpm:.1f} BPM at tick {tempo.time} (expected "
                f"{SANE_TEMPO_BPM[0]:g}-{SANE_TEMPO_BPM[1]:g} BPM): the tempo map is broken"
            )
    for sig in score.time_signatures:
        if sig.numerator <= 0 or sig.denominator <= 0:
            raise ItemError(
                f"{path}: time signature {sig.numerator}/{sig.denominator} at tick {sig.time}; "
                f"both numbers must be above 0"
            )
    if score.note_num() > 0 and score.end() <= 0:
        raise ItemError(f"{path}: zero length: every note starts and ends at tick 0")


def bar_start_ticks(score: Score, bars: int) -> list[int]:
    """The tick each of the first `bars` bars starts at, from the time signatures (4/4 before
    the first)."""
    tpq = int(score.ticks_per_quarter)
    sigs = sorted(
        (int(t.time), int(t.numerator), int(t.denominator)) for t in score.time_signatures
    )
    ticks, tick, sig = [], 0, (0, 4, 4)
    for _ in range(bars):
        while sigs and sigs[0][0] <= tick:
            sig = sigs.pop(0)
        ticks.append(tick)
        tick += sig[1] * tpq * 4 // sig[2]
    return ticks
