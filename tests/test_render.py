"""Rendering with the real FluidSynth and the system General MIDI SoundFont."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
import symusic

from midimix.config import parse_weights
from midimix.drums import CLOSED_HAT, SNARE, DrumStyle, Hit, drum_track, humanise, style_of_keys
from midimix.errors import ConfigError, InputError
from midimix.lofi import LofiConfig, apply_chain, build_chain
from midimix.manifest import Manifest
from midimix.options import config_from_args
from midimix.render import (
    DRUM_BANK,
    RenderConfig,
    Renderer,
    build_parser,
    channel_volume,
    find_soundfont,
    main,
    normalise_loudness,
    plan_layers,
    render,
    render_file,
    render_many,
)
from midimix.synth import Synthesizer


def new_score() -> Any:  # symusic's stubs know no attributes
    return symusic.Score(TPQ)


def new_track(name: str, program: int) -> Any:
    return symusic.Track(name, program=program)


RATE_HZ = 22_050  # half the default rate keeps the tests quick
TPQ = 480
QPM = 120.0  # 0.5 s per quarter note
TAIL_SECONDS = 0.5


def make_midi(path: Path, quarters: int, pitches: tuple[int, ...] = (60, 64, 67)) -> Path:
    """Chords of `pitches`, one per quarter note, at 120 BPM: `quarters` * 0.5 s long."""
    score = new_score()
    score.tempos.append(symusic.Tempo(0, QPM))
    track = new_track("piano", program=0)
    for q in range(quarters):
        for pitch in pitches:
            track.notes.append(symusic.Note(q * TPQ, TPQ, pitch, 90))
    score.tracks.append(track)
    score.dump_midi(str(path))
    return path


@pytest.fixture(scope="module")
def midi_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("midi")
    make_midi(folder / "four_seconds.mid", 8)
    make_midi(folder / "two_seconds.mid", 4, pitches=(48, 55, 64))
    empty = new_score()
    empty.tracks.append(new_track("empty", program=0))
    empty.dump_midi(str(folder / "no_notes.mid"))
    (folder / "not_midi.mid").write_text("this is a text file, not MIDI\n")
    good = (folder / "four_seconds.mid").read_bytes()
    (folder / "truncated.mid").write_bytes(good[: len(good) // 2])
    return folder


def config(**changes: object) -> RenderConfig:
    base: dict[str, object] = {"sample_rate_hz": RATE_HZ, "tail_seconds": TAIL_SECONDS}
    base.update(changes)
    return RenderConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(config(drums="off"))


def test_known_notes_render_to_the_expected_sample_count(midi_dir: Path, tmp_path: Path) -> None:
    out = render(midi_dir / "four_seconds.mid", tmp_path / "a.wav", config())
    info = sf.info(str(out))
    assert info.samplerate == RATE_HZ and info.channels == 2
    assert info.frames == round((4.0 + TAIL_SECONDS) * RATE_HZ)  # last note ends at 4.0 s
    audio, _ = sf.read(str(out))
    for second in range(4):  # a chord sounds in every second of the piece
        chunk = audio[second * RATE_HZ : (second + 1) * RATE_HZ]
        assert 20 * np.log10(np.sqrt(np.mean(chunk**2))) > -40.0


@pytest.mark.parametrize("target_lufs", [-16.0, -23.0])
def test_output_loudness_is_within_1_lu_of_the_target(
    midi_dir: Path, tmp_path: Path, target_lufs: float
) -> None:
    cfg = config(genre_weights={"lofi": 1.0}, target_lufs=target_lufs, format="flac")
    out = render(midi_dir / "four_seconds.mid", tmp_path / "a.flac", cfg)
    audio, rate = sf.read(str(out))
    assert pyloudnorm.Meter(rate).integrated_loudness(audio) == pytest.approx(target_lufs, abs=1.0)
    assert np.max(np.abs(audio)) <= 10 ** (-1 / 20) + 1e-4  # peaks at or under -1 dBFS


def test_lofi_amount_zero_gives_the_clean_render(midi_dir: Path, tmp_path: Path) -> None:
    # Fresh synthesizers on both sides: FluidSynth reuses voices, and the first attack of a
    # file depends slightly on what the reused voices played before.
    cfg = config(genre_weights={"lofi": 1.0}, lofi_amount=0.0, drums="off", bit_depth=24)
    out = tmp_path / "zero.wav"
    with Renderer(cfg) as lofi_zero:
        lofi_zero.render(midi_dir / "four_seconds.mid", out)
    with Renderer(cfg) as clean_renderer:
        clean, _, _ = clean_renderer.synthesize(midi_dir / "four_seconds.mid")
    expected, _ = normalise_loudness(clean, RATE_HZ, cfg.target_lufs, cfg.peak_dbfs)
    written, _ = sf.read(str(out), dtype="float32")
    assert written.shape == expected.shape
    assert np.max(np.abs(written - expected)) < 1e-4
    # and the full chain does change it, by far more than that
    wet = apply_chain(build_chain(LofiConfig(), 1.0, RATE_HZ), clean.T, RATE_HZ).T
    assert np.max(np.abs(wet - clean)) > 1e-2


def test_mix_weights_pick_and_balance_the_instruments(renderer: Renderer, midi_dir: Path) -> None:
    cfg = config(genre_weights=parse_weights("lofi=0.7,classical=0.3"))
    renderer.config = cfg
    score, layers, drums_added = renderer.prepare(midi_dir / "four_seconds.mid")
    melodic = {(layer.program, round(layer.gain, 3)) for layer in layers if layer.bank == 0}
    assert melodic == {(4, 0.7), (0, 0.3)}  # Rhodes at 0.7, grand piano at 0.3
    assert drums_added and [(x.bank, x.program) for x in layers if x.bank == DRUM_BANK] == [
        (DRUM_BANK, 25)
    ]
    assert channel_volume(1.0) == 127 and channel_volume(0.25) == 64  # amplitude = (cc/127)^2
    classical = plan_layers(score, config(genre_weights={"classical": 1.0}, strings=True))
    # piano and strings; the added drum track keeps the file's kit below the lo-fi threshold
    assert {(bank, program) for _, bank, program, _ in classical} == {(0, 0), (0, 48), (128, 0)}


@pytest.mark.parametrize(
    ("weights", "mode", "expected"),
    [
        ({"lofi": 0.7, "classical": 0.3}, "auto", True),
        ({"lofi": 0.3, "classical": 0.7}, "auto", False),
        ({"classical": 1.0}, "on", True),
        ({"lofi": 1.0}, "off", False),
    ],
)
def test_drums_follow_the_mode_and_lofi_weight(
    weights: dict[str, float], mode: str, expected: bool
) -> None:
    assert config(genre_weights=weights, drums=mode).wants_drums(False) is expected
    assert config(genre_weights=weights, drums=mode).wants_drums(True) is False


def test_drum_pattern_is_at_the_piece_tempo_with_a_laid_back_snare() -> None:
    score = new_score()
    score.tempos.append(symusic.Tempo(0, 90.0))
    bars = 16
    track = drum_track(score, bars * 4 * TPQ, DrumStyle(seed=1))
    assert track.is_drum and track.note_num() == bars * 13  # 3 kicks, 2 snares, 8 hats a bar
    snares = [n.time for n in track.notes if n.pitch == SNARE]
    beat_ticks = [(b * 4 + s) * TPQ for b in range(bars) for s in (1, 3)]  # beats 2 and 4
    late_ms = (np.array(snares) - np.array(beat_ticks)) / TPQ * (60_000 / 90.0)
    assert np.median(late_ms) == pytest.approx(18.0, abs=4.0)


def test_added_drums_play_in_the_keys_time() -> None:
    """Keys with their off-beat eighths 0.1 beat late and the beat 0.01 late (swung
    sixteenths in between say nothing of the eighths): the hats follow them, not the default
    swing of 0.62; with too few onsets to tell, the default holds."""
    score = new_score()
    score.tempos.append(symusic.Tempo(0, 80.0))
    keys = symusic.Track("keys", program=0)
    for beat in range(32):
        for at, pitch in ((0.01, 60), (0.6, 64), (0.31, 67), (0.81, 71)):
            keys.notes.append(symusic.Note(round((beat + at) * TPQ), TPQ // 8, pitch, 70))
    score.tracks.append(keys)
    style = style_of_keys(score, seed=1)
    assert style.swing == pytest.approx(0.6, abs=1 / TPQ) and style.on_beat == pytest.approx(
        0.01, abs=1 / TPQ
    )
    track = drum_track(score, 8 * 4 * TPQ, style)
    hats = np.array([n.time for n in track.notes if n.pitch == CLOSED_HAT]) / TPQ
    off = hats[np.round(hats * 2) % 2 == 1] - np.round(hats * 2)[np.round(hats * 2) % 2 == 1] / 2
    assert np.median(off) == pytest.approx(0.1, abs=0.01)  # 6 ms of jitter at 80 BPM: 0.008
    sparse = new_score()
    sparse.tracks.append(symusic.Track("keys", program=0))
    sparse.tracks[0].notes.append(symusic.Note(0, TPQ, 60, 70))
    assert style_of_keys(sparse).swing == DrumStyle().swing == 0.62


def test_humanised_hits_stay_inside_the_piece() -> None:
    hits = [Hit(36, 0.0, 90.0), Hit(38, 960.0, 90.0, late_ms=30.0), Hit(42, 1900.0, 90.0)]
    track = symusic.Track("drums", program=0, is_drum=True)
    rng = np.random.default_rng(0)
    # jitter of 1 s clipped to 5 ms: the downbeat pushed early lands on tick 0, not before
    humanise(track, hits, rng, ticks_per_ms=0.96, end_tick=1920, length_ticks=60,
             timing_jitter_ms=1000.0, jitter_limit_ms=5.0)  # fmt: skip
    ticks = [n.time for n in track.notes]
    assert ticks[0] in (0, 5) and 960 + round(25 * 0.96) <= ticks[1] <= 960 + round(35 * 0.96)
    assert all(0 <= t < 1920 for t in ticks) and all(1 <= n.velocity <= 127 for n in track.notes)


def test_render_many_is_resumable_and_records_failures(midi_dir: Path, tmp_path: Path) -> None:
    inputs = [midi_dir / name for name in ("two_seconds.mid", "no_notes.mid", "not_midi.mid")]
    cfg = config(genre_weights={"lofi": 1.0})
    first = render_many(inputs, tmp_path, cfg, progress=False)
    assert (first.done, first.failed) == (1, 2)
    reasons = dict(first.failures)
    assert "has no notes" in reasons["no_notes"] and "not a MIDI file" in reasons["not_midi"]
    assert sf.info(str(tmp_path / "two_seconds.wav")).frames == round(2.5 * RATE_HZ)
    again = render_many(inputs, tmp_path, cfg, progress=False)
    assert (again.done, again.skipped, again.failed) == (0, 1, 2)
    assert Manifest(tmp_path / "manifest.jsonl").records()["two_seconds"]["status"] == "ok"


def test_cli_renders_one_file(
    midi_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli.wav"
    args = [str(midi_dir / "two_seconds.mid"), "-o", str(out), "--sample-rate", str(RATE_HZ)]
    assert main([*args, "--genre-mix", "lofi=0.7,classical=0.3", "--tail-seconds", "0.5"]) == 0
    assert "lo-fi amount 0.70, drums added" in capsys.readouterr().out
    assert sf.info(str(out)).frames == round(2.5 * RATE_HZ)


@pytest.mark.parametrize(
    ("name", "extra", "message"),
    [
        ("no_notes.mid", [], "has no notes"),
        ("not_midi.mid", [], "is not a MIDI file"),
        ("truncated.mid", [], "is a corrupt MIDI file"),
        (
            "four_seconds.mid",
            ["--lofi-keys-program", "128"],
            r"lofi_keys_program must be in \[0, 127\]",
        ),
        ("four_seconds.mid", ["--lofi-drum-kit", "-1"], r"lofi_drum_kit must be in \[0, 127\]"),
        ("four_seconds.mid", ["--genre-mix", "lofi=abc"], "GENRE=WEIGHT"),
        ("four_seconds.mid", ["--max-seconds", "2"], "longer than max_seconds=2"),
    ],
)
def test_bad_input_gives_one_clear_line_and_exit_2(
    midi_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    extra: list[str],
    message: str,
) -> None:
    code = main([str(midi_dir / name), "-o", str(tmp_path / "x.wav"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert pytest.importorskip("re").search(message, err)
    assert not (tmp_path / "x.wav").exists()


def test_every_lofi_setting_and_the_old_flags_reach_the_config() -> None:
    argv = ["x.mid", "--genre-mix", "lofi=3,classical=1", "--sample-rate", "22050"]
    argv += ["--synth-gain", "0.5", "--lofi.lowpass-hz", "1000", "--lofi.seed", "7", "--strings"]
    args = build_parser().parse_args(argv)
    cfg = config_from_args(RenderConfig, args)
    assert cfg.genre_weights == {"lofi": 0.75, "classical": 0.25}
    assert (cfg.sample_rate_hz, cfg.synth_gain, cfg.strings) == (22_050, 0.5, True)
    assert (cfg.lofi.lowpass_hz, cfg.lofi.seed, cfg.lofi.hiss_db) == (1000.0, 7, -48.0)


def test_two_hour_midi_is_refused_before_any_audio_is_made(tmp_path: Path) -> None:
    score = new_score()
    score.tempos.append(symusic.Tempo(0, QPM))
    track = new_track("piano", program=0)
    track.notes.append(symusic.Note(2 * 3600 * 2 * TPQ, TPQ, 60, 90))  # a note at 2 hours
    score.tracks.append(track)
    score.dump_midi(str(tmp_path / "long.mid"))
    with pytest.raises(InputError, match="lasts 7200 s, longer than max_seconds=1200"):
        render_file(tmp_path / "long.mid", tmp_path / "long.wav", config())


def test_soundfont_search_and_bad_soundfonts(
    midi_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = find_soundfont()
    assert system.is_file() and system.suffix == ".sf2"
    monkeypatch.setenv("MIDIMIX_SOUNDFONT", str(system))
    assert find_soundfont() == system
    with pytest.raises(
        InputError, match="no SoundFont file at .*apt-get install fluid-soundfont-gm"
    ):
        find_soundfont(tmp_path / "missing.sf2")
    not_sf2 = tmp_path / "notes.sf2"
    not_sf2.write_text("not a soundfont")
    with pytest.raises(InputError, match="is not a SoundFont"):
        Renderer(config(soundfont=not_sf2))
    truncated = tmp_path / "truncated.sf2"
    truncated.write_bytes(system.read_bytes()[:4096])  # a real header, then nothing
    with pytest.raises(InputError, match="corrupt or truncated"):
        Renderer(config(soundfont=truncated))
    code = main([str(midi_dir / "two_seconds.mid"), "--soundfont", str(truncated)])
    assert code == 2


def test_config_checks_name_the_field() -> None:
    with pytest.raises(ConfigError, match="drums must be one of auto, on, off; got 'maybe'"):
        config(drums="maybe")
    with pytest.raises(ConfigError, match="bit_depth must be 16 or 24, got 8"):
        config(bit_depth=8)
    assert config(genre_weights=parse_weights("lofi,classical")).genre_weights == {
        "lofi": 0.5,
        "classical": 0.5,
    }
    # the command line's text form, read by the same parser
    assert config(genre_weights="lofi=3,classical=1").genre_weights == {  # type: ignore[arg-type]
        "lofi": 0.75,
        "classical": 0.25,
    }


def test_render_many_with_workers_after_rendering_in_process(
    midi_dir: Path, tmp_path: Path
) -> None:
    """Two worker processes after this process already rendered: same samples, no hang.

    (Forked workers inherited the parent's synthesizer state and hung; they are spawned.)"""
    script = f"""
import sys
import subprocess
import sys
from pathlib import Path
from midimix.render import RenderConfig, render, render_many
cfg = RenderConfig(sample_rate_hz={RATE_HZ}, genre_weights={{"lofi": 1.0}}, workers=2)
src = Path({str(midi_dir / "two_seconds.mid")!r})
render(src, Path({str(tmp_path / "solo.wav")!r}), cfg)
copies = []
for i in range(2):
    copy = Path({str(tmp_path)!r}) / f"copy{{i}}.mid"
    copy.write_bytes(src.read_bytes())
    copies.append(copy)
summary = render_many(copies, Path({str(tmp_path / "many")!r}), cfg, progress=False)
sys.exit(0 if summary.done == 2 else 1)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=90)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    solo, _ = sf.read(str(tmp_path / "solo.wav"))
    for i in range(2):
        many, _ = sf.read(str(tmp_path / "many" / f"copy{i}.wav"))
        assert many.shape == solo.shape


def test_after_synthesis_is_called_once_before_the_effects(midi_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "a.wav"
    calls: list[bool] = []
    render(midi_dir / "two_seconds.mid", out, config(), lambda: calls.append(out.exists()))
    assert calls == [False]  # once, and before the audio file was written
    assert sf.info(str(out)).frames == round((2.0 + TAIL_SECONDS) * RATE_HZ)


def test_the_next_pieces_synthesizer_made_ahead_gives_the_same_samples(midi_dir: Path) -> None:
    renderer = Renderer(config(genre_weights={"lofi": 1.0}))
    first, _, _ = renderer.synthesize(midi_dir / "four_seconds.mid")
    assert renderer.synth._spare_thread is not None  # made while the effects would run
    made_ahead = renderer.synth._take_spare()
    assert made_ahead is not None
    renderer.synth._spare = made_ahead  # the next piece plays on it
    second, _, _ = renderer.synthesize(midi_dir / "four_seconds.mid")
    assert renderer.synth.synth is made_ahead[0]
    assert np.array_equal(first, second) and np.abs(first).max() > 0.01
    renderer.close()
    assert renderer.synth._spare is None and renderer.synth._spare_thread is None


def test_two_synthesizer_threads_give_the_samples_of_one(tmp_path: Path) -> None:
    """FluidSynth's voice threads (synth.cpu-cores) sum in a fixed order: not a sample moves."""
    midi = make_midi(tmp_path / "chords.mid", 24, pitches=(36, 48, 55, 60, 64, 67, 71, 74))
    cfg = config(genre_weights={"lofi": 0.6, "classical": 0.4})  # keys, bass and a drum kit
    audio = {}
    for threads in (1, 2):
        renderer = Renderer(cfg)
        renderer.synth.close()
        renderer.synth = Synthesizer(renderer.soundfont, RATE_HZ, cfg.synth_gain, threads)
        assert renderer.synth.synth.get_setting("synth.cpu-cores") == threads
        audio[threads], layers, drums_added = renderer.synthesize(midi)
        renderer.close()
    assert drums_added and len(layers) >= 2
    assert audio[1].shape == (round((12.0 + TAIL_SECONDS) * RATE_HZ), 2)
    assert np.abs(audio[1]).max() > 0.05
    assert np.array_equal(audio[1], audio[2])


# ---------------------------------------------------------------------------------------
# A genre schedule moves the sound too


def test_bar_starts_follow_time_signatures_and_tempos() -> None:
    from midimix.render import bar_start_seconds

    score = symusic.Score(480)
    score.time_signatures.append(symusic.TimeSignature(0, 3, 4))
    score.time_signatures.append(symusic.TimeSignature(2 * 3 * 480, 4, 4))
    score.tempos.append(symusic.Tempo(0, 60.0))
    score.tempos.append(symusic.Tempo(3 * 480, 120.0))
    # bar 1: 3 beats at 60 (3 s); bar 2: 3 beats at 120 (1.5 s); bar 3 on: 4 beats at 120 (2 s)
    assert bar_start_seconds(score, 4) == pytest.approx([0.0, 3.0, 4.5, 6.5])


def test_a_schedule_crossfades_the_lofi_depth_bar_by_bar(tmp_path: Path) -> None:
    from midi_fixtures import scale_line, write

    from midimix.render import depth_envelope

    env = depth_envelope([0.0, 2.0, 4.0], (0.0, 0.5, 1.0), 6 * 100, 100)
    assert env[0] == 0.0 and env[300] == pytest.approx(0.5) and env[-1] == 1.0
    assert np.all(np.diff(env) >= 0)

    midi = write(scale_line("classical", 0, 8), tmp_path / "line.mid")
    depths = (0.0,) * 4 + (1.0,) * 4
    config = RenderConfig(lofi_per_bar=depths, drums="off", seed=1)
    audio, rate = sf.read(render(midi, tmp_path / "sched.wav", config))
    mono = audio.mean(axis=1)
    bar = 2 * rate  # 4/4 at 120 BPM

    def high_share(chunk: np.ndarray) -> float:
        spectrum = np.abs(np.fft.rfft(chunk)) ** 2
        freqs = np.fft.rfftfreq(len(chunk), 1 / rate)
        return float(spectrum[freqs > 5000].sum() / spectrum.sum())

    first, last = high_share(mono[: 3 * bar]), high_share(mono[5 * bar : 8 * bar])
    assert last < 0.1 * first  # the low-pass of the lo-fi chain closes over the piece
    flat = RenderConfig(lofi_amount=0.0, drums="off", seed=1)
    clean, _ = sf.read(render(midi, tmp_path / "clean.wav", flat))
    assert high_share(clean.mean(axis=1)[5 * bar : 8 * bar]) > 0.5 * first  # not the piece's
