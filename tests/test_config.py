from __future__ import annotations

from pathlib import Path

import pytest

from midimix.config import (
    check_genre_name,
    check_range,
    genre_folders,
    parse_genre_paths,
    parse_shard,
)
from midimix.errors import ConfigError


@pytest.mark.parametrize("name", ["lofi", "classical", "jazz-2", "a_b"])
def test_good_genre_names(name: str) -> None:
    assert check_genre_name(name) == name


@pytest.mark.parametrize("name", ["lo fi", "a/b", "", "Lofi", "any", "x" * 40])
def test_bad_genre_names(name: str) -> None:
    with pytest.raises(ConfigError):
        check_genre_name(name)


def test_check_range_names_field_and_range() -> None:
    check_range("clip_seconds", 30, 1, 600)
    with pytest.raises(ConfigError, match=r"clip_seconds must be in \[1, 600\], got -3"):
        check_range("clip_seconds", -3, 1, 600)


def test_parse_shard() -> None:
    assert parse_shard(None) == (0, 1)
    assert parse_shard("2/4") == (1, 4)
    for bad in ["0/4", "5/4", "1-4", "a/b", "1/0"]:
        with pytest.raises(ConfigError):
            parse_shard(bad)


def test_parse_genre_paths(tmp_path: Path) -> None:
    assert parse_genre_paths(["lofi=/a", "classical=/b"]) == {
        "lofi": Path("/a"),
        "classical": Path("/b"),
    }
    with pytest.raises(ConfigError, match="given twice"):
        parse_genre_paths(["lofi=/a", "lofi=/b"])
    with pytest.raises(ConfigError, match="GENRE=PATH"):
        parse_genre_paths(["lofi"])


def test_genre_folders(tmp_path: Path) -> None:
    (tmp_path / "lofi").mkdir()
    (tmp_path / "classical").mkdir()
    (tmp_path / ".hidden").mkdir()
    assert list(genre_folders(tmp_path)) == ["classical", "lofi"]
    with pytest.raises(ConfigError, match="does not exist"):
        genre_folders(tmp_path / "nope")
