"""Long command lines say how far they are: generate bar by bar, the sweep piece by piece."""

from __future__ import annotations

from pathlib import Path

import pytest

from midimix.generate.__main__ import main as generate_main


@pytest.mark.parametrize("flag", ["--progress", "--no-progress"])
def test_generate_shows_its_bars(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    argv = ["--genre", "lofi", "--bars", "3", "--no-render", "--out-dir", str(tmp_path), flag]
    assert generate_main(argv) == 0
    err = capsys.readouterr().err
    if flag == "--progress":
        assert "generate: 100%" in err and "3/3" in err
    else:
        assert "generate" not in err
