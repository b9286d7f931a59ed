"""Do generated pieces hold what their genres hold? Duplicates, notes per onset, tempo, and the
feature distance to held-out pieces, for a model (the embedded one by default).

    python benchmarks/bench_fidelity.py --reference-dir data/reference \
        --splits data/default-build/tokens/splits.json [--pieces 20] [--bars 4] [--raw]

1. Clean notes: pieces over mixed settings (both methods, single genres, mixes, a schedule,
   temperatures 0.7-1.3, top-k, top-p): duplicate notes (a pitch started twice on one onset)
   and the largest stack per onset against the 99th percentile of the genres in the mix.
2. Tempo: the share of single-genre pieces whose tempo lies inside their genre's training
   range (5th-95th percentile, on the tokenizer's tempo grid).
3. Fidelity: per genre, the mean standardised effect size over the evaluation's features
   between single-genre pieces and the genre's held-out (validation) pieces, set against the
   same distance between two random halves of the held-out pieces (the target is <= 2x),
   with the five features that hold most of it. Also, per genre, the same distance for the
   pieces made at the default settings alone (logits, temperature 1, top-p 0.95: what a user
   hears), set against held-out subsets of the same size (a mean effect size grows as sets
   shrink, so the null is drawn at the generated set's size: k held-out pieces vs the rest).
4. What the vocabulary keeps: half of the held-out pieces encoded and decoded by the model's
   own tokenizer, against the other half as they are (the same halves as the null). A model
   can at best write what its tokens say, so this is the floor under item 3 for this
   vocabulary (`benchmarks/bench_vocabulary.py` compares vocabularies).
`--raw` runs the same without the genre limits, the calibration map, the genre keys and the
performance, for comparison; `--no-genre-keys` without the genre keys only (pieces keep the
key they were sampled in); `--no-performance` without the performance only (pieces stay
straight on the grid, at the bins' velocities). Duplicates and stacks are counted on the
grid (a played chord spreads over a few ticks), with the performance or without.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from midimix import GenerateConfig, generate, performance
from midimix.features import feature_table
from midimix.fidelity import SPLITS, TEMPO_TOLERANCE, limits_from_stats, null_distance
from midimix.generate import resolve_model_dir
from midimix.genre_stats import load_stats, midi_facts, mix_onset_cap
from midimix.measure import distances, mean_effect_size, summarize_distances
from midimix.tokenizer import GenreTokenizer

MIXES: list[dict[str, float]] = [
    {"lofi": 1.0},
    {"classical": 1.0},
    {"lofi": 0.5, "classical": 0.5},
    {"lofi": 0.7, "classical": 0.3},
]
SAMPLING = [  # (temperature, top_k, top_p)
    (0.7, 0, 0.95),
    (1.0, 0, 0.95),
    (1.3, 0, 0.95),
    (0.8, 8, 0.9),
    (1.0, 0, 1.0),
]


def settings(pieces: int) -> list[dict]:
    out = []
    for method in ("logits", "embedding"):
        for mix in MIXES:
            for temperature, top_k, top_p in SAMPLING[: 3 if method == "embedding" else 5]:
                out.append(dict(genre_mix=mix, mix_method=method, temperature=temperature,
                                top_k=top_k, top_p=top_p, num_samples=pieces))  # fmt: skip
    out.append(dict(schedule="classical->lofi", num_samples=pieces))
    return out


def held_out(reference_dir: Path, splits: Path, split: str = "validation") -> dict[str, list[Path]]:
    """The reference pieces of one split of the token data set, per genre."""
    ids = json.loads(splits.read_text())[split]
    out: dict[str, list[Path]] = {}
    for item in ids:
        genre, _, name = item.partition("/")
        path = reference_dir / genre / f"{name}.mid"
        if path.is_file():
            out.setdefault(genre, []).append(path)
    return out


def table_of(paths: list[Path]) -> np.ndarray:
    """The feature table of a set of pieces, a row per piece (every piece must be readable:
    the nulls below split sets by row)."""
    _, table, skipped = feature_table("set", paths)
    if skipped:
        sys.exit(f"error: {len(skipped)} pieces could not be read, e.g. {skipped[0]}")
    return table


def effect(a: list[Path], b: list[Path]) -> float:
    return mean_effect_size(table_of(a), table_of(b))


def feature_distances(a: list[Path], b: list[Path]) -> dict[str, dict[str, float | None]]:
    return distances(table_of(a), table_of(b))


def largest_effects(per_feature: dict[str, dict[str, float | None]], n: int = 5) -> dict:
    """The n features that hold most of a distance: {feature: effect size}, largest first."""
    sizes = {k: v["effect_size"] for k, v in per_feature.items() if v["effect_size"] is not None}
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1])[:n])


def is_default(setting: dict) -> bool:
    """The settings `generate` uses unless told (logits mix, temperature 1, top-p 0.95)."""
    return setting.get("mix_method") == "logits" and (
        setting.get("temperature"),
        setting.get("top_k"),
        setting.get("top_p"),
    ) == (1.0, 0, 0.95)


def same_size_null(ref: list[Path], k: int, seed: int) -> float:
    """Median distance between k random held-out pieces and the other held-out pieces
    (`midimix.fidelity.null_distance`, what `midimix evaluate` reports)."""
    null = null_distance(table_of(ref), k, seed, mean_effect_size)
    if null is None:
        sys.exit(f"error: {len(ref)} held-out pieces cannot be split into {k} and the rest")
    return null


def round_trip(paths: list[Path], tokenizer: GenreTokenizer, out: Path) -> list[Path]:
    """Each piece encoded and decoded by the tokenizer (what the model's tokens can say)."""
    out.mkdir(parents=True, exist_ok=True)
    return [tokenizer.decode_to_file(tokenizer.encode(p), out / p.name) for p in paths]


def perform_all(decoded: list[Path], played: dict, genre: str) -> list[Path]:
    """Round-tripped pieces played with their genre's performance (beside them, .played.mid)."""
    from midimix.midifile import load_score

    out = []
    for n, path in enumerate(decoded):
        score = performance.perform(load_score(path), played, [{genre: 1.0}], seed=n)
        target = path.with_suffix(".played.mid")
        score.dump_midi(str(target))
        out.append(target)
    return out


def round_trip_null(ref: list[Path], decoded: list[Path], seed: int) -> float:
    """Median distance between a random half of the held-out pieces after the tokenizer's
    round trip and the other half as they are (the halves of `same_size_null`)."""
    rng = random.Random(seed)
    ref_table, decoded_table = table_of(ref), table_of(decoded)
    values = []
    k = len(ref) // 2
    for _ in range(SPLITS):
        order = rng.sample(range(len(ref)), len(ref))
        values.append(mean_effect_size(decoded_table[order[:k]], ref_table[order[k:]]))
    return statistics.median(values)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--reference-dir", type=Path, required=True, help="<genre>/*.mid, drum-free")
    p.add_argument("--splits", type=Path, required=True, help="the token data set's splits.json")
    p.add_argument("--pieces", type=int, default=20, help="pieces per setting")
    p.add_argument("--bars", type=int, default=4)
    p.add_argument("--raw", action="store_true", help="no genre limits, calibration or keys")
    p.add_argument("--no-genre-keys", action="store_true", help="pieces keep their sampled key")
    p.add_argument("--no-performance", action="store_true", help="pieces stay on the grid")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--seed", type=int, default=0, help="another set of pieces (how much the "
                   "figures move from set to set)")  # fmt: skip
    args = p.parse_args()
    model = resolve_model_dir(args.model)
    stats = load_stats(model)
    if stats is None:
        sys.exit(f"error: {model} stores no genre statistics (scripts/add_genre_stats.py)")
    tokenizer = GenreTokenizer.load(model)
    steps = tokenizer.steps_per_beat  # onsets counted on the model's grid
    start = time.perf_counter()
    rows = []
    grid = settings(args.pieces)
    with tempfile.TemporaryDirectory() as tmp:
        for n, setting in enumerate(grid):
            seed = args.seed * len(grid) + n  # --seed 0: the settings' own seeds 0, 1, ...
            config = GenerateConfig(**setting, bars=args.bars, seed=seed, render=False,
                                    progress=False, genre_limits=not args.raw,
                                    calibrated=not args.raw,
                                    genre_keys=not (args.raw or args.no_genre_keys),
                                    performance=not (args.raw or args.no_performance),
                                    name=f"s{n}")  # fmt: skip
            for piece in generate(model, Path(tmp), config):
                facts = midi_facts(piece.midi_path, steps)
                weights = setting.get("genre_mix") or {"lofi": 1.0, "classical": 1.0}
                rows.append({
                    "setting": n, "mix": weights, "notes": facts.notes,
                    "duplicates": facts.duplicates,
                    "max_stack": max(facts.notes_per_onset, default=0),
                    "cap": mix_onset_cap(stats, weights), "tempos": facts.tempos_bpm,
                    "path": str(piece.midi_path),
                })  # fmt: skip
        single = {g: [r for r in rows if r["mix"] == {g: 1.0}] for g in stats}
        tempo_ok = {}
        for genre, pieces in single.items():
            limits = limits_from_stats(stats[genre])
            low, high = limits.tempo_low / TEMPO_TOLERANCE, limits.tempo_high * TEMPO_TOLERANCE
            inside = [
                bool(r["tempos"]) and all(low <= t <= high for t in r["tempos"]) for r in pieces
            ]
            tempo_ok[genre] = sum(inside) / max(len(inside), 1)
        reference = held_out(args.reference_dir, args.splits)
        meta = json.loads((model / "midimix.json").read_text())
        played = {} if args.raw or args.no_performance else performance.from_meta(meta)
        fidelity = {}
        for genre, pieces in single.items():
            ref = reference.get(genre, [])
            decoded = round_trip(ref, tokenizer, Path(tmp) / "round-trip" / genre)
            generated = [Path(r["path"]) for r in pieces]
            per_feature = feature_distances(generated, ref)
            default = [Path(r["path"]) for r in pieces if is_default(grid[r["setting"]])]
            fidelity[genre] = {
                "generated_vs_held_out": summarize_distances(per_feature)["mean_effect_size"],
                "half_vs_half": same_size_null(ref, len(ref) // 2, seed=0),
                "largest_effects": largest_effects(per_feature),
                "round_trip_vs_held_out": round_trip_null(ref, decoded, seed=0),
                "round_trip_performed_vs_held_out": None
                if not played
                else round_trip_null(ref, perform_all(decoded, played, genre), seed=0),
                "default_settings": {
                    "pieces": len(default),
                    "generated_vs_held_out": effect(default, ref),
                    "same_size_null": same_size_null(ref, len(default), seed=1),
                },
            }
    figures = {
        "model": str(model),
        "raw": args.raw,
        "performance": bool(played),
        "pieces": len(rows),
        "bars": args.bars,
        "seed": args.seed,
        "pieces_with_duplicates": sum(r["duplicates"] > 0 for r in rows),
        "duplicate_notes": sum(r["duplicates"] for r in rows),
        "notes": sum(r["notes"] for r in rows),
        "largest_stack": max(r["max_stack"] for r in rows),
        "pieces_over_cap": sum(r["max_stack"] > r["cap"] for r in rows),
        "single_genre_tempo_in_range": tempo_ok,
        "fidelity": fidelity,
        "seconds": round(time.perf_counter() - start, 1),
    }
    what = "raw: no limits, no calibration" if args.raw else "defaults"
    if args.no_performance and not args.raw:
        what += ", no performance"
    print(f"model {model} ({what})")
    print(f"  {len(rows)} pieces of {args.bars} bars over {len(grid)} settings")
    print(f"  duplicate notes: {figures['duplicate_notes']} of {figures['notes']} notes, "
          f"in {figures['pieces_with_duplicates']} pieces")  # fmt: skip
    print(f"  largest stack per onset: {figures['largest_stack']}; pieces over their genres' "
          f"99th percentile: {figures['pieces_over_cap']}")  # fmt: skip
    for genre, share in tempo_ok.items():
        s, f = stats[genre], fidelity[genre]
        ratio = f["generated_vs_held_out"] / f["half_vs_half"]
        print(f"  {genre}: tempo inside {s.tempo_bpm_p5:g}-{s.tempo_bpm_p95:g} BPM in "
              f"{share:.0%} of {len(single[genre])} pieces; feature distance to held-out "
              f"{f['generated_vs_held_out']:.2f} vs half-to-half {f['half_vs_half']:.2f} "
              f"({ratio:.1f}x)")  # fmt: skip
        d = f["default_settings"]
        print(f"    default settings only ({d['pieces']} pieces): {d['generated_vs_held_out']:.2f} "
              f"vs {d['same_size_null']:.2f} for {d['pieces']} held-out pieces against the rest "
              f"({d['generated_vs_held_out'] / d['same_size_null']:.1f}x)")  # fmt: skip
        floor = f["round_trip_vs_held_out"]
        print(f"    the vocabulary's own round trip (half the held-out pieces through the "
              f"tokenizer, against the other half): {floor:.2f} "
              f"({floor / f['half_vs_half']:.1f}x)")  # fmt: skip
        if f["round_trip_performed_vs_held_out"] is not None:
            floor = f["round_trip_performed_vs_held_out"]
            print(f"    the same round trip, then played with the genre's performance: "
                  f"{floor:.2f} ({floor / f['half_vs_half']:.1f}x)")  # fmt: skip
        print("    largest effect sizes: " + ", ".join(
            f"{name} {size:.2f}" for name, size in f["largest_effects"].items()))  # fmt: skip
    print(f"  {figures['seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
