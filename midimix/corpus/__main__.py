"""`python -m midimix.corpus`: build the offline two-genre MIDI corpus (see docs/corpus.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from midimix.errors import cli_errors


def build_parser() -> argparse.ArgumentParser:
    from midimix.corpus import CORPUS_DIR, CorpusConfig

    d = CorpusConfig.__dataclass_fields__
    parser = argparse.ArgumentParser(
        prog="python -m midimix.corpus",
        description="Build a two-genre MIDI corpus offline: classical scores from music21's "
        "corpus (cut into ~30 s segments) and lo-fi pieces made by midimix's own rules.",
    )
    parser.add_argument("--out-dir", type=Path, default=CORPUS_DIR, help="default: %(default)s")
    parser.add_argument(
        "--lofi", type=int, default=d["lofi"].default, help="lo-fi pieces (default %(default)s)"
    )
    parser.add_argument(
        "--classical",
        type=int,
        default=-1,
        help="most music21 scores to convert; 0: none, -1: all (default)",
    )
    parser.add_argument(
        "--composers",
        help="comma-separated music21 corpus folders (default: all art music but palestrina, "
        "whose encodings' licence restricts derived files)",
    )
    parser.add_argument(
        "--scores", type=Path, nargs="+", help="score files to use instead of music21's corpus"
    )
    parser.add_argument("--seed", type=int, default=0, help="lo-fi seed (default %(default)s)")
    parser.add_argument("--workers", type=int, default=d["workers"].default)
    parser.add_argument("--target-seconds", type=float, default=d["target_seconds"].default)
    parser.add_argument("--min-bars", type=int, default=d["min_bars"].default)
    parser.add_argument("--max-bars", type=int, default=d["max_bars"].default)
    parser.add_argument(
        "--no-humanize", action="store_true", help="classical: keep the plain dynamic levels"
    )
    parser.add_argument(
        "--classical-program",
        type=int,
        default=d["classical_program"].default,
        help="GM program for classical parts; -1 keeps the score's (default %(default)s: piano)",
    )
    parser.add_argument("--shard", help="K/N: run this copy's share of the items")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from midimix.corpus import CLASSICAL, LOFI, CorpusConfig, build_corpus

    config = CorpusConfig(
        lofi=args.lofi,
        classical=None if args.classical < 0 else args.classical,
        composers=tuple(c.strip() for c in args.composers.split(",")) if args.composers else None,
        classical_sources=tuple(args.scores) if args.scores else None,
        seed=args.seed,
        workers=args.workers,
        target_seconds=args.target_seconds,
        min_bars=args.min_bars,
        max_bars=args.max_bars,
        humanize=not args.no_humanize,
        classical_program=None if args.classical_program < 0 else args.classical_program,
        shard=args.shard,
        progress=not args.quiet,
    )
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
