"""Every stage has a command line with a useful --help, under `midimix <stage>` and `-m`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from midimix.cli import STAGES, main


def test_midimix_help_lists_every_stage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for stage in STAGES:
        assert f"  {stage} " in out


def test_unknown_stage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert "unknown stage 'frobnicate'" in capsys.readouterr().err


@pytest.mark.parametrize("stage", list(STAGES))
def test_stage_help(stage: str) -> None:
    # `python -m midimix.<stage> --help`: exits 0, describes itself and its options
    result = subprocess.run(
        [sys.executable, "-m", f"midimix.{stage}", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
    assert "--" in result.stdout  # at least one option is documented
