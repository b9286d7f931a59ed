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
    """Write the piano roll of `midi_path` to `png_path`; returns it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    score = load_score(midi_path)
    tpq = float(score.ticks_per_quarter)
    end_beats = max(float(score.end()) / tpq, BEATS_PER_BAR)
    figure, axes = plt.subplots(figsize=(10, 3.6), dpi=dpi)
    colours = plt.get_cmap("tab10")
    low, high, last_onset = 127, 0, 0.0
    for index, track in enumerate(score.tracks):
        notes = track.notes.numpy()
        if len(notes["time"]) == 0:
            continue
        starts = notes["time"] / tpq
        lengths = np.maximum(notes["duration"] / tpq, 0.05)
        pitches = notes["pitch"]
        low, high = min(low, int(pitches.min())), max(high, int(pitches.max()))
        last_onset = max(last_onset, float(starts.max()))
        label = "drums" if track.is_drum else (track.name or f"program {track.program}")
        axes.barh(pitches, lengths, left=starts, height=0.8, color=colours(index % 10), label=label)
    if high < low:
        low, high = 60, 72
    elif len(score.tracks) > 1:
        axes.legend(loc="upper right", fontsize=7)
    # bars that hold an onset are counted; a held note may ring past the last bar line
    lines = bar_starts(score, end_beats)
    bars = [b for b in lines if b <= last_onset] or lines[:1]
    for number, beat in enumerate(lines, start=1):
        axes.axvline(beat, color="0.55", linewidth=0.8, zorder=0)
        axes.text(beat + 0.1, high + 2.2, str(number), fontsize=7, color="0.35")
    axes.set_xlim(0, end_beats)
    axes.set_ylim(low - 2, high + 4)
    axes.set_xlabel("beats (bar lines grey, bars numbered)")
    axes.set_ylabel("MIDI pitch")
    axes.set_title(f"{Path(midi_path).name}: {len(bars)} bars, {score.note_num()} notes")
    figure.tight_layout()
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png_path)
    plt.close(figure)
    return png_path
