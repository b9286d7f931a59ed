"""Corpus export speed: midimix's direct music21 -> symusic export against music21's own MIDI
writer (`music21.midi.translate.streamToMidiFile(...).writestr()`), on the same parsed scores.

Both start from a parsed music21 score (parsing is the same cost for both and is not timed).
Each run gets a fresh deep copy of the score. Prints per-score medians of 5 runs and the
ratio music21 / midimix (> 1: midimix is faster).

    .venv/bin/python benchmarks/bench_corpus.py
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from midimix.corpus.classical import (
    SegmentSpec,
    build_segment,
    load_scores,
    music21_corpus_dir,
    score_data,
    segment_bars,
)

SCORES = ("bach/bwv66.6.mxl", "monteverdi/madrigal.3.1.mxl", "haydn/opus74no1/movement1.mxl")
REPEATS = 5


def median_seconds(fn: Callable[[Any], object], score: Any, repeats: int = REPEATS) -> float:
    """Median time of fn on a fresh copy of the score (music21 caches derived streams)."""
    times = []
    for _ in range(repeats):
        fresh = copy.deepcopy(score)
        start = time.perf_counter()
        fn(fresh)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    from music21.midi import translate

    spec = SegmentSpec()
    print(f"{'score':34} {'midimix s':>10} {'music21 s':>10} {'ratio':>7}")
    for relative in SCORES:
        path = music21_corpus_dir() / relative
        score = load_scores(path)[0]

        def ours(score: Any, path: Path = path) -> object:
            data = score_data(score, path)
            cuts = segment_bars(data.bar_starts, data.tempos, spec)
            return [build_segment(data, cut, spec, 0).dumps_midi() for cut in cuts]

        def theirs(score: Any) -> object:
            return translate.streamToMidiFile(score).writestr()

        mine, peer = median_seconds(ours, score), median_seconds(theirs, score)
        print(f"{relative:34} {mine:10.3f} {peer:10.3f} {peer / mine:7.1f}x")


if __name__ == "__main__":
    main()
