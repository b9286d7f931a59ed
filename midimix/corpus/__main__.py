"""corpus: build the two-genre MIDI corpus of the default model offline, from classical
scores in music21's corpus (cut into ~30 s segments) and lo-fi pieces made by midimix's own
rules.

    python -m midimix.corpus --lofi 600      (docs/corpus.md)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from midimix.corpus import CLASSICAL, CORPUS_DIR, LOFI, CorpusConfig, build_corpus
from midimix.errors import cli_errors
from midimix.options import add_config_arguments, config_from_args, stage_parser


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser("corpus", __doc__)
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=CORPUS_DIR,
        metavar="PATH",
        help="output: classical/ and lofi/ folders of MIDI files (default: %(default)s)",
    )
    parser.add_argument(
        "--quiet",
        dest="progress",
        action="store_false",
        default=argparse.SUPPRESS,
        help="no progress bars (the same as --no-progress)",
    )
    add_config_arguments(parser, CorpusConfig)
    return parser


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(CorpusConfig, args)
    summary = build_corpus(args.out_dir, config)
    print(summary.text())
    counts = {g: len(list((args.out_dir / g).glob("*.mid"))) for g in (CLASSICAL, LOFI)}
    print(
        f"corpus: {counts[CLASSICAL]} classical segments and {counts[LOFI]} lo-fi pieces "
        f"in {args.out_dir}"
    )
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
