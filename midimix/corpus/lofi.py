"""A rule-based generator of lo-fi hip-hop MIDI: the lo-fi half of the offline corpus.

Nothing here is learned or recorded: every piece is made by the rules below from a seed, so
the same seed always gives the same file. The rules follow the traits commonly described for
lo-fi hip-hop:

- tempo 60-90 BPM in 4/4, swung sixteenths (the second sixteenth of each eighth is late);
- extended chords only (maj7, maj9, 6/9, m7, m9, m11, m7b5, dominant 9, 13 and 7b9): every
  chord has at least four distinct pitch classes, and the electric piano plays all of them;
- common loop progressions (ii-V-I, Imaj7-vi7-ii7-V7, ii9-V13-Imaj9, IV-V-iii-vi, minor
  i-iv loops, borrowed iv-minor, ...), one or two chords per bar;
- voice-led electric-piano voicings: each voicing is the one, among all inversions and
  spreads in range, that moves least from the previous one;
- a short melodic motif (1-2 bars) repeated with variation and fitted to each chord;
- a bass line on chord roots and fifths (octaves allowed), nothing else;
- boom-bap drums on channel 10: kick (36) and snare (38) with soft ghost snares, hats in
  eighths or sixteenths, an occasional open hat;
- humanised timing (a few ms, per chord hit) and velocity (per note).

Tracks: electric piano (GM program 4), finger bass (33), drums (is_drum) and, in most
pieces, a melody on electric piano (4) or vibraphone (11). Programs are 0-based MIDI numbers.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from itertools import permutations

import numpy as np
from symusic.core import NoteTick, ScoreTick, TempoTick, TimeSignatureTick, TrackTick

from midimix.drums import CLOSED_HAT, KICK, OPEN_HAT, SNARE, Hit, humanise

GENERATOR_VERSION = "lofi-rules-1"  # change when the rules change: resumed builds then redo
TICKS_PER_QUARTER = 480
STEPS_PER_BAR = 16  # sixteenth-note grid of a 4/4 bar
TEMPO_RANGE_QPM = (60.0, 90.0)
SWING_RANGE = (0.56, 0.66)  # where the 2nd sixteenth falls inside its eighth (0.5 = straight)
PIECE_SECONDS_RANGE = (24.0, 40.0)  # bars are 8, 12 or 16, chosen to land in this range

EP_PROGRAM, BASS_PROGRAM, VIBES_PROGRAM = 4, 33, 11  # GM: E. Piano 1, Finger Bass, Vibraphone
JITTER_LIMIT_MS = 12.0  # humanising never moves a hit further than this
EP_RANGE = (50, 79)  # D3-G5: where the voicings live
BASS_RANGE = (33, 52)  # A1-E3
MELODY_RANGE = (67, 88)  # G4-E6

# Chord qualities as semitones above the root (all with >= 4 distinct pitch classes).
CHORDS: dict[str, tuple[int, ...]] = {
    "maj7": (0, 4, 7, 11),
    "maj9": (0, 4, 7, 11, 14),
    "6/9": (0, 4, 7, 9, 14),
    "m7": (0, 3, 7, 10),
    "m9": (0, 3, 7, 10, 14),
    "m11": (0, 3, 7, 10, 14, 17),
    "m7b5": (0, 3, 6, 10),
    "9": (0, 4, 10, 14),  # dominant 9, fifth left out as pianists do
    "13": (0, 4, 10, 14, 21),
    "7b9": (0, 4, 7, 10, 13),
}

# Progressions: (semitones above the key's tonic, quality) per chord; "minor" ones are meant
# for a minor tonic. One chord per bar, or two per bar where the list says so.
Chord = tuple[int, str]
PROGRESSIONS: dict[str, tuple[str, int, tuple[Chord, ...]]] = {
    # name: (mode, chords per bar, chords)
    "ii-V-I": ("major", 1, ((2, "m9"), (7, "13"), (0, "maj9"), (0, "maj7"))),
    "I-vi-ii-V": ("major", 1, ((0, "maj7"), (9, "m7"), (2, "m7"), (7, "9"))),
    "ii9-V13-Imaj9-vi9": ("major", 1, ((2, "m9"), (7, "13"), (0, "maj9"), (9, "m9"))),
    "IV-V-iii-vi": ("major", 1, ((5, "maj7"), (7, "9"), (4, "m7"), (9, "m9"))),
    "IV-iii-ii-I": ("major", 1, ((5, "maj9"), (4, "m7"), (2, "m9"), (0, "6/9"))),
    "iii-vi-ii-V": ("major", 2, ((4, "m7"), (9, "m9"), (2, "m9"), (7, "13"))),
    "I-IV-iv": ("major", 1, ((0, "maj9"), (5, "maj7"), (5, "m9"), (0, "maj7"))),
    "Imaj7-IVmaj7": ("major", 1, ((0, "maj9"), (5, "maj9"))),
    "i-iv": ("minor", 1, ((0, "m9"), (5, "m9"))),
    "i-VI-iiø-V": ("minor", 1, ((0, "m9"), (8, "maj7"), (2, "m7b5"), (7, "7b9"))),
    "iiø-V-i": ("minor", 1, ((2, "m7b5"), (7, "7b9"), (0, "m9"), (0, "m11"))),
    "i-iv-VII-III": ("minor", 1, ((0, "m7"), (5, "m9"), (10, "9"), (3, "maj7"))),
    "VI-v-i": ("minor", 1, ((8, "maj9"), (7, "m7"), (0, "m9"), (0, "m11"))),
    "i-iv-v": ("minor", 2, ((0, "m9"), (5, "m11"), (7, "m7"), (0, "m9"))),
}
MAJOR_SCALE, MINOR_SCALE = (0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10)

# Rhythm patterns as sixteenth steps inside a bar.
COMP_PATTERNS: tuple[tuple[int, ...], ...] = (
    (0,),  # one long chord per bar
    (0, 10),  # and a push on the "and" of 3
    (0, 6, 11),
    (0, 8),
    (0, 3, 8, 14),
    (2, 10),  # laid-back: both hits off the beat
)
BASS_PATTERNS: tuple[tuple[tuple[int, str], ...], ...] = (
    ((0, "root"),),
    ((0, "root"), (10, "fifth")),
    ((0, "root"), (7, "root"), (10, "fifth")),
    ((0, "root"), (8, "fifth"), (14, "octave")),
    ((0, "root"), (3, "root"), (12, "fifth")),
)
KICK_PATTERNS: tuple[tuple[int, ...], ...] = (
    (0, 10),
    (0, 7, 10),
    (0, 3, 10),
    (0, 8, 11),
    (0, 6, 10, 14),
)
GHOST_STEPS: tuple[tuple[int, ...], ...] = ((7, 15), (9, 15), (3, 7, 14), (11,))
FORMS = ("loop", "intro-loop", "loop-break", "AB")  # see `_bar_plan`


@dataclass(frozen=True)
class LofiTraits:
    """What the rules drew for one piece (kept in the manifest, checked by the tests)."""

    seed: int
    key_root: int  # pitch class of the tonic, 0 = C
    mode: str  # major / minor
    tempo_qpm: float
    swing: float
    bars: int
    progression: str
    progression_b: str  # the B section's progression (same as A unless the form is AB)
    form: str
    comp_pattern: int
    bass_pattern: int
    kick_pattern: int
    hats_per_beat: int  # 2 = eighths, 4 = sixteenths
    melody_program: int | None  # None: no melody

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def piece_seed(base_seed: int, index: int) -> int:
    """The seed of piece `index` of a corpus built with `base_seed` (stable across runs)."""
    digest = hashlib.sha256(f"{GENERATOR_VERSION}:{base_seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def step_tick(step: int, swing: float, tpq: int = TICKS_PER_QUARTER) -> int:
    """Tick of sixteenth `step` (from a bar start) with swung sixteenths.

    Each eighth holds two sixteenths; the second is delayed from half the eighth to `swing`
    of it (0.5 = straight, 2/3 = triplet feel)."""
    eighth, second = divmod(step, 2)
    eighth_ticks = tpq / 2
    return int(round(eighth * eighth_ticks + (swing * eighth_ticks if second else 0.0)))


def draw_traits(seed: int) -> LofiTraits:
    """Draw the piece-level choices (key, tempo, form, patterns) from `seed`."""
    rng = np.random.default_rng(seed)
    names = sorted(PROGRESSIONS)
    progression = names[int(rng.integers(len(names)))]
    mode = PROGRESSIONS[progression][0]
    same_mode = [n for n in names if PROGRESSIONS[n][0] == mode]
    tempo_qpm = round(float(rng.uniform(*TEMPO_RANGE_QPM)), 1)
    bar_seconds = 4 * 60.0 / tempo_qpm
    fitting = [b for b in (8, 12, 16) if PIECE_SECONDS_RANGE[0] <= b * bar_seconds]
    fitting = [b for b in fitting if b * bar_seconds <= PIECE_SECONDS_RANGE[1]] or [8]
    form = FORMS[int(rng.integers(len(FORMS)))]
    progression_b = same_mode[int(rng.integers(len(same_mode)))] if form == "AB" else progression
    melody = rng.random() < 0.75
    return LofiTraits(
        seed=seed,
        key_root=int(rng.integers(12)),
        mode=mode,
        tempo_qpm=tempo_qpm,
        swing=round(float(rng.uniform(*SWING_RANGE)), 3),
        bars=int(fitting[int(rng.integers(len(fitting)))]),
        progression=progression,
        progression_b=progression_b,
        form=form,
        comp_pattern=int(rng.integers(len(COMP_PATTERNS))),
        bass_pattern=int(rng.integers(len(BASS_PATTERNS))),
        kick_pattern=int(rng.integers(len(KICK_PATTERNS))),
        hats_per_beat=int(rng.choice([2, 4], p=[0.6, 0.4])),
        melody_program=(EP_PROGRAM if rng.random() < 0.5 else VIBES_PROGRAM) if melody else None,
    )


@dataclass(frozen=True)
class BarPlan:
    chords: tuple[tuple[int, tuple[int, ...]], ...]  # (start step, absolute root pc + intervals)
    drums: bool
    melody: bool


def _chords_of(name: str, key_root: int) -> list[list[tuple[int, tuple[int, ...]]]]:
    """A progression as bars: each bar a list of (start step, (root pc, *intervals))."""
    _, per_bar, chords = PROGRESSIONS[name]
    bars: list[list[tuple[int, tuple[int, ...]]]] = []
    for i in range(0, len(chords), per_bar):
        bar = []
        for j, (degree, quality) in enumerate(chords[i : i + per_bar]):
            root = (key_root + degree) % 12
            bar.append((j * STEPS_PER_BAR // per_bar, (root, *CHORDS[quality])))
        bars.append(bar)
    return bars


def _bar_plan(traits: LofiTraits) -> list[BarPlan]:
    """The form: which chords each bar holds and where drums and melody play.

    loop: the progression over and over; intro-loop: the first 2 bars without drums;
    loop-break: drums drop out for the bar before the last 4; AB: the second half loops a
    second progression in the same mode."""
    a = _chords_of(traits.progression, traits.key_root)
    b = _chords_of(traits.progression_b, traits.key_root)
    plan = []
    for bar in range(traits.bars):
        second_half = traits.form == "AB" and bar >= traits.bars // 2
        source = b if second_half else a
        chords = tuple(source[bar % len(source)])
        drums = not (
            (traits.form == "intro-loop" and bar < 2)
            or (traits.form == "loop-break" and bar == traits.bars - 5)
        )
        melody = traits.melody_program is not None and not (traits.form == "intro-loop" and bar < 2)
        plan.append(BarPlan(chords, drums, melody))
    return plan


def _voicings(chord: tuple[int, ...]) -> list[tuple[int, ...]]:
    """All voicings of the chord's pitch classes in EP_RANGE, each pc exactly once, spread at
    most an octave and a sixth (close and open positions, every inversion)."""
    root, *intervals = chord
    pcs = sorted({(root + i) % 12 for i in intervals})
    out: set[tuple[int, ...]] = set()
    for order in permutations(pcs):
        if len(pcs) > 5 and order[0] != pcs[0]:
            continue  # six-note chords: keep the search small
        for bottom in range(EP_RANGE[0], EP_RANGE[0] + 12):
            if bottom % 12 != order[0]:
                continue
            notes = [bottom]
            for pc in order[1:]:
                notes.append(notes[-1] + (pc - notes[-1]) % 12 or 12)
            if notes[-1] - notes[0] <= 21:
                for shift in (0, 12):
                    voicing = tuple(n + shift for n in notes)
                    if voicing[-1] <= EP_RANGE[1]:
                        out.add(voicing)
    return sorted(out)


def _movement(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """How far voicing b moves from a: each note of b to its nearest note of a, summed."""
    return float(sum(min(abs(x - y) for y in a) for x in b))


def voice_lead(chords: list[tuple[int, ...]], centre: int = 64) -> list[tuple[int, ...]]:
    """Voicings for a chord sequence: the first near `centre`, each next one moving least."""
    out: list[tuple[int, ...]] = []
    for chord in chords:
        options = _voicings(chord)
        if not out:
            best = min(options, key=lambda v: (abs(sum(v) / len(v) - centre), v))
        else:
            prev = out[-1]
            # a small pull to the centre keeps long loops from drifting to one end of the range
            best = min(
                options, key=lambda v: (_movement(prev, v) + 0.3 * abs(sum(v) / len(v) - centre), v)
            )
        out.append(best)
    return out


def _scale(traits: LofiTraits) -> tuple[int, ...]:
    steps = MAJOR_SCALE if traits.mode == "major" else MINOR_SCALE
    return tuple((traits.key_root + s) % 12 for s in steps)


def _motif(rng: np.random.Generator, bars: int, density: int) -> list[tuple[int, int, int]]:
    """A motif: (step from its start, duration in steps, scale-degree offset from a chord tone)."""
    length = bars * STEPS_PER_BAR
    count = int(rng.integers(3, 4 + density))
    steps = sorted(set(int(s) for s in rng.choice(np.arange(0, length, 1), size=count)))
    notes = []
    for i, step in enumerate(steps):
        nxt = steps[i + 1] if i + 1 < len(steps) else length
        duration = max(1, min(nxt - step, int(rng.integers(2, 7))))
        notes.append((step, duration, int(rng.integers(-2, 3))))
    return notes


def _fit_pitch(target: int, chord_pcs: set[int], scale: tuple[int, ...], degree: int) -> int:
    """The chord tone nearest `target`, moved `degree` steps along the scale (0 = chord tone)."""
    lo, hi = MELODY_RANGE
    candidates = [p for p in range(lo, hi + 1) if p % 12 in chord_pcs]
    pitch = min(candidates, key=lambda p: (abs(p - target), p))
    scale_pitches = [p for p in range(lo - 12, hi + 13) if p % 12 in scale]
    if pitch % 12 in scale and degree:
        i = scale_pitches.index(pitch) + degree
        pitch = scale_pitches[max(0, min(i, len(scale_pitches) - 1))]
    while pitch > hi:
        pitch -= 12
    while pitch < lo:
        pitch += 12
    return pitch


class _Writer:
    """Collects notes on the swung grid with per-hit timing and per-note velocity humanising."""

    def __init__(self, traits: LofiTraits, rng: np.random.Generator) -> None:
        self.traits, self.rng = traits, rng
        self.tpq = TICKS_PER_QUARTER
        self.bar_ticks = 4 * self.tpq
        self.ticks_per_ms = traits.tempo_qpm / 60.0 * self.tpq / 1000.0

    def hit_tick(self, bar: int, step: int, late_ms: float = 0.0, jitter_ms: float = 6.0) -> int:
        """Start tick of a hit: the swung step plus a laid-back offset and random jitter."""
        jitter = np.clip(self.rng.normal(0.0, jitter_ms), -JITTER_LIMIT_MS, JITTER_LIMIT_MS)
        offset_ms = late_ms + float(jitter)
        tick = bar * self.bar_ticks + step_tick(step, self.traits.swing, self.tpq)
        return max(0, int(round(tick + offset_ms * self.ticks_per_ms)))

    def steps_to_ticks(self, steps: int) -> int:
        return steps * self.tpq // 4

    def velocity(self, base: float, spread: float = 6.0) -> int:
        return int(np.clip(round(base + self.rng.normal(0.0, spread)), 1, 127))


def generate_lofi(seed: int) -> tuple[ScoreTick, LofiTraits]:
    """One lo-fi piece made by the rules above, fully determined by `seed`."""
    traits = draw_traits(seed)
    rng = np.random.default_rng([seed, 1])  # a second stream for the notes themselves
    plan = _bar_plan(traits)
    writer = _Writer(traits, rng)
    bar_ticks, tpq = writer.bar_ticks, writer.tpq
    end_tick = traits.bars * bar_ticks

    # Electric piano: voice-led chords on the comping pattern.
    flat_chords = [(bar, step, chord) for bar, p in enumerate(plan) for step, chord in p.chords]
    voicings = voice_lead([c for _, _, c in flat_chords])
    comp = COMP_PATTERNS[traits.comp_pattern]
    ep = TrackTick("electric piano", EP_PROGRAM, False)
    hits: list[tuple[int, int, tuple[int, ...]]] = []  # (bar, step, voicing)
    for i, (bar, start, _) in enumerate(flat_chords):
        same_bar_next = i + 1 < len(flat_chords) and flat_chords[i + 1][0] == bar
        stop = flat_chords[i + 1][1] if same_bar_next else STEPS_PER_BAR
        steps = [s for s in comp if start <= s < stop] or [start]
        hits += [(bar, s, voicings[i]) for s in steps]
    for i, (bar, step, voicing) in enumerate(hits):
        absolute = bar * STEPS_PER_BAR + step
        nxt = hits[i + 1] if i + 1 < len(hits) else None
        next_abs = nxt[0] * STEPS_PER_BAR + nxt[1] if nxt else traits.bars * STEPS_PER_BAR
        tick = writer.hit_tick(bar, step, late_ms=8.0)  # one jitter per hit: notes stay together
        duration = max(tpq // 4, writer.steps_to_ticks(next_abs - absolute) - tpq // 8)
        duration = min(duration, end_tick - tick)
        accent = 62.0 if step == 0 else 54.0
        for pitch in voicing:
            ep.notes.append(NoteTick(tick, duration, pitch, writer.velocity(accent, 5.0)))

    # Bass: roots and fifths (and octaves) of the chord sounding at each step.
    bass = TrackTick("bass", BASS_PROGRAM, False)
    pattern = BASS_PATTERNS[traits.bass_pattern]
    for bar, bar_plan in enumerate(plan):
        for j, (step, role) in enumerate(pattern):
            chord = [c for s, c in bar_plan.chords if s <= step][-1]
            root_pitch = BASS_RANGE[0] + (chord[0] - BASS_RANGE[0]) % 12
            pitch = root_pitch + {"root": 0, "fifth": 7, "octave": 12}[role]
            while pitch > BASS_RANGE[1]:
                pitch -= 12
            next_step = pattern[j + 1][0] if j + 1 < len(pattern) else STEPS_PER_BAR
            tick = writer.hit_tick(bar, step, late_ms=4.0)
            duration = min(writer.steps_to_ticks(next_step - step) - tpq // 16, end_tick - tick)
            base = 92.0 if step == 0 else 80.0
            bass.notes.append(NoteTick(tick, duration, pitch, writer.velocity(base)))

    drums = _drum_track(traits, plan, writer, end_tick)
    tracks = [ep, bass, drums]
    if traits.melody_program is not None:
        tracks.append(_melody_track(traits, plan, writer, rng, end_tick))

    score = ScoreTick(tpq)
    score.tempos.append(TempoTick(0, traits.tempo_qpm))
    score.time_signatures.append(TimeSignatureTick(0, 4, 4))
    for track in tracks:
        track.notes.sort(key=lambda n: (n.time, n.pitch))
        score.tracks.append(track)
    return score, traits


def _drum_track(
    traits: LofiTraits, plan: list[BarPlan], writer: _Writer, end_tick: int
) -> TrackTick:
    """Boom-bap: kick pattern, snare on 2 and 4 (late), ghost snares, hats, a fill-in open hat."""
    kicks = KICK_PATTERNS[traits.kick_pattern]
    ghosts = GHOST_STEPS[traits.kick_pattern % len(GHOST_STEPS)]
    hat_step = 4 // traits.hats_per_beat
    hits: list[Hit] = []
    for bar, bar_plan in enumerate(plan):
        if not bar_plan.drums:
            continue
        bar_hits: list[tuple[int, int, float, float]] = []  # key, step, velocity, late ms
        bar_hits += [(KICK, s, 100.0 if s == 0 else 88.0, 0.0) for s in kicks]
        bar_hits += [(SNARE, s, 96.0, 14.0) for s in (4, 12)]
        bar_hits += [(SNARE, s, 28.0, 10.0) for s in ghosts]  # ghost notes: barely touched
        open_hat = 14 if bar % 4 == 3 else None
        for s in range(0, STEPS_PER_BAR, hat_step):
            key = OPEN_HAT if s == open_hat else CLOSED_HAT
            bar_hits.append((key, s, 58.0 if s % 4 == 0 else 42.0, 0.0))
        on_grid = bar * writer.bar_ticks
        hits += [
            Hit(key, on_grid + step_tick(step, traits.swing, writer.tpq), velocity, late_ms,
                velocity_jitter=3.0 if velocity < 40 else 7.0)
            for key, step, velocity, late_ms in bar_hits
        ]  # fmt: skip
    return humanise(
        TrackTick("drums", 0, True),
        hits,
        writer.rng,
        ticks_per_ms=writer.ticks_per_ms,
        end_tick=end_tick,
        length_ticks=writer.tpq // 8,
        timing_jitter_ms=5.0,
        jitter_limit_ms=JITTER_LIMIT_MS,
    )


def _melody_track(
    traits: LofiTraits,
    plan: list[BarPlan],
    writer: _Writer,
    rng: np.random.Generator,
    end_tick: int,
) -> TrackTick:
    """A 1-2 bar motif, repeated; every 4th statement varied (a note dropped, shifted or
    changed); each note fitted to the chord under it so the line follows the harmony."""
    program = traits.melody_program if traits.melody_program is not None else EP_PROGRAM
    track = TrackTick("melody", program, False)
    motif_bars = int(rng.integers(1, 3))
    motif = _motif(rng, motif_bars, density=int(rng.integers(0, 4)))
    scale = _scale(traits)
    target = int(rng.integers(72, 80))
    for first_bar in range(0, traits.bars, motif_bars):
        statement = first_bar // motif_bars
        notes = list(motif)
        if statement % 4 == 3 and len(notes) > 2:  # variation
            kind = int(rng.integers(3))
            i = int(rng.integers(len(notes)))
            if kind == 0:
                notes.pop(i)
            elif kind == 1:
                step, dur, deg = notes[i]
                notes[i] = (min(step + 1, motif_bars * STEPS_PER_BAR - 1), dur, deg)
            else:
                step, dur, deg = notes[i]
                notes[i] = (step, dur, deg + int(rng.choice([-2, 2])))
        for step, dur_steps, degree in notes:
            bar = first_bar + step // STEPS_PER_BAR
            if bar >= traits.bars or not plan[bar].melody:
                continue
            in_bar = step % STEPS_PER_BAR
            chord = [c for s, c in plan[bar].chords if s <= in_bar][-1]
            chord_pcs = {(chord[0] + i) % 12 for i in chord[1:]}
            pitch = _fit_pitch(target, chord_pcs, scale, degree)
            tick = writer.hit_tick(bar, in_bar, late_ms=6.0, jitter_ms=8.0)
            duration = min(writer.steps_to_ticks(dur_steps), end_tick - tick)
            if duration > 0:
                track.notes.append(NoteTick(tick, duration, pitch, writer.velocity(70.0, 8.0)))
    return track
