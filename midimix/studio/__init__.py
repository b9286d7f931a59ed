"""A web page to play with the mix: sliders per genre, a schedule, a prompt, and the piece
played back at once with its piano roll and where it landed between the genres.

    midimix studio                     # then open http://127.0.0.1:7860
    midimix studio --runs-dir runs --port 8000

The page is a Gradio app bound to 127.0.0.1 (sharing off, no analytics). It generates through
the library (`midimix.generate` composed with `midimix.render`, as the command line does),
keeps each model and the synthesizer loaded between requests, and runs one request at a time.
The work behind the page lives in `midimix.studio.engine` (no Gradio), the page itself in
`midimix.studio.app`; nothing here imports gradio or torch, so `--help` stays instant.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from midimix.config import OUT_DIR, check_range
from midimix.errors import ConfigError
from midimix.options import add_config_arguments, option, stage_parser

MAX_UPLOAD_MB = 5.0


@dataclass
class StudioConfig:
    """Where the page listens, which models it offers and where its pieces go."""

    host: str = "127.0.0.1"
    # address to bind; 127.0.0.1 keeps the page on this machine (0.0.0.0: every interface)
    port: int = 7860
    # TCP port of the page; 0: any free port
    runs_dir: Path = Path("runs")
    # trained models offered besides the embedded one: every checkpoint folder under it
    out_dir: Path = OUT_DIR / "studio"
    # where each generated piece (.mid, .wav, .json, .png) is written
    max_upload_mb: float = MAX_UPLOAD_MB
    # largest prompt upload accepted, in MB
    threads: int = field(default=1, metadata=option(group="hardware"))
    # CPU threads of the model; 0: torch's default

    def __post_init__(self) -> None:
        self.runs_dir, self.out_dir = Path(self.runs_dir), Path(self.out_dir)
        if not self.host.strip():
            raise ConfigError("host must be an address such as 127.0.0.1, got an empty string")
        check_range("port", self.port, 0, 65535)
        check_range("max_upload_mb", self.max_upload_mb, 0.01, 1024.0)
        check_range("threads", self.threads, 0, 1024)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)


def build_parser() -> argparse.ArgumentParser:
    """`midimix studio`'s flags: one per StudioConfig field."""
    parser = stage_parser("studio", __doc__)
    add_config_arguments(parser, StudioConfig)
    return parser


__all__ = ["MAX_UPLOAD_MB", "StudioConfig", "build_parser"]
