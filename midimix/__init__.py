"""midimix: learn genres from audio or MIDI and generate pieces that mix them by a chosen ratio.

Each stage is a module with one public function and a command line (`python -m midimix.<stage>`):
collect, prepare, inspect, transcribe, tokenize, train, generate, render, evaluate, corpus,
pipeline. Start with `midimix.generate.generate(None, Path("out"), GenerateConfig(...))`, which
uses the default model shipped in `midimix/default_model/`.
"""

from importlib import metadata

try:
    __version__ = metadata.version("midimix")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
