"""The `midimix` command: one subcommand per stage, each the same as `python -m midimix.<stage>`."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

# Stage name -> one-line description, in pipeline order.
STAGES: dict[str, str] = {
    "collect": "gather audio files into data/raw/<genre>/ with a manifest",
    "prepare": "cut raw audio into 30-second mono 22,050 Hz clips",
    "inspect": "draw waveform, spectrum, spectrogram and mel spectrogram PNGs of audio",
    "transcribe": "turn clips into beat-aligned MIDI with basic-pitch",
    "tokenize": "turn MIDI into a genre-labelled token data set",
    "train": "train a genre-conditioned GPT-2 on the token data set",
    "generate": "generate a piece that mixes genres by chosen weights",
    "render": "render MIDI to audio with FluidSynth and the lo-fi effects chain",
    "evaluate": "measure how generated pieces sit between the genres",
    "corpus": "assemble the offline two-genre MIDI corpus of the default model",
    "pipeline": "run every stage, from two folders of audio to a mixed piece",
    "studio": "a web page to mix the genres with sliders and hear the piece at once",
}


def main_module(stage: str) -> str:
    """The module that holds a stage's `main`: `midimix.<stage>.__main__` when the stage is a
    package with one (`midimix.corpus`), else `midimix.<stage>` itself."""
    name = f"midimix.{stage}"
    spec = importlib.util.find_spec(name)  # finds the file, imports nothing of the stage
    for folder in (spec and spec.submodule_search_locations) or ():
        if (Path(folder) / "__main__.py").is_file():
            return f"{name}.__main__"
    return name


def usage() -> str:
    width = max(map(len, STAGES))
    lines = ["usage: midimix <stage> [options]   (midimix <stage> --help for its options)", ""]
    lines += [f"  {name:<{width}}  {text}" for name, text in STAGES.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0
    stage, rest = args[0], args[1:]
    if stage not in STAGES:
        print(f"error: unknown stage {stage!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(main_module(stage))
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
