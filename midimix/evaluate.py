"""Evaluate: measure generated MIDI against reference MIDI of each genre: features, distances,
a genre classifier's P(genre), plots and a Markdown/JSON report.

    python -m midimix.evaluate --generated mix=out/ --reference lofi=data/corpus/lofi \\
        --reference classical=data/corpus/classical --out-dir out/report
    python -m midimix.evaluate sweep --model runs/x/best --reference lofi=... \\
        --reference classical=... --pieces 20 --weights 0,0.25,0.5,0.75,1 --methods logits

This module is the command line; the figures are computed in midimix.measure (sets of
pieces), midimix.features (one piece) and midimix.classifier (P(genre)), the plots and
report.md drawn by midimix.report, and `sweep` (which needs generation and torch) lives in
midimix.sweep. Everything goes to --out-dir: report.md, report.json (every figure),
classifier.json, evaluate.config.json (the settings, for --config) and PNG plots.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from midimix.classifier import GenreClassifier
from midimix.config import OUT_DIR
from midimix.errors import cli_errors
from midimix.features import extract_features, feature_table
from midimix.fidelity import describe
from midimix.measure import (
    EvaluateConfig,
    add_sets_arguments,
    distances,
    evaluate,
    generated_sets,
    mean_ci95,
    midi_files,
    overlap,
    reference_sets,
)
from midimix.options import add_config_arguments, config_from_args, stage_parser

# The stage's library, importable from here as before its parts got their own modules.
__all__ = [
    "EvaluateConfig",
    "GenreClassifier",
    "build_parser",
    "distances",
    "evaluate",
    "extract_features",
    "feature_table",
    "main",
    "mean_ci95",
    "midi_files",
    "overlap",
]


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser("evaluate", __doc__)
    parser.epilog = "midimix evaluate sweep --help: the genre-weight sweep of a model."
    parser.add_argument(
        "--generated",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="a set of generated MIDI (folder or file), LABEL names it in the report; "
        "repeat for several sets",
    )
    add_sets_arguments(parser, OUT_DIR / "report")
    add_config_arguments(parser, EvaluateConfig)
    return parser


def summary_line(report: dict[str, Any], out_dir: Path) -> str:
    parts = [f"classifier CV accuracy {report['classifier']['cv_accuracy']:.3f}"]
    for label, g in report.get("generated", {}).items():
        probs = ", ".join(f"P({k})={v['mean']:.2f}" for k, v in g["p_genre"].items())
        parts.append(f"{label}: {g['pieces']} pieces, {probs}")
    lines = [f"evaluate: {'; '.join(parts)}; report in {out_dir / 'report.md'}"]
    lines += [
        f"  {describe(label, f['genre'], f)}" for label, f in report.get("fidelity", {}).items()
    ]
    return "\n".join(lines)


@cli_errors
def main(argv: list[str] | None = None) -> int:
    """`midimix evaluate ...`, or `midimix evaluate sweep ...` (midimix.sweep's command)."""
    args_list = sys.argv[1:] if argv is None else list(argv)
    if args_list[:1] == ["sweep"]:
        from midimix.sweep import main as sweep_main

        return sweep_main(args_list[1:])
    args = build_parser().parse_args(args_list)
    config = config_from_args(EvaluateConfig, args)
    report = evaluate(
        generated_sets(args.generated), reference_sets(args.reference), args.out_dir, config
    )
    print(summary_line(report, args.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
