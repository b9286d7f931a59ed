"""The work behind the studio page, without Gradio: which models there are, what each one
offers (its genres, its genre classifier), checking an upload, turning the page's controls into
a `GenerateConfig`, and one request from settings to MIDI, audio, provenance, piano roll and
P(genre).

A request is `midimix.generate.generate` itself, with the render stage's `render_piece` as its
audio callback (as on the command line), so the page writes exactly the library's piece for the
same settings and seed. The synthesizer stays loaded in the render stage; each model's
tokenizer and classifier stay loaded here (generate reads the checkpoint again per request, a
tenth of a second warm).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from midimix.errors import InputError, MidimixError

if TYPE_CHECKING:
    from midimix.classifier import GenreClassifier
    from midimix.generate import GenerateConfig, GeneratedPiece, RenderAudio
    from midimix.tokenize import GenreTokenizer

EMBEDDED = "embedded default model"
CLASSIFIER_FILES = ("genre_classifier.json", "classifier.json")
MODEL_MARKERS = ("model.safetensors", "midimix.json")  # a folder with either is offered
SWEEP_FILES = ("sweep.png", "sweep/sweep.png", "sweep-report/sweep.png")
MAX_MODEL_DEPTH = 3  # runs/<name>/best is depth 2

Report = Callable[[float, str], None]
"""(fraction done 0..1, what is happening) -> None: the page's progress bar."""


def _silent(fraction: float, text: str) -> None:
    """A `Report` that shows nothing."""


# ---------------------------------------------------------------------------------------
# Models on offer


def embedded_model_dir() -> Path:
    from midimix.generate import DEFAULT_MODEL_DIR

    return DEFAULT_MODEL_DIR


def find_models(runs_dir: Path | None) -> dict[str, Path]:
    """{name shown in the picker: folder}: the embedded model first, then every folder under
    `runs_dir` holding a model.safetensors or a midimix.json, named by its path below it. The
    page sends back a name only, never a path."""
    models = {EMBEDDED: embedded_model_dir()}
    if runs_dir is None or not Path(runs_dir).is_dir():
        return models
    root = Path(runs_dir)
    found = [p.parent for marker in MODEL_MARKERS for p in root.rglob(marker)]
    for folder in sorted(set(found)):
        depth = len(folder.relative_to(root).parts)
        if 0 < depth <= MAX_MODEL_DEPTH:
            models[folder.relative_to(root).as_posix()] = folder
    return models


def model_folder(name: str, models: dict[str, Path]) -> Path:
    """The folder of a model picked by name; an InputError for a name not on the list."""
    if name not in models:
        raise InputError(f"no model named {name!r}; pick one of: {', '.join(models)}")
    return models[name]


def sweep_figure(folder: Path) -> Path | None:
    """The model's sweep plot (P(genre) against the weight), when its folder has one; the
    embedded model's is docs/default_model_sweep.png of the source tree."""
    for name in SWEEP_FILES:
        if (folder / name).is_file():
            return folder / name
    if folder.resolve() == embedded_model_dir().resolve():
        docs = folder.resolve().parents[1] / "docs" / "default_model_sweep.png"
        if docs.is_file():
            return docs
    return None


@dataclass
class LoadedModel:
    """What the page needs of a model folder, read once: it is a model, its genres, its
    genre classifier."""

    folder: Path
    tokenizer: GenreTokenizer
    meta: dict[str, Any]
    classifier: GenreClassifier | None  # from the folder's genre_classifier.json, if any

    @property
    def genres(self) -> list[str]:
        return list(self.tokenizer.genres)


@dataclass
class ModelCache:
    """Models loaded once and kept, keyed by folder (the least recently used one dropped)."""

    size: int = 2
    threads: int = 1
    loaded: dict[Path, LoadedModel] = field(default_factory=dict)

    def get(self, folder: Path) -> LoadedModel:
        key = Path(folder).resolve()
        if key in self.loaded:
            self.loaded[key] = self.loaded.pop(key)  # most recently used last
            return self.loaded[key]
        entry = load_model(key, self.threads)
        self.loaded[key] = entry
        while len(self.loaded) > self.size:
            self.loaded.pop(next(iter(self.loaded)))
        return entry


def load_model(folder: Path, threads: int = 1) -> LoadedModel:
    """Tokenizer, metadata and genre classifier of a model folder, checked by loading the
    checkpoint once; a MidimixError saying what is wrong with a folder that is not a model."""
    import torch

    from midimix.classifier import GenreClassifier
    from midimix.model import load_checkpoint, quiet_transformers

    if threads > 0:
        torch.set_num_threads(threads)
    with quiet_transformers():
        _, tokenizer, meta = load_checkpoint(folder, "cpu")
    if not tokenizer.genres:
        raise InputError(
            f"the model in {folder.name} has no genre tokens, so it cannot mix genres; pick a "
            "model trained by `midimix train`"
        )
    classifier = None
    for name in CLASSIFIER_FILES:
        if (folder / name).is_file():
            classifier = GenreClassifier.load(folder / name)
            break
    return LoadedModel(folder, tokenizer, meta, classifier)


# ---------------------------------------------------------------------------------------
# From the page's controls to a config


@dataclass
class StudioRequest:
    """What the page sends: every value checked again here, none used as a path."""

    weights: dict[str, float]  # slider values per genre (any scale; normalised)
    method: str = "logits"
    guidance: float = 0.0
    schedule: str = ""  # keyframes like classical->lofi; replaces the weights when given
    bars: int = 8
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 0.95
    seed: int = 0


def request_config(
    request: StudioRequest, prompt: Path | None = None, threads: int = 1
) -> GenerateConfig:
    """The `GenerateConfig` of a request (ConfigError for zero weights or a bad schedule)."""
    from midimix.generate import GenerateConfig

    schedule = request.schedule.strip() or None
    mix = None
    if schedule is None:
        mix = {g: float(w) for g, w in request.weights.items() if float(w) > 0}
        if not mix:
            raise InputError(
                "the genre weights sum to zero: move at least one genre's slider above 0"
            )
    return GenerateConfig(
        genre_mix=mix,
        schedule=schedule,
        mix_method=request.method,
        guidance=float(request.guidance),
        temperature=float(request.temperature),
        top_k=int(request.top_k),
        top_p=float(request.top_p),
        seed=int(request.seed),
        bars=int(request.bars),
        prompt=prompt,
        threads=threads,
        progress=False,  # the page shows its own progress
    )


def check_upload(path: Path, max_bytes: int, shown_name: str | None = None) -> Path:
    """An uploaded prompt, checked before any work: its size, then MIDI (read by the one MIDI
    loader) or audio by suffix. Messages name the file as the user called it."""
    from midimix.audio import AUDIO_SUFFIXES
    from midimix.midifile import is_midi_name, load_score

    path = Path(path)
    name = shown_name or path.name
    size = path.stat().st_size if path.is_file() else 0
    if size > max_bytes:
        raise InputError(
            f"{name} is {size / 1e6:.1f} MB; uploads are limited to {max_bytes / 1e6:g} MB "
            "(a MIDI piece is a few kB; trim a long audio file to a short excerpt)"
        )
    if path.suffix.lower() in AUDIO_SUFFIXES:
        return path
    if not is_midi_name(path):
        raise InputError(
            f"{name} is neither a MIDI file (.mid, .midi) nor audio "
            f"({', '.join(AUDIO_SUFFIXES)}); upload one of those"
        )
    try:
        load_score(path, require_notes=True)
    except MidimixError as error:
        raise InputError(str(error).replace(str(path), name)) from error
    return path


# ---------------------------------------------------------------------------------------
# One request


@dataclass
class StudioResult:
    piece: GeneratedPiece
    piano_roll: Path  # PNG with bar lines
    p_genre: dict[str, float] | None  # the classifier's P(genre) of the piece; None: no classifier
    seconds: float  # wall time of the request

    def summary(self) -> str:
        """P(genre) and the piece in one line each, for the page."""
        piece = self.piece
        lines = []
        if self.p_genre is None:
            lines.append("P(genre): this model folder has no genre classifier")
        else:
            ranked = sorted(self.p_genre.items(), key=lambda kv: -kv[1])
            lines.append("P(genre): " + ", ".join(f"{g} {p:.2f}" for g, p in ranked))
        asked = ", ".join(f"{g} {w:.2f}" for g, w in piece.weights.items())
        lines.append(
            f"{piece.bars} bars, {piece.notes} notes, {piece.seconds:.1f} s; mean weights "
            f"{asked}; made in {self.seconds:.1f} s"
        )
        return "\n".join(lines)


def run_request(
    loaded: LoadedModel,
    config: GenerateConfig,
    out_dir: Path,
    render_audio: RenderAudio | None,
    report: Report = _silent,
) -> StudioResult:
    """Generate, render, draw and score one piece into `out_dir`. The piano roll and P(genre)
    need only the MIDI, so they are made in a thread while the audio's effects run (pedalboard
    and the compiled delay line release the GIL): on two cores that hides part of their time.
    Started with the synthesizer instead, they took a core from its two threads and the GIL
    from its event loop: the audio took 0.92-1.02 s instead of 0.71 s (45 s piece)."""
    from midimix.generate import generate

    start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    report(0.1, f"sampling {config.bars} bars, then rendering the audio")
    drawn: list[tuple[Path, dict[str, float] | None]] = []

    def render_while_drawing(midi_path: Path, *args: Any, **kwargs: Any) -> Path:
        assert render_audio is not None
        with ThreadPoolExecutor(max_workers=1) as pool:
            extras: list[Future[tuple[Path, dict[str, float] | None]]] = []

            def start_drawing() -> None:
                extras.append(pool.submit(_draw_and_score, loaded, midi_path))

            if "after_synthesis" in inspect.signature(render_audio).parameters:
                kwargs["after_synthesis"] = start_drawing
            else:  # a renderer of the caller's that cannot tell: draw beside all of it
                start_drawing()
            audio = render_audio(midi_path, *args, **kwargs)
            if not extras:
                start_drawing()
            drawn.append(extras[0].result())  # its exception, if any, is raised here
        return audio

    render = None if render_audio is None else render_while_drawing
    piece = generate(loaded.folder, out_dir, config, render_audio=render)[0]
    report(0.9, "drawing the piano roll and scoring the piece")
    roll, p_genre = drawn[0] if drawn else _draw_and_score(loaded, piece.midi_path)
    report(1.0, "done")
    return StudioResult(piece, roll, p_genre, time.perf_counter() - start)


def _draw_and_score(loaded: LoadedModel, midi_path: Path) -> tuple[Path, dict[str, float] | None]:
    """The piano roll PNG beside the MIDI, and the classifier's P(genre) (None without one)."""
    from midimix.studio.pianoroll import draw_piano_roll

    roll = draw_piano_roll(midi_path, midi_path.with_suffix(".png"))
    if loaded.classifier is None:
        return roll, None
    return roll, loaded.classifier.predict_proba([midi_path])[0]
