"""Tempo (and drum) accuracy on the tempo set (benchmarks/tempo_set.py), per condition.

A tempo is right when within 4 % of the true one; an octave error is within 4 % of double,
half, 1.5x or 2/3x the true tempo (reported apart from other errors). No basic-pitch runs here:
only the beat tracker (and, with --drums, the drum onset detector) sees the audio.

    nice -n 5 .venv/bin/python benchmarks/bench_tempo.py [--drums] [--cache /tmp/midimix_tempo_set]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tempo_set import CONDITIONS, SAMPLE_RATE_HZ, build_pieces, load_audio  # noqa: E402

TOLERANCE = 0.04
OCTAVE_RATIOS = (2.0, 0.5, 1.5, 2 / 3, 3.0, 1 / 3)


def classify(estimate: float, truth: float) -> str:
    ratio = estimate / truth
    if abs(ratio - 1) <= TOLERANCE:
        return "ok"
    if any(abs(ratio / r - 1) <= TOLERANCE for r in OCTAVE_RATIOS):
        return "octave"
    return "other"


def drum_f1(reference: np.ndarray, estimate: np.ndarray, window_s: float = 0.05) -> float:
    import mir_eval

    if len(reference) == 0 and len(estimate) == 0:
        return 1.0
    if len(reference) == 0 or len(estimate) == 0:
        return 0.0
    f, _, _ = mir_eval.onset.f_measure(reference, estimate, window=window_s)
    return float(f)


KICKS, SNARES, HATS = (35, 36), (37, 38, 39, 40), (42, 44, 46)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", type=Path, default=Path("/tmp/midimix_tempo_set"))
    parser.add_argument("--drums", action="store_true", help="score drum onsets too")
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--kinds", default="", help="only these piece kinds (comma list)")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--prior-bpm", type=float, default=110.0)
    parser.add_argument("--tempo-range", default="", help="LO-HI BPM given to the tracker")
    parser.add_argument("--quiet", action="store_true", help="totals only")
    args = parser.parse_args()
    from midimix.transcribe_beats import track_beats

    pieces = build_pieces()
    if args.kinds:
        pieces = [p for p in pieces if p.kind in args.kinds.split(",")]
    conditions = args.conditions.split(",")
    tempo_range = None
    if args.tempo_range:
        lo, hi = (float(x) for x in args.tempo_range.split("-"))
        tempo_range = (lo, hi)
    results: dict[str, list[str]] = defaultdict(list)
    by_kind: dict[str, list[str]] = defaultdict(list)
    drum_scores: dict[str, list[float]] = defaultdict(list)
    drum_free_rates: list[float] = []
    seconds = 0.0
    for piece in pieces:
        for condition in conditions:
            audio = load_audio(piece, condition, args.cache)
            start = time.perf_counter()
            beats = track_beats(audio, SAMPLE_RATE_HZ, tempo_range, args.prior_bpm)
            seconds += time.perf_counter() - start
            verdict = classify(beats.tempo_bpm, piece.tempo_bpm)
            results[condition].append(verdict)
            by_kind[piece.kind].append(verdict)
            if not args.quiet and (args.verbose or verdict != "ok"):
                print(f"{piece.id:14s} {condition:8s} true {piece.tempo_bpm:6.1f} "
                      f"got {beats.tempo_bpm:6.1f} {verdict}")  # fmt: skip
            if args.drums:
                score_drums(piece, audio, drum_scores, drum_free_rates, condition, args.verbose)
    print(f"\ntempo within {TOLERANCE:.0%} (octave errors apart), {seconds:.1f} s of tracking")
    for name, verdicts in [*results.items(), *by_kind.items()]:
        n = len(verdicts)
        print(f"  {name:14s} ok {verdicts.count('ok') / n:5.1%}  octave "
              f"{verdicts.count('octave') / n:5.1%}  other {verdicts.count('other') / n:5.1%}"
              f"  (n={n})")  # fmt: skip
    everything = [v for vs in results.values() for v in vs]
    print(f"  {'all':14s} ok {everything.count('ok') / len(everything):5.1%}  octave "
          f"{everything.count('octave') / len(everything):5.1%}")  # fmt: skip
    if args.drums:
        print("\ndrums: onset F1 at 50 ms, per kind of hit and condition")
        for name, values in sorted(drum_scores.items()):
            print(f"  {name:20s} {np.mean(values):.3f} (n={len(values)})")
        if drum_free_rates:
            print(
                f"  drum-free: hits per 10 s mean {np.mean(drum_free_rates):.2f}, "
                f"max {np.max(drum_free_rates):.2f} (n={len(drum_free_rates)})"
            )
    return 0


def score_drums(piece, audio, drum_scores, drum_free_rates, condition, verbose):
    import librosa

    from midimix.transcribe_beats import MIN_DRUM_SHARE, drum_hits, percussive_share

    _, percussive = librosa.effects.hpss(audio)
    hits = []
    if percussive_share(audio, SAMPLE_RATE_HZ) >= MIN_DRUM_SHARE:  # as transcribe --drums
        hits = drum_hits(percussive, SAMPLE_RATE_HZ)
    seconds = len(audio) / SAMPLE_RATE_HZ
    if not piece.drums:
        rate = 10 * len(hits) / seconds
        drum_free_rates.append(rate)
        if verbose or rate > 1:
            print(f"{piece.id:14s} {condition:8s} drum-free: {len(hits)} hits")
        return
    for name, keys in (("kick", KICKS), ("snare", SNARES), ("hat", HATS)):
        ref = np.sort(np.concatenate([piece.drums.get(k, np.zeros(0)) for k in keys]))
        est = np.array(sorted(t for t, p, _ in hits if p in keys))
        f1 = drum_f1(ref, est)
        drum_scores[f"{name} {condition}"].append(f1)
        if verbose:
            print(
                f"{piece.id:14s} {condition:8s} {name}: ref {len(ref)} est {len(est)} F1 {f1:.2f}"
            )


if __name__ == "__main__":
    sys.exit(main())
