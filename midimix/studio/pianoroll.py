"""A piano roll of a MIDI piece as a PNG: notes as bars over time in beats, one colour per
track, with a line at every bar and the bar numbers along the top."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from midimix.midifile import load_score

BEATS_PER_BAR = 4.0  # when the piece states no time signature (miditok writes 4/4)


def bar_starts(score: object, end_beats: float) -> list[float]:
    """Beat positions of every bar line from the score's time signatures (4/4 when none)."""
    tpq = float(score.ticks_per_quarter)  # type: ignore[attr-defined]
    signatures = sorted(
        (float(ts.time) / tpq, ts.numerator * 4.0 / ts.denominator)
        for ts in score.time_signatures  # type: ignore[attr-defined]
    ) or [(0.0, BEATS_PER_BAR)]
    if signatures[0][0] > 0:
        signatures.insert(0, (0.0, BEATS_PER_BAR))
    lines: list[float] = []
    for i, (start, length) in enumerate(signatures):
        stop = signatures[i + 1][0] if i + 1 < len(signatures) else end_beats
        position = start
        while position < stop - 1e-9 and length > 0:
            lines.append(position)
            position += length
    return lines


def draw_piano_roll(midi_path: Path, png_path: Path, dpi: int = 100) -> Path:
    """Write the piano roll of `midi_path` to `png_path`; returns it.

    One PolyCollection of rectangles per track and fixed margins: a patch per note and
    `tight_layout` took 0.2-0.3 s for a 16-bar piece, most of a warm studio request's drawing.
    A `Figure` of its own, not pyplot's global state, so that it can be drawn in a thread
    while the audio renders.
    """
    import matplotlib
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    score = load_score(midi_path)
    tpq = float(score.ticks_per_quarter)
    end_beats = max(float(score.end()) / tpq, BEATS_PER_BAR)
    figure = Figure(figsize=(10, 3.6), dpi=dpi)
    axes = figure.subplots()
    figure.subplots_adjust(left=0.07, right=0.99, bottom=0.14, top=0.9)
    colours = matplotlib.colormaps["tab10"]
    low, high, last_onset = 127, 0, 0.0
    legend = []
    for index, track in enumerate(score.tracks):
        notes = track.notes.numpy()
        if len(notes["time"]) == 0:
            continue
        starts = notes["time"] / tpq
        ends = starts + np.maximum(notes["duration"] / tpq, 0.05)
        pitches = notes["pitch"].astype(float)
        low, high = min(low, int(pitches.min())), max(high, int(pitches.max()))
        last_onset = max(last_onset, float(starts.max()))
        corners = np.stack(  # (notes, 4, 2): the rectangle of each note, 0.8 semitone high
            [
                np.stack([starts, pitches - 0.4], 1),
                np.stack([ends, pitches - 0.4], 1),
                np.stack([ends, pitches + 0.4], 1),
                np.stack([starts, pitches + 0.4], 1),
            ],
            axis=1,
        )
        colour = colours(index % 10)
        axes.add_collection(PolyCollection(list(corners), facecolors=colour, edgecolors="none"))
        label = "drums" if track.is_drum else (track.name or f"program {track.program}")
        legend.append(Patch(color=colour, label=label))
    if high < low:
        low, high = 60, 72
    elif len(legend) > 1:
        axes.legend(handles=legend, loc="upper right", fontsize=7)
    # bars that hold an onset are counted; a held note may ring past the last bar line
    lines = bar_starts(score, end_beats)
    bars = [b for b in lines if b <= last_onset] or lines[:1]
    axes.vlines(lines, low - 2, high + 4, colors="0.55", linewidth=0.8, zorder=0)
    for number, beat in enumerate(lines, start=1):
        axes.text(beat + 0.1, high + 2.2, str(number), fontsize=7, color="0.35")
    axes.set_xlim(0, end_beats)
    axes.set_ylim(low - 2, high + 4)
    axes.set_xlabel("beats (bar lines grey, bars numbered)")
    axes.set_ylabel("MIDI pitch")
    axes.set_title(f"{Path(midi_path).name}: {len(bars)} bars, {score.note_num()} notes")
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png_path)
    return png_path
