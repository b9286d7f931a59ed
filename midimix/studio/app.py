"""The studio page: Gradio components wired to `midimix.studio.engine`.

Every handler turns a known error (`MidimixError`: a bad mix, a corrupt upload, a folder that
is not a model) into a message on the page (`gr.Error`), never a trace. The browser sends back
names and numbers only: the model is picked by its name on the list built at start, and a
prompt is read from the temporary file Gradio wrote for the upload.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from midimix.errors import MidimixError
from midimix.studio import StudioConfig
from midimix.studio.engine import (
    EMBEDDED,
    ModelCache,
    StudioRequest,
    check_upload,
    find_models,
    model_folder,
    request_config,
    run_request,
    sweep_figure,
)

if TYPE_CHECKING:
    import gradio as gr

    from midimix.generate import RenderAudio

MAX_GENRE_SLIDERS = 8  # sliders built; a model's genres take the first ones, the rest hide
SEED_MAX = 2**31 - 1
BARS_MAX = 64
T = TypeVar("T")


def import_gradio() -> Any:
    """gradio, with its analytics and update check off (set before the import reads them)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gradio
    except ImportError as error:
        from midimix.errors import DependencyError

        raise DependencyError(
            f"the studio needs gradio ({error}); install it with pip install -e '.[studio]'"
        ) from error
    return gradio


class Studio:
    """The state behind the page: the models on offer, the loaded ones, the audio renderer."""

    def __init__(self, config: StudioConfig, render_audio: RenderAudio | None = None) -> None:
        from midimix.render import render_piece

        self.config = config
        self.models = find_models(config.runs_dir)
        self.cache = ModelCache(threads=config.threads)
        self.render_audio = render_audio if render_audio is not None else render_piece

    def genres(self, model_name: str) -> list[str]:
        return self.cache.get(model_folder(model_name, self.models)).genres

    def generate(
        self,
        model_name: str,
        request: StudioRequest,
        upload: str | None = None,
        report: Callable[[float, str], None] | None = None,
    ) -> Any:
        """One request, as the page makes it (the engine's StudioResult)."""
        say = report or (lambda fraction, text: None)
        say(0.0, "loading the model")
        loaded = self.cache.get(model_folder(model_name, self.models))
        prompt = None
        if upload:
            prompt = check_upload(Path(upload), self.config.max_upload_bytes)
        config = request_config(request, prompt, self.config.threads)
        return run_request(loaded, config, self.config.out_dir, self.render_audio, say)


def page_errors(function: Callable[..., T]) -> Callable[..., T]:
    """A handler whose known errors become a message on the page."""
    import functools

    gr = import_gradio()

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return function(*args, **kwargs)
        except MidimixError as error:
            raise gr.Error(str(error), print_exception=False) from None

    return wrapper


def slider_updates(gr: Any, genres: list[str]) -> list[Any]:
    """One update per slider: the model's genres shown (equal weights), the rest hidden."""
    updates = []
    for i in range(MAX_GENRE_SLIDERS):
        if i < len(genres):
            updates.append(gr.update(visible=True, label=f"{genres[i]} weight", value=1.0))
        else:
            updates.append(gr.update(visible=False, value=0.0))
    return updates


def build_app(studio: Studio) -> gr.Blocks:
    """The Blocks page over `studio`."""
    gr = import_gradio()
    first_genres = studio.genres(EMBEDDED)
    with gr.Blocks(title="midimix studio", analytics_enabled=False) as app:
        gr.Markdown(
            "# midimix studio\nMix the genres with the sliders (or a schedule), press "
            "**Generate**, and hear the piece with its piano roll and where it landed."
        )
        genres_state = gr.State(first_genres)
        with gr.Row():
            with gr.Column(scale=1):
                model = gr.Dropdown(
                    list(studio.models), value=EMBEDDED, label="model", elem_id="model"
                )
                sliders = [
                    gr.Slider(
                        0.0,
                        1.0,
                        value=1.0 if i < len(first_genres) else 0.0,
                        step=0.05,
                        label=f"{first_genres[i]} weight" if i < len(first_genres) else "",
                        visible=i < len(first_genres),
                        elem_id=f"weight-{i}",
                    )
                    for i in range(MAX_GENRE_SLIDERS)
                ]
                schedule = gr.Textbox(
                    label="schedule (replaces the sliders when filled)",
                    placeholder="classical->lofi  or  classical@0,lofi=1+classical=1@0.5,lofi@1",
                    elem_id="schedule",
                )
                with gr.Row():
                    method = gr.Radio(["logits", "embedding"], value="logits", label="mix method")
                    guidance = gr.Slider(0.0, 5.0, value=0.0, step=0.1, label="guidance")
                bars = gr.Slider(1, BARS_MAX, value=8, step=1, label="bars", elem_id="bars")
                with gr.Accordion("sampling", open=False):
                    temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="temperature")
                    top_k = gr.Slider(0, 200, value=0, step=1, label="top-k (0: off)")
                    top_p = gr.Slider(0.05, 1.0, value=0.95, step=0.01, label="top-p")
                with gr.Row():
                    seed = gr.Number(value=0, precision=0, label="seed", elem_id="seed")
                    new_seed = gr.Button("new seed", elem_id="new-seed")
                prompt = gr.File(
                    label=f"prompt to continue: MIDI, or audio transcribed first "
                    f"(at most {studio.config.max_upload_mb:g} MB)",
                    file_types=[".mid", ".midi", "audio"],
                    type="filepath",
                    elem_id="prompt",
                )
                generate = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column(scale=2), gr.Tabs():
                with gr.Tab("piece"):
                    summary = gr.Textbox(
                        label="where it landed", lines=2, interactive=False, elem_id="summary"
                    )
                    audio = gr.Audio(
                        label="lo-fi rendering",
                        type="filepath",
                        interactive=False,
                        elem_id="audio",
                        # the browser's own player (a plain <audio> element), no waveform
                        waveform_options=gr.WaveformOptions(show_recording_waveform=False),
                    )
                    roll = gr.Image(label="piano roll", type="filepath", elem_id="roll")
                    files = gr.File(
                        label="downloads: MIDI, audio, provenance JSON",
                        file_count="multiple",
                        interactive=False,
                        elem_id="downloads",
                    )
                with gr.Tab("sweep"):
                    sweep_note = gr.Markdown(sweep_text(studio, EMBEDDED))
                    sweep = gr.Image(
                        value=_str(sweep_figure(studio.models[EMBEDDED])),
                        label="P(genre) against the weight",
                        type="filepath",
                    )

        @page_errors
        def on_model(name: str) -> list[Any]:
            genres = studio.genres(name)
            figure = sweep_figure(model_folder(name, studio.models))
            return [
                genres,
                *slider_updates(gr, genres),
                sweep_text(studio, name),
                _str(figure),
            ]

        model.change(
            on_model,
            model,
            [genres_state, *sliders, sweep_note, sweep],
        )
        new_seed.click(lambda: random.randint(0, SEED_MAX), None, seed)

        controls = [model, genres_state, *sliders, schedule, method, guidance, bars,
                    temperature, top_k, top_p, seed, prompt]  # fmt: skip

        @page_errors
        def on_generate(
            values: dict[Any, Any],
            progress: Any = gr.Progress(),  # noqa: B008 (how Gradio passes progress)
        ) -> list[Any]:
            genres = values[genres_state]
            request = StudioRequest(
                weights={g: values[sliders[i]] for i, g in enumerate(genres)},
                schedule=values[schedule] or "",
                method=values[method],
                guidance=values[guidance],
                bars=int(values[bars]),
                temperature=values[temperature],
                top_k=int(values[top_k]),
                top_p=values[top_p],
                seed=int(values[seed] or 0),
            )
            result = studio.generate(
                values[model], request, values[prompt], lambda f, t: progress(f, desc=t)
            )
            return result_outputs(result)

        generate.click(on_generate, set(controls), [summary, audio, roll, files])

        @page_errors
        def on_upload(upload: str | None) -> None:
            if upload:
                check_upload(Path(upload), studio.config.max_upload_bytes)

        prompt.upload(on_upload, prompt, None)
    return app


def result_outputs(result: Any) -> list[Any]:
    """The piece tab's values: summary, audio, piano roll, downloads (MIDI, audio, JSON)."""
    piece = result.piece
    downloads = [str(piece.midi_path), str(piece.provenance_path)]
    if piece.audio_path is not None:
        downloads.insert(1, str(piece.audio_path))
    audio_file = None if piece.audio_path is None else str(piece.audio_path)
    return [result.summary(), audio_file, str(result.piano_roll), downloads]


def sweep_text(studio: Studio, name: str) -> str:
    folder = model_folder(name, studio.models)
    if sweep_figure(folder) is None:
        return (
            f"No sweep plot in the folder of **{name}**. Make one with "
            "`midimix evaluate sweep --model <folder>` and copy its sweep.png into the folder."
        )
    return f"Mean P(genre) by the evaluation's classifier against the weight, for **{name}**."


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def free_port(host: str) -> int:
    """A TCP port nobody listens on now (for --port 0)."""
    import socket

    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def launch(config: StudioConfig, block: bool = True, studio: Studio | None = None) -> gr.Blocks:
    """Build the page and serve it on config.host:config.port (sharing off), one request at a
    time; `block=False` returns at once with the server running (tests), its address in
    `app.local_url`. `studio`: an existing one, with its models already loaded."""
    studio = studio or Studio(config)
    config = studio.config
    app = build_app(studio)
    app.queue(default_concurrency_limit=1)
    config.out_dir.mkdir(parents=True, exist_ok=True)
    app.launch(
        server_name=config.host,
        server_port=config.port or free_port(config.host),
        share=False,
        inbrowser=False,
        quiet=True,
        prevent_thread_lock=True,
        allowed_paths=[str(config.out_dir.resolve()), *_sweep_folders(studio)],
        max_file_size=config.max_upload_bytes,
    )
    print(f"midimix studio: serving {app.local_url} (Ctrl+C stops it)", flush=True)
    if block:
        app.block_thread()
    return app


def _sweep_folders(studio: Studio) -> list[str]:
    """Folders the page may serve a sweep plot from (the models' own files only)."""
    folders = {str(p.parent.resolve()) for p in map(sweep_figure, studio.models.values()) if p}
    return sorted(folders)
