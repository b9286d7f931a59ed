"""Shared configuration helpers: default folders, genre names and range checks.

Each stage keeps its own dataclass config in its own module; they all validate with the
helpers here, so that every error names the field, the value it got and what is allowed."""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from midimix.errors import ConfigError

DATA_DIR = Path("data")
RAW_DIR = DATA_DIR / "raw"  # collect writes here: raw/<genre>/<id>.<ext>
CLIPS_DIR = DATA_DIR / "clips"  # prepare: clips/<genre>/<id>.wav
MIDI_DIR = DATA_DIR / "midi"  # transcribe: midi/<genre>/<id>.mid
TOKENS_DIR = DATA_DIR / "tokens"  # tokenize: tokenizer + sequences + splits
RUNS_DIR = Path("runs")  # train: runs/<name>/
OUT_DIR = Path("out")  # generate / render / evaluate

MIDI_SUFFIXES = (".mid", ".midi")  # the one list; audio suffixes are the decoder's (audio.py)

DEFAULT_GENRES = ("lofi", "classical")
GENRE_ANY = "any"  # the neutral genre of classifier-free guidance

_GENRE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def check_genre_name(name: str) -> str:
    """A genre is a folder name and part of a token: lower-case letters, digits, - and _."""
    if not _GENRE_RE.match(name):
        raise ConfigError(
            f"genre name {name!r} is not usable: use 1-32 lower-case letters, digits, '-' or '_' "
            f"(no spaces or slashes), for example 'lofi' or 'classical'"
        )
    if name == GENRE_ANY:
        raise ConfigError(f"genre name {GENRE_ANY!r} is reserved for the neutral genre token")
    return name


def check_range(
    name: str, value: float, low: float | None = None, high: float | None = None
) -> None:
    """Raise `ConfigError` naming the field and its allowed range when `value` is outside it.
    NaN is outside every range (every comparison with it is false, so test it first)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) and not (
        (value == math.inf and high is None) or (value == -math.inf and low is None)
    ):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ConfigError(f"{name} must be in [{lo}, {hi}], got {value!r}")


def check_choice(name: str, value: str, choices: tuple[str, ...] | list[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def config_to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as JSON-ready values (paths become strings, nested configs dicts)."""
    return {key: _jsonable(value) for key, value in dataclasses.asdict(config).items()}


def config_path(folder: Path, stage: str) -> Path:
    """The one naming rule: a stage's settings sit beside its outputs as <stage>.config.json,
    which `--config` takes back to repeat the run."""
    return Path(folder) / f"{stage}.config.json"


def save_config(config: Any, folder: Path, stage: str) -> Path:
    """Write `config` as folder/<stage>.config.json (atomically); unchanged files are left as
    they are, so their modification time says when the settings last changed."""
    from midimix.manifest import atomic_write_text

    path = config_path(folder, stage)
    text = json.dumps(config_to_dict(config), indent=2, sort_keys=True) + "\n"
    try:
        if path.read_text() == text:
            return path
    except (OSError, UnicodeDecodeError):
        pass
    atomic_write_text(path, text)
    return path


def parse_shard(text: str | None) -> tuple[int, int]:
    """'K/N' (1-based K) -> (K-1, N). None -> (0, 1): the whole job."""
    if text is None:
        return 0, 1
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not match:
        raise ConfigError(f"--shard must look like K/N (for example 2/4), got {text!r}")
    k, n = int(match.group(1)), int(match.group(2))
    if n < 1 or not 1 <= k <= n:
        raise ConfigError(f"--shard K/N needs 1 <= K <= N, got {text!r}")
    return k - 1, n


def parse_genre_paths(pairs: list[str]) -> dict[str, Path]:
    """['lofi=PATH', 'classical=PATH'] -> {'lofi': Path, ...}, names checked, no repeats."""
    out: dict[str, Path] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not path:
            raise ConfigError(f"expected GENRE=PATH (for example lofi=~/music/lofi), got {pair!r}")
        name = check_genre_name(name.strip())
        if name in out:
            raise ConfigError(f"genre {name!r} is given twice; give each genre once")
        out[name] = Path(path).expanduser()
    return out


def genre_folders(root: Path) -> dict[str, Path]:
    """The genre sub-folders of `root` (data/raw/<genre>/ ...), by name, checked."""
    if not root.is_dir():
        raise ConfigError(f"folder {root} does not exist; expected one sub-folder per genre")
    found = {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")}
    for name in found:
        check_genre_name(name)
    return found


def as_mapping(value: Mapping[str, Path] | Path) -> dict[str, Path]:
    """A {genre: folder} mapping, or a root folder with one sub-folder per genre."""
    if isinstance(value, Mapping):
        return {check_genre_name(k): Path(v) for k, v in value.items()}
    return genre_folders(Path(value))


def check_weights(weights: dict[str, float]) -> dict[str, float]:
    """Non-negative finite weights, at least one above 0 -> normalised to sum 1."""
    for genre, weight in weights.items():
        if not math.isfinite(weight) or weight < 0:
            raise ConfigError(
                f"genre weights must be non-negative numbers, got {genre}={weight!r}; "
                f"for example lofi=0.7,classical=0.3"
            )
    total = sum(weights.values())
    if total <= 0:
        raise ConfigError(
            f"genre weights need at least one weight above 0, got {weights!r}; "
            f"for example lofi=0.7,classical=0.3"
        )
    return {genre: weight / total for genre, weight in weights.items()}


def parse_weights(text: str, separators: str = ",") -> dict[str, float]:
    """'lofi=0.7,classical=0.3' (or 'lofi=70%') -> raw weights; a bare name weighs 1.
    Syntax and values only: genre names are checked against a model by `check_genres`."""
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in re.split(f"[{separators}]", text))):
        name, sep, value = (s.strip() for s in part.partition("="))
        try:
            weight = float(value.removesuffix("%")) if sep else 1.0
        except ValueError:
            raise ConfigError(
                f"expected GENRE=WEIGHT like lofi=0.7,classical=0.3; got {part!r}"
            ) from None
        if not name:
            raise ConfigError(f"expected GENRE=WEIGHT like lofi=0.7; got {part!r} (no genre)")
        if name in weights:
            raise ConfigError(f"genre {name!r} is given twice in {text!r}; give each genre once")
        weights[name] = weight
    if not weights:
        raise ConfigError(f"expected GENRE=WEIGHT pairs like lofi=0.7,classical=0.3; got {text!r}")
    return weights
