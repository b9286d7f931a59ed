"""Store the genre statistics in a model folder trained before training stored them.

    .venv/bin/python scripts/add_genre_stats.py --model-dir midimix/default_model \
        --tokens-dir data/default-build/tokens

Reads the train split of the token data set the model was trained on (its vocabulary must be
the model's), computes `midimix.genre_stats` per genre and writes them under "genre_stats" in
the model folder's midimix.json, as `midimix train` now does by itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from midimix.genre_stats import compute_stats, stats_to_dict
from midimix.manifest import atomic_write_text
from midimix.tokenize import load_sequences
from midimix.tokenizer import GenreTokenizer


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--tokens-dir", type=Path, required=True)
    args = p.parse_args()
    model_tok = GenreTokenizer.load(args.model_dir)
    data_tok = GenreTokenizer.load(args.tokens_dir)
    base = [model_tok.base_tokens(i) for i in range(model_tok.vocab_size)]
    if base != [data_tok.base_tokens(i) for i in range(data_tok.vocab_size)]:
        sys.exit("error: the token data set's vocabulary is not the model's; give its tokens")
    stats = compute_stats(
        load_sequences(args.tokens_dir, "train"),
        base,
        load_sequences(args.tokens_dir, "train", copies=False),
    )
    meta_path = args.model_dir / "midimix.json"
    meta = json.loads(meta_path.read_text())
    meta["genre_stats"] = stats_to_dict(stats)
    atomic_write_text(meta_path, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    for genre, s in stats.items():
        print(
            f"{genre}: {s.pieces} pieces, tempo {s.tempo_bpm_p5:g}-{s.tempo_bpm_p95:g} BPM "
            f"(5th-95th percentile), notes per onset p99 {s.notes_per_onset_p99:g}, "
            f"duplicates {s.duplicate_share:.2%}, time signatures {s.time_signatures}, "
            f"keys {s.keys}"
        )
    print(f"wrote {meta_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
