"""Every stage has a command line with a useful --help, under `midimix <stage>` and `-m`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from midimix.cli import STAGES, main, main_module


def test_midimix_help_lists_every_stage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for stage in STAGES:
        assert f"  {stage} " in out


def test_unknown_stage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert "unknown stage 'frobnicate'" in capsys.readouterr().err


def test_a_package_stage_runs_its_main_module() -> None:
    assert main_module("corpus") == "midimix.corpus.__main__"  # a package: its __main__
    assert main_module("prepare") == "midimix.prepare"  # a module: itself


@pytest.mark.parametrize(
    "command",
    [pytest.param(["-m", f"midimix.{stage}"], id=f"python -m midimix.{stage}") for stage in STAGES]
    + [pytest.param(["-m", "midimix", stage], id=f"midimix {stage}") for stage in STAGES],
)
def test_stage_help(command: list[str]) -> None:
    # exits 0, names itself `midimix <stage>` and documents its options
    stage = command[-1].removeprefix("midimix.")
    result = subprocess.run(
        [sys.executable, *command, "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: midimix {stage} "), result.stdout[:200]
    assert "--" in result.stdout  # at least one option is documented
