"""Laid-back drum patterns: the one place that turns drum hits on a grid into humanised notes.

Two patterns use it: render's added drums (`drum_track`: kick, late snare, eighth hats in the
keys' own time (`style_of_keys`; swung when nothing says otherwise), at a piece's own tempo,
for a drumless piece mixed towards lo-fi) and the corpus's rule-made
lo-fi pieces (their boom-bap bars). "Laid back" means the snare lands a little late and the
off-beat hats are swung; small seeded random shifts of timing and velocity keep it from
sounding like a machine.

The pattern is written in ticks into the score, so it follows the piece's tempo map and bars.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import symusic

# symusic's type stubs are generic placeholders that know no attributes: plain Any here
Score = Any
Track = Any

KICK, SIDE_STICK, SNARE, CLOSED_HAT, OPEN_HAT = 36, 37, 38, 42, 46  # General MIDI drum keys
MIN_KEY_ONSETS = 4  # onsets at a place in the beat before the drums follow the keys there

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


@dataclass(frozen=True)
class Hit:
    """One drum hit before humanising."""

    key: int  # General MIDI drum key
    tick: float  # where it sits on the (swung) grid, from the piece's start
    velocity: float
    late_ms: float = 0.0  # laid back behind the grid
    velocity_jitter: float = 7.0  # humanising: standard deviation of the velocity


def humanise(
    track: Track,
    hits: Iterable[Hit],
    rng: np.random.Generator,
    *,
    ticks_per_ms: float,
    end_tick: int,
    length_ticks: int,
    timing_jitter_ms: float,
    jitter_limit_ms: float = math.inf,
) -> Track:
    """Append `hits` to `track` as notes, each moved by a random timing jitter (clipped to
    +-`jitter_limit_ms`) and given a random velocity spread; hits pushed before the start land
    on tick 0, hits at or after `end_tick` are left out (and draw no velocity). The random draws
    go hit by hit, timing then velocity, so a seed gives the same notes every time."""
    for hit in hits:
        jitter_ms = float(
            np.clip(rng.normal(0.0, timing_jitter_ms), -jitter_limit_ms, jitter_limit_ms)
        )
        tick = max(0, int(round(hit.tick + (hit.late_ms + jitter_ms) * ticks_per_ms)))
        if tick >= end_tick:
            continue
        vel = int(np.clip(round(hit.velocity + rng.normal(0.0, hit.velocity_jitter)), 1, 127))
        track.notes.append(symusic.Note(tick, length_ticks, hit.key, vel))
    return track


@dataclass
class DrumStyle:
    swing: float = 0.62  # where the off-beat eighth falls inside the beat (0.5 = straight)
    on_beat: float = 0.0  # where the beat's own hits fall, in beats after it (a lay-back)
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
    tpq = score.ticks_per_quarter
    bar_ticks = 4 * tpq  # 4/4 whatever the score says: the pattern is one 4/4 bar
    hits = [
        Hit(
            key,
            bar_start + (step // 2 + (style.swing if step % 2 else style.on_beat)) * tpq,
            velocity,
            style.snare_late_ms if key == SNARE else 0.0,
            style.velocity_jitter,
        )
        for bar_start in range(0, max(end_tick, 1), bar_ticks)
        for key, step, velocity in BAR_PATTERN
    ]
    track: Track = symusic.Track("laid-back drums", program=0, is_drum=True)
    humanise(
        track,
        hits,
        np.random.default_rng(style.seed),
        ticks_per_ms=score_tempo_qpm(score) / 60.0 * tpq / 1000.0,
        end_tick=end_tick,
        length_ticks=max(1, tpq // 8),
        timing_jitter_ms=style.timing_jitter_ms,
    )
    track.notes.sort()
    return track


def style_of_keys(score: Score, seed: int = 0) -> DrumStyle:
    """A drum style in the keys' own time: the hats on the beat and off it where the piece's
    pitched notes fall there (their median offset from the beat and from its half), so added
    drums never flam against keys played with a groove (`midimix.performance`: lo-fi swings its
    sixteenths and plays its eighths straight). Under MIN_KEY_ONSETS onsets at a place, that
    place keeps the default (hats swung to 0.62 of the beat, the beat on time)."""
    tpq = int(score.ticks_per_quarter)
    ticks = [int(n.time) for t in score.tracks if not t.is_drum for n in t.notes]
    beats = np.unique(np.asarray(ticks, dtype=np.int64)) / tpq if ticks else np.zeros(0)
    half = np.round(beats * 2)  # the nearest eighth
    offset = beats - half / 2
    near = np.abs(offset) < 0.125  # sixteenths between the eighths say nothing about them
    style = DrumStyle(seed=seed)
    on, off = offset[near & (half % 2 == 0)], offset[near & (half % 2 == 1)]
    return DrumStyle(
        swing=0.5 + float(np.median(off)) if len(off) >= MIN_KEY_ONSETS else style.swing,
        on_beat=float(np.median(on)) if len(on) >= MIN_KEY_ONSETS else style.on_beat,
        seed=seed,
    )


def has_drums(score: Score) -> bool:
    return any(track.is_drum and track.note_num() for track in score.tracks)
