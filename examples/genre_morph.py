"""Genre morph: a piece that starts classical and ends lo-fi, the weights moving bar by bar.

python examples/genre_morph.py --bars 16
python examples/genre_morph.py --schedule "classical@0,lofi@0.5,classical@1"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from midimix import GenerateConfig, generate, render_piece


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", type=Path, default=None, help="a checkpoint folder (default: the embedded one)"
    )
    parser.add_argument("--out-dir", type=Path, default=Path("out/morph"))
    parser.add_argument("--bars", type=int, default=16, help="length of the piece in bars")
    # "A->B" moves linearly from all-A at the first bar to all-B at the last; keyframes
    # "genre@place" (place 0..1 along the piece) draw any other path.
    parser.add_argument("--schedule", default="classical->lofi")
    parser.add_argument("--no-render", action="store_true", help="write MIDI only")
    args = parser.parse_args()

    config = GenerateConfig(
        schedule=args.schedule, bars=args.bars, seed=0, render=not args.no_render
    )
    render_audio = None if args.no_render else render_piece  # audio: the render stage
    (piece,) = generate(args.model, args.out_dir, config, render_audio=render_audio)
    print(piece.text())

    # The provenance record keeps the weights the sampler used in every bar.
    record = json.loads(piece.provenance_path.read_text())
    genres = record["genres_used"]
    for bar, row in enumerate(record["weights_per_bar"], start=1):
        print(
            f"bar {bar:3d}: " + ", ".join(f"{g} {w:.2f}" for g, w in zip(genres, row, strict=True))
        )


if __name__ == "__main__":
    main()
