"""midimix: learn genres from audio or MIDI and generate pieces that mix them by a chosen ratio.

The stages, in data-flow order, each a function with a config and a command line
(`midimix <stage>` or `python -m midimix.<stage>`):

    collect -> prepare -> transcribe -> tokenize -> train -> generate -> render -> evaluate

    from midimix import GenerateConfig, generate, render_piece

    pieces = generate(config=GenerateConfig(genre_mix={"lofi": 0.7, "classical": 0.3}),
                      render_audio=render_piece)   # the embedded model; out/<name>.mid + .wav

`from midimix import generate` gives the function, not the module: the stage modules are
reached with `from midimix.generate import ...` (or importlib). Names load on first use, so
`import midimix` (and every `--help`) stays instant.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

# public name -> the module that defines it, in data-flow order
_EXPORTS: dict[str, str] = {
    "collect": "midimix.collect",
    "CollectConfig": "midimix.collect",
    "prepare": "midimix.prepare",
    "PrepareConfig": "midimix.prepare",
    "inspect": "midimix.inspect",
    "InspectConfig": "midimix.inspect",
    "transcribe": "midimix.transcribe",
    "TranscribeConfig": "midimix.transcribe",
    "tokenize": "midimix.tokenize",
    "TokenizeConfig": "midimix.tokenizer",
    "train": "midimix.train",
    "TrainConfig": "midimix.train_config",
    "generate": "midimix.generate",
    "GenerateConfig": "midimix.generate.config",
    "render": "midimix.render",
    "render_piece": "midimix.render",
    "RenderConfig": "midimix.render_config",
    "LofiConfig": "midimix.lofi",
    "evaluate": "midimix.measure",
    "EvaluateConfig": "midimix.measure",
    "sweep": "midimix.sweep",
    "SweepConfig": "midimix.sweep",
    "PipelineConfig": "midimix.pipeline",
}
__all__ = [*_EXPORTS, "__version__"]


def _version() -> str:
    from importlib import metadata  # 30-180 ms: only when the version is asked for

    try:
        return metadata.version("midimix")
    except metadata.PackageNotFoundError:  # a source tree that is not installed
        return "0.0.0"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value = _version()
        vars(sys.modules[__name__])[name] = value
        return value
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'midimix' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    vars(sys.modules[__name__])[name] = value  # found once, then a plain attribute
    return value


class _Package(types.ModuleType):
    """The import system binds a submodule to its package's attribute of the same name when it
    is first imported; a public function of that name (generate, render, ...) keeps the
    attribute instead, so `from midimix import generate` is always the function."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in _EXPORTS:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
