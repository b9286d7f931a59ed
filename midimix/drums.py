"""A laid-back lo-fi drum pattern at a piece's own tempo: kick, snare, swung hats, humanised.

The pattern is written in ticks into the score, so it follows the piece's tempo map and
bars. "Laid back" means the snare lands a little late and the off-beat hats are swung; small
seeded random shifts of timing and velocity keep it from sounding like a machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import symusic

# symusic's type stubs are generic placeholders that know no attributes: plain Any here
Score = Any
Track = Any

KICK, SIDE_STICK, SNARE, CLOSED_HAT, OPEN_HAT = 36, 37, 38, 42, 46  # General MIDI drum keys

# One 4/4 bar in eighth-note steps (0..7): (key, step, velocity). A boom-bap feel: kick on 1
# and the "and" of 2 and 3, snare on 2 and 4, hats on every eighth, accented on the beat.
BAR_PATTERN: tuple[tuple[int, int, int], ...] = (
    (KICK, 0, 92),
    (KICK, 3, 70),
    (KICK, 5, 84),
    (SNARE, 2, 78),
    (SNARE, 6, 82),
    *((CLOSED_HAT, step, 52 if step % 2 == 0 else 38) for step in range(8)),
)


@dataclass
class DrumStyle:
    swing: float = 0.62  # where the off-beat eighth falls inside the beat (0.5 = straight)
    snare_late_ms: float = 18.0  # the snare sits behind the beat
    timing_jitter_ms: float = 6.0  # humanising: standard deviation of the timing
    velocity_jitter: float = 7.0  # humanising: standard deviation of the velocity
    seed: int = 0


def score_tempo_qpm(score: Score) -> float:
    """The tempo in quarter notes per minute at the start (120, MIDI's default, if none)."""
    return float(score.tempos[0].qpm) if len(score.tempos) else 120.0


def drum_track(score: Score, end_tick: int, style: DrumStyle | None = None) -> Track:
    """A drum track (channel 10) for a tick-time `score`, bars from 0 up to `end_tick`."""
    style = style or DrumStyle()
    rng = np.random.default_rng(style.seed)
    tpq = score.ticks_per_quarter
    ticks_per_ms = score_tempo_qpm(score) / 60.0 * tpq / 1000.0
    bar_ticks = 4 * tpq  # 4/4 whatever the score says: the pattern is one 4/4 bar
    track: Track = symusic.Track("laid-back drums", program=0, is_drum=True)
    hit_ticks = max(1, tpq // 8)
    for bar_start in range(0, max(end_tick, 1), bar_ticks):
        for key, step, velocity in BAR_PATTERN:
            beat, half = divmod(step, 2)
            position = (beat + (style.swing if half else 0.0)) * tpq
            late_ms = style.snare_late_ms if key == SNARE else 0.0
            late_ms += rng.normal(0.0, style.timing_jitter_ms)
            tick = int(round(bar_start + position + late_ms * ticks_per_ms))
            if tick < 0 or tick >= end_tick:
                continue
            vel = int(np.clip(round(velocity + rng.normal(0.0, style.velocity_jitter)), 1, 127))
            track.notes.append(symusic.Note(tick, hit_ticks, key, vel))
    track.notes.sort()
    return track


def has_drums(score: Score) -> bool:
    return any(track.is_drum and track.note_num() for track in score.tracks)
