"""`midimix studio` / `python -m midimix.studio`: serve the studio page until interrupted."""

from __future__ import annotations

import sys

from midimix.errors import cli_errors
from midimix.options import config_from_args
from midimix.studio import StudioConfig, build_parser


@cli_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(StudioConfig, args)
    from midimix.studio.app import launch

    print("midimix studio: loading the embedded model", flush=True)
    launch(config, block=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
