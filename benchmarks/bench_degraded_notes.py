"""Transcribed notes against the known notes, per degradation: midimix's defaults (today's and
the earlier 0.7 / 0.3) and basic-pitch's own, on the same audio; and a threshold sweep tuned on
one part of the pieces and scored on the other.

    python benchmarks/bench_degraded_notes.py [--lofi 8] [--chorales 8] [--cache DIR]
        [--threads 1] [--sweep] [--roundtrip]

The pieces and degradations are the tempo set's (`tempo_set.py`: rule-made lo-fi with drums,
Bach chorales; clean, the lo-fi chain at 0.5 and 1.0, MP3 at 128 kb/s, noise at 15 dB SNR).
Each clip runs basic-pitch's model once per window layout (activations cached under --cache,
so a second run only decodes and scores); the notes of midimix's defaults (aligned windows,
its thresholds) and of basic-pitch's defaults (its windows, onset 0.5, frame 0.3, 127.7 ms,
melodia) are scored with mir_eval against the piece's pitched notes in its first 30 s: onset
F1 and note recall (onset within 50 ms, pitch within a quarter tone), and F1 with offsets
(mir_eval's default 20% offset tolerance). Drum notes are not in the reference, so a
transcribed drum hit counts against precision. Figures are means over clips.

The parts, fixed by piece index before any tuning: even-numbered pieces of each kind (lo-fi
seeds 1000, 1002, ...; chorales 0, 2, ...) are the tuning part, odd-numbered ones the
held-out part. With 8 chorales the corpus's six repeat, and chorales k and k + 6 (the same
chorale at another tempo) have the same parity, so no chorale is in both parts.

--sweep: every fixed onset threshold x frame threshold of the grid (--onsets, --frames) and
the per-clip onset threshold (midimix's default: --onset-ratio x the clip's onset level, the
99.99th percentile of its onset activations, at most 0.7; `clip_onset_threshold`) for each
ratio in --ratios x the frame grid, scored on the tuning part's degraded clips (lo-fi 0.5 and
1.0, MP3, noise) and on the clean 20-clip round-trip set of bench_transcribe.py (rendered and
its activations cached under --cache). The choice: the best mean onset F1 on the tuning part's
degraded clips among settings whose mean note recall there is >= --min-recall and whose onset
F1 on the round-trip set is no lower than the earlier defaults' (0.7 / 0.3); if no setting
meets both, the recall condition is dropped (the clean set is not allowed to get worse). The
choice is then scored per condition on the held-out part next to the earlier defaults,
today's and basic-pitch's.

--roundtrip: the round-trip set's scores for the earlier defaults and today's.

--hpss: the lo-fi pieces (both parts; nothing was tuned on this) transcribed from the harmonic
part (librosa's HPSS, as `--hpss` does): the earlier `--hpss` thresholds (0.5 / 0.3) against
today's (per clip, at most 0.5), and today's defaults without HPSS, per condition; then both
parts with `--hpss` on the pieces that have drums (the lo-fi ones) and the defaults on the rest.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mir_eval
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tempo_set as ts  # noqa: E402

from midimix.transcribe import (  # noqa: E402
    TranscribeConfig,
    activations_to_notes,
    load_model,
    run_model,
)

BASIC_PITCH = TranscribeConfig(
    onset_threshold=0.5, frame_threshold=0.3, min_note_ms=127.7, melodia=True,
    window_layout="basic-pitch",
)  # fmt: skip
EARLIER = TranscribeConfig(onset_threshold=0.7, frame_threshold=0.3)  # the defaults before
MIDIMIX = TranscribeConfig()
EARLIER_HPSS = TranscribeConfig(onset_threshold=0.5, frame_threshold=0.3, hpss=True)
MIDIMIX_HPSS = TranscribeConfig(hpss=True)
DEGRADED = tuple(c for c in ts.CONDITIONS if c != "clean")
Notes = list[tuple[float, float, int, float]]
Decoder = Callable[[dict[str, np.ndarray]], Notes]


def known_notes(piece: ts.TempoPiece) -> tuple[np.ndarray, np.ndarray]:
    seconds = piece.score.to("second")
    rows = [
        (float(n.time), float(n.time + n.duration), int(n.pitch))
        for track in seconds.tracks
        if not track.is_drum
        for n in track.notes
        if n.time < ts.CLIP_SECONDS
    ]
    intervals = np.array([[s, max(e, s + 1e-3)] for s, e, _ in rows])
    return intervals, np.array([440.0 * 2 ** ((p - 69) / 12) for _, _, p in rows])


def scores(reference: tuple[np.ndarray, np.ndarray], notes: Notes) -> dict[str, float]:
    if not notes:
        return {"onset_f1": 0.0, "recall": 0.0, "offset_f1": 0.0}
    est = np.array([[s, max(e, s + 1e-3)] for s, e, _, _ in notes])
    est_hz = np.array([440.0 * 2 ** ((p - 69) / 12) for _, _, p, _ in notes])
    tr = mir_eval.transcription
    _, recall, f1, _ = tr.precision_recall_f1_overlap(*reference, est, est_hz, offset_ratio=None)
    _, _, off_f1, _ = tr.precision_recall_f1_overlap(*reference, est, est_hz)
    return {"onset_f1": f1, "recall": recall, "offset_f1": off_f1}


class Clip:
    """One piece under one condition: its known notes and its activations in both layouts."""

    def __init__(self, piece: ts.TempoPiece, index: int, condition: str, folder: Path) -> None:
        self.piece, self.condition, self.folder = piece, condition, folder
        self.part = "tuning" if index % 2 == 0 else "held-out"
        self.reference = known_notes(piece)
        self.activations: dict[str, dict[str, np.ndarray]] = {}
        for layout in ("aligned", "basic-pitch"):
            path = folder / f"{piece.id}_{condition}_{layout}.npz"
            if not path.exists():
                audio = ts.load_audio(piece, condition, folder)
                acts = run_model(audio, load_model(), layout=layout)
                np.savez_compressed(path, note=acts["note"], onset=acts["onset"])
            with np.load(path) as saved:
                self.activations[layout] = {"note": saved["note"], "onset": saved["onset"]}

    def score(self, decoder: Decoder, layout: str = "aligned") -> dict[str, float]:
        if layout == "hpss" and layout not in self.activations:
            self.activations[layout] = self._harmonic()
        return scores(self.reference, decoder(self.activations[layout]))

    def _harmonic(self) -> dict[str, np.ndarray]:
        """Activations of the harmonic part (aligned windows), cached as the others."""
        path = self.folder / f"{self.piece.id}_{self.condition}_hpss.npz"
        if not path.exists():
            import librosa

            audio = ts.load_audio(self.piece, self.condition, self.folder)
            acts = run_model(librosa.effects.hpss(audio)[0], load_model())
            np.savez_compressed(path, note=acts["note"], onset=acts["onset"])
        with np.load(path) as saved:
            return {"note": saved["note"], "onset": saved["onset"]}


def load_clips(n_lofi: int, n_chorales: int, cache: Path) -> list[Clip]:
    pieces = ts.build_pieces(n_lofi=n_lofi, n_nodrums=0, n_fast=0, n_chorales=n_chorales, n_jazz=0)
    # the chorales' tempos depend on how many there are: a folder per set size
    folder = cache / f"lofi{n_lofi}-chorales{n_chorales}"
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for kind in ("lofi", "chorale"):
        for index, piece in enumerate(p for p in pieces if p.kind == kind):
            clips += [Clip(piece, index, condition, folder) for condition in ts.CONDITIONS]
    return clips


def fixed(config: TranscribeConfig) -> Decoder:
    return lambda acts: activations_to_notes(acts, config)


def mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.mean(r[k] for r in rows) for k in rows[0]}


def cell(m: dict[str, float]) -> str:
    return f"{m['onset_f1']:.3f} / {m['recall']:.3f} / {m['offset_f1']:.3f}"


def table(clips: list[Clip], columns: dict[str, tuple[Decoder, str]], title: str) -> None:
    print(f"{title}: onset F1 / note recall / F1 with offsets, mean over clips")
    print("condition | " + " | ".join(columns))
    per_column: dict[str, list[dict[str, float]]] = {name: [] for name in columns}
    for condition in ts.CONDITIONS:
        chosen = [c for c in clips if c.condition == condition]
        cells = []
        for name, (decoder, layout) in columns.items():
            rows = [c.score(decoder, layout) for c in chosen]
            if condition != "clean":
                per_column[name] += rows
            cells.append(cell(mean(rows)))
        print(f"{condition:9} | " + " | ".join(cells))
    print("degraded  | " + " | ".join(cell(mean(rows)) for rows in per_column.values()))


def columns(chosen: tuple[str, Decoder] | None = None) -> dict[str, tuple[Decoder, str]]:
    out = {
        "midimix 0.7/0.3 (earlier)": (fixed(EARLIER), "aligned"),
        f"midimix defaults ({describe(MIDIMIX)})": (fixed(MIDIMIX), "aligned"),
    }
    if chosen is not None and chosen[0] != describe(MIDIMIX):
        out[f"sweep's choice ({chosen[0]})"] = (chosen[1], "aligned")
    out["basic-pitch defaults"] = (fixed(BASIC_PITCH), "basic-pitch")
    return out


def describe(config: TranscribeConfig) -> str:
    if config.onset_threshold is None:
        return f"per clip x{config.onset_ratio:g}/{config.frame_threshold:g}"
    return f"{config.onset_threshold:g}/{config.frame_threshold:g}"


class RoundTrip:
    """The clean 20-clip round-trip set of bench_transcribe.py, its activations cached."""

    def __init__(self, cache: Path) -> None:
        import roundtrip_set as rs

        from midimix.transcribe import load_clip

        tempos = tuple(float(t) for t in np.round(np.linspace(70, 140, 10)))
        folder = cache / "roundtrip-set10"
        pieces = rs.build_set(folder, tempos_bpm=tempos)
        self.score_notes = rs.score_notes
        self.clips = []
        for piece in pieces:
            path = folder / f"{piece.id}_aligned.npz"
            if not path.exists():
                acts = run_model(load_clip(piece.clip_path)[0], load_model())
                np.savez_compressed(path, note=acts["note"], onset=acts["onset"])
            with np.load(path) as saved:
                acts = {"note": saved["note"], "onset": saved["onset"]}
            self.clips.append((rs.known_notes(piece.midi_path), acts))

    def score(self, config: TranscribeConfig) -> dict[str, float]:
        rows = []
        for reference, acts in self.clips:
            notes = activations_to_notes(acts, config)
            est = (np.array([[s, max(e, s + 1e-3)] for s, e, _, _ in notes]).reshape(-1, 2),
                   np.array([440.0 * 2 ** ((p - 69) / 12) for _, _, p, _ in notes]))  # fmt: skip
            rows.append(self.score_notes(reference, est))
        return mean(rows)


def sweep(clips: list[Clip], args: argparse.Namespace, rt: RoundTrip) -> tuple[str, Decoder]:
    tuning = [c for c in clips if c.part == "tuning"]
    degraded = [c for c in tuning if c.condition in DEGRADED]
    clean = [c for c in tuning if c.condition == "clean"]
    settings: list[TranscribeConfig] = []
    for onset, frame in itertools.product(args.onsets, args.frames):
        settings.append(TranscribeConfig(onset_threshold=onset, frame_threshold=frame))
    for ratio, frame in itertools.product(args.ratios, args.frames):
        settings.append(TranscribeConfig(onset_ratio=ratio, frame_threshold=frame))
    results = []
    for config in settings:
        decoder = fixed(config)
        on_degraded = mean([c.score(decoder) for c in degraded])
        on_clean = mean([c.score(decoder) for c in clean])
        results.append((config, on_degraded, on_clean, rt.score(config)))
    results.sort(key=lambda r: -r[1]["onset_f1"])
    earlier = rt.score(EARLIER)["onset_f1"]
    print(
        f"sweep: {len(settings)} settings on the tuning part ({len(degraded)} degraded clips, "
        f"{len(clean)} clean) and the clean round-trip set (earlier defaults: onset F1 "
        f"{earlier:.3f}); degraded mean | tuning part clean | round-trip, best onset F1 first:"
    )

    def show(rows: list[Any]) -> None:
        for config, on_degraded, on_clean, on_rt in rows[: args.show]:
            print(
                f"  {describe(config):22} {cell(on_degraded)} | {cell(on_clean)} | "
                f"{on_rt['onset_f1']:.3f} / {on_rt['recall']:.3f} / {on_rt['offset_f1']:.3f}"
            )

    show(results)
    clean_ok = [r for r in results if r[3]["onset_f1"] >= earlier]
    both = [r for r in clean_ok if r[1]["recall"] >= args.min_recall]
    print(
        f"  {sum(r[1]['recall'] >= args.min_recall for r in results)} settings with degraded "
        f"recall >= {args.min_recall}, {len(clean_ok)} no worse on the round-trip set, "
        f"{len(both)} both; best of those no worse on the round-trip set:"
    )
    show(clean_ok)
    best = (both or clean_ok or results)[0][0]
    return describe(best), fixed(best)


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lofi", type=int, default=8)
    p.add_argument("--chorales", type=int, default=8)
    p.add_argument("--cache", type=Path, default=Path("/tmp/midimix-degraded-notes"))
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads")
    p.add_argument("--sweep", action="store_true", help="tune on one part, score the other")
    p.add_argument("--onsets", type=floats, default=floats("0.4,0.5,0.55,0.6,0.65,0.7,0.75"))
    p.add_argument("--frames", type=floats, default=floats("0.2,0.25,0.3,0.35"))
    p.add_argument("--ratios", type=floats, default=floats("0.7,0.72,0.75,0.78,0.8,0.85"))
    p.add_argument("--min-recall", type=float, default=0.75)
    p.add_argument("--show", type=int, default=10)
    p.add_argument("--roundtrip", action="store_true", help="the clean round-trip set too")
    p.add_argument("--hpss", action="store_true", help="the lo-fi pieces with --hpss too")
    args = p.parse_args()
    load_model(args.threads)
    clips = load_clips(args.lofi, args.chorales, args.cache)
    n_pieces = len(clips) // len(ts.CONDITIONS)
    print(f"{n_pieces} pieces ({args.lofi} lo-fi with drums, {args.chorales} chorales), 30 s each")
    chosen = sweep(clips, args, RoundTrip(args.cache)) if args.sweep else None
    for part in ("held-out", "tuning"):
        table([c for c in clips if c.part == part], columns(chosen), f"{part} part")
    if args.hpss:
        hpss_columns: dict[str, tuple[Decoder, str]] = {
            "--hpss 0.5/0.3 (earlier)": (fixed(EARLIER_HPSS), "hpss"),
            f"--hpss now ({describe(MIDIMIX_HPSS)}, at most 0.5)": (fixed(MIDIMIX_HPSS), "hpss"),
            f"no HPSS, defaults ({describe(MIDIMIX)})": (fixed(MIDIMIX), "aligned"),
        }
        table([c for c in clips if c.piece.kind == "lofi"], hpss_columns, "lo-fi pieces, --hpss")
        for part in ("held-out", "tuning"):
            print(f"{part} part, --hpss on the pieces with drums (lo-fi), defaults on the rest:")
            for condition in ts.CONDITIONS:
                chosen = [c for c in clips if c.part == part and c.condition == condition]
                rows = [c.score(fixed(MIDIMIX_HPSS), "hpss") if c.piece.drums
                        else c.score(fixed(MIDIMIX)) for c in chosen]  # fmt: skip
                print(f"  {condition:9} {cell(mean(rows))}")
    if args.roundtrip or args.sweep:
        rt = RoundTrip(args.cache)
        print("clean round-trip set (20 clips): precision / recall / onset F1 / F1 with offsets")
        for config in (EARLIER, MIDIMIX):
            m = rt.score(config)
            print(f"  {describe(config):22} " + " / ".join(f"{m[k]:.3f}" for k in
                  ("precision", "recall", "onset_f1", "offset_f1")))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
