"""What a vocabulary keeps of each genre: pieces encoded and decoded by tokenizers of several
time grids and velocity bins, against the same genre's pieces as they are.

    python benchmarks/bench_vocabulary.py --reference-dir data/default-build/reference \
        --splits data/default-build/tokens/splits.json [--split train] [--pieces 150]

A model can at best write what its tokens say, so the distance of round-tripped pieces from
the pieces as they are is a floor under its fidelity distance (`bench_fidelity.py`, which
prints it for the model's own tokenizer). Per vocabulary and genre: the mean standardised
effect size between a random half of the pieces after the round trip and the other half as
they are, over the same distance between the two halves as they are (median of 5 splits), its
largest features, tokens per note and the vocabulary size. The pieces come from the token
data set's training split by default, so that a vocabulary is not chosen on the held-out
pieces the fidelity is scored on.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

from bench_fidelity import (
    feature_distances,
    held_out,
    largest_effects,
    round_trip,
    round_trip_null,
    same_size_null,
)

from midimix.tokenizer import GenreTokenizer, TokenizeConfig

VOCABULARIES = [  # (positions per beat, velocity bins); the first is the default
    (4, 8),
    (8, 8),
    (12, 8),
    (24, 8),
    (4, 32),
    (24, 32),
]


def pieces_of(reference_dir: Path, splits: Path, split: str, limit: int) -> dict[str, list[Path]]:
    """Up to `limit` pieces per genre of the split, drawn at random (seed 0): the split is in
    name order, and its first pieces would be one composer's."""
    out = held_out(reference_dir, splits, split)
    rng = random.Random(0)
    return {g: sorted(rng.sample(paths, min(limit, len(paths)))) for g, paths in out.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference-dir", type=Path, required=True, help="<genre>/*.mid, drum-free")
    p.add_argument("--splits", type=Path, required=True, help="the token data set's splits.json")
    p.add_argument("--split", default="train", choices=("train", "validation"))
    p.add_argument("--pieces", type=int, default=150, help="pieces per genre, at most")
    args = p.parse_args()
    pieces = pieces_of(args.reference_dir, args.splits, args.split, args.pieces)
    genres = sorted(pieces)
    with tempfile.TemporaryDirectory() as tmp:
        for grid, velocities in VOCABULARIES:
            config = TokenizeConfig(positions_per_beat=grid, num_velocities=velocities)
            tokenizer = GenreTokenizer.build(genres, config)
            for genre in genres:
                ref = pieces[genre]
                decoded = round_trip(ref, tokenizer, Path(tmp) / f"{grid}-{velocities}" / genre)
                ids = [tokenizer.encode(path) for path in ref]
                per_note = sum(map(len, ids)) / max(1, sum(map(tokenizer.note_count, ids)))
                # the same five pairs of halves for both figures (seed 0)
                floor = round_trip_null(ref, decoded, seed=0)
                null = same_size_null(ref, len(ref) // 2, seed=0)
                top = largest_effects(feature_distances(decoded, ref), 3)
                print(f"grid {grid:2d}/beat, {velocities:2d} velocities, {genre:9s}: round trip "
                      f"{floor:.3f} vs {null:.3f} half-to-half ({floor / null:.2f}x); "
                      f"{per_note:.2f} tokens/note, vocabulary {tokenizer.vocab_size}; "
                      "moved most: " + ", ".join(f"{k} {v:.2f}" for k, v in top.items()),
                      flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
