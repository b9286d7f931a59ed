"""Quickstart: a piece that is 70% lo-fi and 30% classical, from the model shipped inside
midimix, rendered to audio and saved.

    python examples/quickstart.py                  # writes out/quickstart/*.mid, .wav, .json
    python examples/quickstart.py --model runs/model/best --bars 8
"""

from __future__ import annotations

import argparse
from pathlib import Path

from midimix import GenerateConfig, generate, render_piece


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", type=Path, default=None, help="a checkpoint folder (default: the embedded one)"
    )
    parser.add_argument("--out-dir", type=Path, default=Path("out/quickstart"))
    parser.add_argument("--bars", type=int, default=16, help="length of the piece in bars")
    args = parser.parse_args()

    # The mix is a weight per genre; the weights are normalised, so 7/3 would do the same.
    config = GenerateConfig(genre_mix={"lofi": 0.7, "classical": 0.3}, bars=args.bars, seed=0)
    # model_dir=None picks midimix/default_model/; render_piece is the render stage
    # (FluidSynth and the lo-fi effects chain), which writes the audio beside the MIDI file.
    (piece,) = generate(args.model, args.out_dir, config, render_audio=render_piece)
    print(piece.text())
    print(
        f"MIDI: {piece.midi_path}\naudio: {piece.audio_path}\nprovenance: {piece.provenance_path}"
    )


if __name__ == "__main__":
    main()
