"""Finding the General MIDI SoundFont that render plays with: an option, an environment
variable, a `soundfonts/` folder, then the system's (Debian's `fluid-soundfont-gm`)."""

from __future__ import annotations

import os
from pathlib import Path

from midimix.errors import DependencyError, InputError

SOUNDFONT_ENV = "MIDIMIX_SOUNDFONT"
SYSTEM_SOUNDFONTS = (
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    Path("/usr/share/sounds/sf2/default-GM.sf2"),
    Path("/usr/share/soundfonts/FluidR3_GM.sf2"),
    Path("/usr/share/soundfonts/default.sf2"),
)
SYSTEM_SOUNDFONT_DIRS = (Path("/usr/share/soundfonts"), Path("/usr/share/sounds/sf2"))
SOUNDFONT_SUFFIXES = (".sf2", ".sf3")
HOW_TO_GET_SOUNDFONT = (
    f"install one with `sudo apt-get install fluid-soundfont-gm` or set {SOUNDFONT_ENV} "
    "to a General MIDI .sf2 file"
)


def looks_like_soundfont(path: Path) -> bool:
    """A SoundFont 2 file is a RIFF file of form type 'sfbk'."""
    with open(path, "rb") as handle:
        head = handle.read(12)
    return head[:4] == b"RIFF" and head[8:12] == b"sfbk"


def _candidate_dirs() -> list[Path]:
    import midimix

    package_root = Path(midimix.__file__).resolve().parent.parent
    return [Path.cwd() / "soundfonts", package_root / "soundfonts"]


def find_soundfont(explicit: Path | None = None) -> Path:
    """The SoundFont to use: `explicit`, $MIDIMIX_SOUNDFONT, soundfonts/, then the system's."""
    for given, origin in (
        (explicit, "--soundfont"),
        (os.environ.get(SOUNDFONT_ENV), SOUNDFONT_ENV),
    ):
        if given:
            path = Path(given).expanduser()
            if not path.is_file():
                raise InputError(
                    f"no SoundFont file at {path} (from {origin}); {HOW_TO_GET_SOUNDFONT}"
                )
            return path
    for folder in _candidate_dirs():
        found = sorted(p for p in folder.glob("*") if p.suffix.lower() in SOUNDFONT_SUFFIXES)
        if found:
            return found[0]
    for path in SYSTEM_SOUNDFONTS:
        if path.is_file():
            return path
    for folder in SYSTEM_SOUNDFONT_DIRS:
        found = sorted(folder.glob("*.sf2")) if folder.is_dir() else []
        if found:
            return found[0]
    raise DependencyError(f"no General MIDI SoundFont found; {HOW_TO_GET_SOUNDFONT}")
