"""The studio page: the functions behind it against the library (same settings and seed, same
notes), its checks of bad input, and the page itself in a real headless Chromium driven by
Selenium through Debian's chromedriver (set a weight, generate, hear, download, bad upload)."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.image
import numpy as np
import pytest
import soundfile as sf
from midi_fixtures import make_score, scale_line, write
from symusic import TimeSignature

from midimix.errors import ConfigError, InputError, MidimixError
from midimix.generate import generate
from midimix.midifile import load_score
from midimix.studio import StudioConfig, build_parser
from midimix.studio.app import Studio, launch
from midimix.studio.engine import (
    EMBEDDED,
    check_upload,
    embedded_model_dir,
    find_models,
    request_config,
    sweep_figure,
)
from midimix.studio.engine import StudioRequest as Request
from midimix.studio.pianoroll import bar_starts, draw_piano_roll

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PNG_HEADER = b"\x89PNG\r\n\x1a\n"
# gradio's queue calls pandas options that pandas 3 deprecates: its business, not ours
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")


def notes_of(path: Path) -> list[tuple[int, int, int, int, int]]:
    """Every note of a MIDI file as (track, start, duration, pitch, velocity)."""
    score = load_score(path)
    return [
        (i, n.time, n.duration, n.pitch, n.velocity)
        for i, track in enumerate(score.tracks)
        for n in track.notes
    ]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs folder: a copy of the embedded model as run-a/best, a folder that only looks
    like a model (its midimix.json alone), and a model nested too deep to be offered."""
    root = tmp_path_factory.mktemp("runs")
    shutil.copytree(embedded_model_dir(), root / "run-a" / "best")
    (root / "broken").mkdir()
    (root / "broken" / "midimix.json").write_text("{}")
    deep = root / "a" / "b" / "c" / "d"
    deep.mkdir(parents=True)
    (deep / "midimix.json").write_text("{}")
    return root


@pytest.fixture(scope="module")
def studio(runs: Path, tmp_path_factory: pytest.TempPathFactory) -> Studio:
    out = tmp_path_factory.mktemp("studio-out")
    return Studio(StudioConfig(port=0, runs_dir=runs, out_dir=out))


# ---------------------------------------------------------------------------------------
# The functions behind the page


@pytest.mark.parametrize(
    "request_",
    [
        Request(weights={"lofi": 0.7, "classical": 0.3}, bars=2, seed=3),
        Request(weights={}, schedule="classical->lofi", bars=3, seed=1, temperature=0.9),
        Request(weights={"lofi": 1, "classical": 1}, method="embedding", guidance=1.0, bars=2),
    ],
    ids=["mix", "schedule", "embedding-guided"],
)
def test_a_request_writes_the_library_s_piece(
    studio: Studio, request_: Request, tmp_path: Path
) -> None:
    result = studio.generate(EMBEDDED, request_)
    piece = result.piece
    library = generate(None, tmp_path, request_config(request_), render_audio=None)[0]
    assert notes_of(piece.midi_path) == notes_of(library.midi_path)
    assert piece.midi_path.name == library.midi_path.name
    assert piece.bars == library.bars == request_.bars
    made, expected = (
        json.loads(p.read_text()) for p in (piece.provenance_path, library.provenance_path)
    )
    for key in ("weights", "weights_per_bar", "seed", "sampling", "method", "model_sha256"):
        assert made[key] == expected[key], key
    # the audio of the piece, as long as its MIDI (the renderer adds a short tail)
    assert piece.audio_path is not None
    audio = sf.info(str(piece.audio_path))
    assert piece.seconds <= audio.duration <= piece.seconds + 5.0
    # P(genre) is the model's classifier on that very MIDI
    loaded = studio.cache.get(embedded_model_dir())
    assert loaded.classifier is not None
    assert result.p_genre == loaded.classifier.predict_proba([library.midi_path])[0]
    assert sum(result.p_genre.values()) == pytest.approx(1.0)
    assert result.piano_roll.read_bytes().startswith(PNG_HEADER)
    assert "P(genre): " in result.summary()


def test_the_model_stays_loaded_between_requests(studio: Studio) -> None:
    first = studio.cache.get(embedded_model_dir())
    studio.generate(EMBEDDED, Request(weights={"lofi": 1.0}, bars=1))
    assert studio.cache.get(embedded_model_dir()) is first


def test_models_offered_by_name(runs: Path) -> None:
    models = find_models(runs)
    assert list(models) == [EMBEDDED, "broken", "run-a/best"]
    assert models["run-a/best"] == runs / "run-a" / "best"
    assert find_models(runs / "missing") == {EMBEDDED: embedded_model_dir()}


def test_a_trained_run_gives_its_own_genres(studio: Studio) -> None:
    assert studio.genres("run-a/best") == ["classical", "lofi"]
    result = studio.generate("run-a/best", Request(weights={"classical": 1.0}, bars=1))
    assert result.piece.bars == 1


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("broken", "incomplete: config.json, model.safetensors, tokenizer.json missing"),
        ("../../etc", "no model named '../../etc'"),
        ("a/b/c/d", "no model named 'a/b/c/d'"),
    ],
    ids=["not-a-model", "path-like-name", "too-deep"],
)
def test_a_bad_model_choice_says_why(studio: Studio, name: str, message: str) -> None:
    with pytest.raises(MidimixError, match=re.escape(message)):
        studio.generate(name, Request(weights={"lofi": 1.0}, bars=1))


@pytest.mark.parametrize(
    ("request_", "error", "message"),
    [
        (Request(weights={"lofi": 0.0, "classical": 0.0}), InputError, "sum to zero"),
        (Request(weights={}), InputError, "sum to zero"),
        (Request(weights={"lofi": 1}, schedule="lofi"), ConfigError, "two keyframes"),
        (Request(weights={}, schedule="jazz->lofi"), ConfigError, "unknown genre 'jazz'"),
        (Request(weights={"lofi": 1}, top_p=0.0), ConfigError, "top_p must be in (0, 1]"),
    ],
    ids=["zero-weights", "no-weights", "one-keyframe", "unknown-genre", "top-p-zero"],
)
def test_bad_settings_say_why(
    studio: Studio, request_: Request, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        studio.generate(EMBEDDED, request_)


def test_uploads_are_checked_before_any_work(tmp_path: Path) -> None:
    good = write(scale_line("lofi", 0, 2), tmp_path / "line.mid")
    assert check_upload(good, 5_000_000) == good
    corrupt = tmp_path / "corrupt.mid"
    corrupt.write_bytes(b"MThd\x00\x00\x00\x06garbage")
    with pytest.raises(InputError, match="corrupt.mid is a corrupt MIDI file"):
        check_upload(corrupt, 5_000_000)
    with pytest.raises(InputError, match=r"^song.mid is a corrupt MIDI file"):
        check_upload(corrupt, 5_000_000, shown_name="song.mid")  # no temp path on the page
    text = tmp_path / "notes.txt"
    text.write_text("not music")
    with pytest.raises(InputError, match="neither a MIDI file"):
        check_upload(text, 5_000_000)
    with pytest.raises(InputError, match=r"is 0.0 MB; uploads are limited to 0.0001 MB"):
        check_upload(good, 100)
    empty = tmp_path / "empty.mid"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        check_upload(empty, 5_000_000)


def test_a_midi_prompt_is_continued(studio: Studio, tmp_path: Path) -> None:
    prompt = write(scale_line("classical", 0, 1), tmp_path / "line.mid")
    result = studio.generate(EMBEDDED, Request(weights={"lofi": 1.0}, bars=1), str(prompt))
    prompt_notes = notes_of(prompt)
    assert len(notes_of(result.piece.midi_path)) > len(prompt_notes)
    assert json.loads(result.piece.provenance_path.read_text())["prompt"]["tokens"] > 0


def test_bar_lines_follow_the_time_signatures() -> None:
    score = make_score([(0.0, 1.0, 60, 90), (15.0, 1.0, 62, 90)])
    assert bar_starts(score, 16.0) == [0.0, 4.0, 8.0, 12.0]
    score.time_signatures.clear()
    score.time_signatures.append(TimeSignature(0, 3, 4))
    score.time_signatures.append(TimeSignature(6 * 480, 6, 8))  # 6/8 = 3 beats from beat 6
    assert bar_starts(score, 12.0) == [0.0, 3.0, 6.0, 9.0]
    score.time_signatures.clear()
    assert bar_starts(score, 8.0) == [0.0, 4.0]  # none: 4/4


def test_piano_roll_png(tmp_path: Path) -> None:
    midi = write(scale_line("lofi", 0, 3), tmp_path / "line.mid")
    png = draw_piano_roll(midi, tmp_path / "roll.png", dpi=50)
    data = png.read_bytes()
    assert data.startswith(PNG_HEADER)
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (500, 180)  # 10 x 3.6 inches at 50 dpi
    # the 12 quarter notes (12 pitches, 48-59) fill the axes' width for 12 beats, each 0.8 of
    # a semitone high: axes 460 x 136.8 px over 17 semitones -> 460 x 6.4 px of note colour
    image = matplotlib.image.imread(png)[..., :3]
    note_colour = np.array(matplotlib.colormaps["tab10"](0)[:3])
    painted = int((np.abs(image - note_colour).max(axis=-1) < 0.02).sum())
    assert painted == pytest.approx(460 * 136.8 / 17 * 0.8, rel=0.15)


def test_sweep_plot_of_the_embedded_model(runs: Path) -> None:
    found = sweep_figure(embedded_model_dir())
    assert found is not None and found.name == "default_model_sweep.png"
    assert sweep_figure(runs / "run-a" / "best") is None  # a copy outside the source tree


def test_command_line_settings() -> None:
    args = build_parser().parse_args(["--port", "8123", "--runs-dir", "elsewhere"])
    assert (args.port, args.runs_dir) == (8123, Path("elsewhere"))
    assert StudioConfig().host == "127.0.0.1"
    with pytest.raises(ConfigError, match="port"):
        StudioConfig(port=70000)
    with pytest.raises(ConfigError, match="host"):
        StudioConfig(host=" ")


# ---------------------------------------------------------------------------------------
# The page, in a real browser


@pytest.fixture(scope="module")
def page(studio: Studio) -> Iterator[str]:
    app = launch(studio.config, block=False, studio=studio)
    try:
        yield str(app.local_url)
    finally:
        app.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM.is_file() and CHROMEDRIVER.is_file(), "run scripts/setup.sh first"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)  # Debian's browser; nothing is downloaded
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1400,1500")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _set_number(driver: Any, elem_id: str, value: float) -> None:
    """Type a value into the number box of a Gradio slider (it moves the slider too)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=number]")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(str(value))
    box.send_keys(Keys.TAB)


def test_the_page_in_a_browser(
    page: str, browser: Any, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(page)
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: d.find_elements(By.ID, "generate"))
    _set_number(browser, "weight-0", 0.25)  # classical; lofi stays at 1
    _set_number(browser, "bars", 2)
    slider = browser.find_element(By.CSS_SELECTOR, "#weight-0 input[type=range]")
    wait.until(lambda d: slider.get_attribute("value") == "0.25")
    browser.find_element(By.ID, "generate").click()

    summary = browser.find_element(By.CSS_SELECTOR, "#summary textarea")
    wait.until(lambda d: "P(genre)" in (summary.get_attribute("value") or ""))
    text = summary.get_attribute("value")
    assert re.search(r"P\(genre\): (classical|lofi) \d\.\d\d, (classical|lofi) \d\.\d\d", text)
    assert "mean weights classical 0.20, lofi 0.80" in text  # 0.25 : 1, normalised
    player = browser.find_element(By.CSS_SELECTOR, "#audio audio")
    wait.until(lambda d: (player.get_attribute("src") or "").endswith(".wav"))
    wait.until(lambda d: d.execute_script("return arguments[0].readyState", player) >= 1)
    assert browser.execute_script("return arguments[0].duration", player) > 1.0

    links = {
        Path(a.get_attribute("download") or a.get_attribute("href")).suffix: a.get_attribute("href")
        for a in browser.find_elements(By.CSS_SELECTOR, "#downloads a")
    }
    assert set(links) == {".mid", ".wav", ".json"}
    midi = tmp_path / "downloaded.mid"
    with urllib.request.urlopen(links[".mid"], timeout=30) as response:
        midi.write_bytes(response.read())
    notes = len(notes_of(midi))
    assert notes > 0
    assert f"2 bars, {notes} notes" in text
    with urllib.request.urlopen(links[".json"], timeout=30) as response:
        record = json.loads(response.read())
    assert record["weights"] == {"lofi": 0.8, "classical": 0.2}

    artefacts = tmp_path_factory.mktemp("studio-artefacts")
    browser.save_screenshot(str(artefacts / "studio.png"))
    if os.environ.get("MIDIMIX_STUDIO_SCREENSHOT"):  # docs/studio.png is made this way
        shutil.copy(artefacts / "studio.png", os.environ["MIDIMIX_STUDIO_SCREENSHOT"])

    corrupt = tmp_path / "corrupt.mid"
    corrupt.write_bytes(b"MThd\x00\x00\x00\x06garbage, not a MIDI file")
    browser.find_element(By.CSS_SELECTOR, "#prompt input[type=file]").send_keys(str(corrupt))
    wait.until(lambda d: "corrupt.mid is a corrupt MIDI file" in d.page_source)
    assert "Traceback" not in browser.page_source
    browser.save_screenshot(str(artefacts / "studio-bad-upload.png"))


def _summary_of(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, "#summary textarea").get_attribute("value") or ""


def test_two_tabs_generating_at_once_are_queued(
    page: str, browser: Any, studio: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two tabs press Generate together: the requests run one after the other (never
    overlapping) and each tab gets the piece of its own seed."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    intervals: list[tuple[float, float, int]] = []
    run = studio.generate

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = run(*args, **kwargs)
        intervals.append((start, time.perf_counter(), args[1].seed))
        return result

    monkeypatch.setattr(studio, "generate", timed)
    tabs: list[str] = []
    for seed in (11, 12):
        if tabs:
            browser.switch_to.new_window("tab")
        browser.get(page)
        WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.ID, "generate"))
        _set_number(browser, "bars", 2)
        seed_box = browser.find_element(By.CSS_SELECTOR, "#seed input")
        seed_box.clear()
        seed_box.send_keys(str(seed))
        tabs.append(browser.current_window_handle)
    for handle in tabs:  # press both, as fast as the browser allows
        browser.switch_to.window(handle)
        browser.find_element(By.ID, "generate").click()
    for handle, seed in zip(tabs, (11, 12), strict=True):
        browser.switch_to.window(handle)
        WebDriverWait(browser, 90).until(lambda d: "P(genre)" in _summary_of(d))
        links = browser.find_elements(By.CSS_SELECTOR, "#downloads a")
        json_link = next(
            a.get_attribute("href") for a in links if ".json" in a.get_attribute("href")
        )
        with urllib.request.urlopen(json_link, timeout=30) as response:
            assert json.loads(response.read())["seed"] == seed
    assert sorted(seed for _, _, seed in intervals) == [11, 12]
    (_, first_end, _), (second_start, _, _) = sorted(intervals)
    assert first_end <= second_start, "the two requests ran at the same time"
    browser.close()
    browser.switch_to.window(tabs[0])
