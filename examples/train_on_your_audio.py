"""Train on your own music: two folders in, a trained model, a mixed piece and a report out.

    python examples/train_on_your_audio.py ~/music/lofi ~/music/classical --data-dir data
    python examples/train_on_your_audio.py LOFI_DIR CLASSICAL_DIR --tiny    # a quick look

Each folder may hold audio (wav, flac, mp3, ...; any rate or channel count), MIDI or both.
Stop it at any time (Ctrl-C): run the same command again and it continues where it stopped.
The exit status is 1 when any item failed (the summary lists them with their reasons), as
for `midimix pipeline`, and 2, with one line, when the run cannot go on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from midimix.errors import cli_errors
from midimix.pipeline import PipelineConfig, run


@cli_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lofi", type=Path, help="folder of lo-fi audio and/or MIDI")
    parser.add_argument("classical", type=Path, help="folder of classical audio and/or MIDI")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument(
        "--tiny", action="store_true", help="a tiny model and a few steps: minutes, not hours"
    )
    args = parser.parse_args(argv)

    # The CPU preset ("small") with the training stage's default length; --tiny trades
    # quality for time so that the whole run takes a minute or two.
    config = PipelineConfig(data_dir=args.data_dir, genre_mix={"lofi": 0.7, "classical": 0.3})
    if args.tiny:
        config = PipelineConfig(
            data_dir=args.data_dir,
            genre_mix={"lofi": 0.7, "classical": 0.3},
            preset="tiny",
            max_steps=8,
            batch_size=4,
            eval_every=4,
            min_pieces_per_genre=2,
            bars=4,
            plots=False,
        )
    result = run({"lofi": args.lofi, "classical": args.classical}, config)
    # The summary: items per stage, failures with reasons, validation loss per genre,
    # genre sensitivity, and where the model, the piece and the report are.
    print(result.text())
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
