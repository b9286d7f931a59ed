"""`python -m midimix.generate`: the generate stage composed with the render stage.

The stage (`midimix.generate`) writes MIDI and provenance and never imports a later stage; this
command line passes it the render stage as its audio callback, so each piece also gets
<stem>.wav (instruments and lo-fi depth following the mix). From Python:

    from midimix import GenerateConfig, generate, render_piece

    generate(config=GenerateConfig(genre_mix={"lofi": 0.7}), render_audio=render_piece)
"""

from __future__ import annotations

import sys

from midimix.errors import DependencyError, cli_errors
from midimix.generate import GenerateConfig, RenderAudio, build_parser, generate
from midimix.options import config_from_args


def audio_renderer() -> RenderAudio:
    """The render stage as generate's `render_audio` callback: <stem>.wav beside <stem>.mid,
    rendered with the mix's weights and the run's seed. Raises DependencyError, naming what to
    install, when the render stage cannot be imported."""
    try:
        from midimix.render import render_piece
    except ImportError as error:
        missing = error.name or "one of its dependencies"
        raise DependencyError(
            f"writing audio needs the render stage (midimix.render), which could not be "
            f"imported: {missing} is missing ({error}); install midimix with its dependencies "
            f"(pip install -e .), or pass --no-render to write MIDI only"
        ) from error
    return render_piece


@cli_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(GenerateConfig, args)
    # the render stage is found (or refused, in one line) before any piece is generated
    render_audio = audio_renderer() if config.render else None
    for piece in generate(args.model, args.out_dir, config, render_audio=render_audio):
        print(piece.text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
