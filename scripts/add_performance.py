"""Store the genres' performance (`midimix.performance`) in a model folder trained before
token folders held it.

    .venv/bin/python scripts/add_performance.py --model-dir midimix/default_model \
        --tokens-dir data/default-build/tokens

Fits it from the training split of the token data set the model was trained on (its
vocabulary must be the model's; the MIDI files its manifest names must still be there), writes
the token folder's performance.json as `midimix tokenize` now does, and stores the same under
"performance" in the model folder's midimix.json, as `midimix train` now does.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from midimix import performance
from midimix.manifest import Item, Manifest, atomic_write_text
from midimix.tokenize import MANIFEST_FILE, SPLITS_FILE, fit_performance
from midimix.tokenizer import GenreTokenizer, same_vocabulary


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--tokens-dir", type=Path, required=True)
    args = p.parse_args()
    if not same_vocabulary(args.model_dir, args.tokens_dir):
        sys.exit("error: the token data set's vocabulary is not the model's; give its tokens")
    tokenizer = GenreTokenizer.load(args.tokens_dir)
    records = Manifest(args.tokens_dir / MANIFEST_FILE).records()
    train = json.loads((args.tokens_dir / SPLITS_FILE).read_text())["train"]
    items = [
        Item(i, records[i]["genre"], Path(records[i]["source"]), Path())
        for i in train
        if i in records
    ]
    missing = [item.source for item in items if not item.source.is_file()]
    if missing:
        sys.exit(f"error: {len(missing)} training MIDI files are gone, e.g. {missing[0]}")
    fitted = performance.to_dict(fit_performance(items, tokenizer))
    text = json.dumps(fitted, indent=2, sort_keys=True) + "\n"
    atomic_write_text(args.tokens_dir / performance.FILE_NAME, text)
    meta_path = args.model_dir / "midimix.json"
    meta = json.loads(meta_path.read_text())
    meta[performance.META_KEY] = fitted
    atomic_write_text(meta_path, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    for genre, values in performance.from_dict(fitted).items():
        print(f"{genre}: {performance.describe(values)}")
    print(f"wrote {meta_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
