"""Transcription with the real basic-pitch model: known notes in, notes and tempo out."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pretty_midi
import pytest
import soundfile as sf
import symusic

from midimix.errors import ConfigError
from midimix.transcribe import (
    EDGE_FRAMES,
    MIN_SEAM_FRAMES,
    SAMPLE_RATE_HZ,
    WINDOW_FRAMES,
    TranscribeConfig,
    activations_to_notes,
    aligned_starts,
    clip_onset_threshold,
    frame_count,
    load_clip,
    load_model,
    main,
    model_path,
    onset_level,
    run_model,
    seam_weights,
    transcribe,
    window_audio,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import roundtrip_set as rs  # noqa: E402

SINE_HZ = 440.0  # A4, MIDI 69
SINE_SECONDS = 4.0
CLIP_SECONDS = 6.0
CLICK_BPM = 90.0
PIECE_SECONDS = 12.0


def sine(seconds: float, rate_hz: int, total_seconds: float, amplitude: float = 0.4) -> np.ndarray:
    """A sine tone with 10 ms fades, zero-padded to `total_seconds` like a prepared clip."""
    t = np.arange(round(seconds * rate_hz)) / rate_hz
    tone = amplitude * np.sin(2 * np.pi * SINE_HZ * t)
    fade = round(0.01 * rate_hz)
    tone[:fade] *= np.linspace(0, 1, fade)
    tone[-fade:] *= np.linspace(1, 0, fade)
    out = np.zeros(round(total_seconds * rate_hz))
    out[: len(tone)] = tone
    return out.astype(np.float32)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """clips/good: a sine, a 90 BPM piano click, a short chorale; clips/bad: bad inputs."""
    root = tmp_path_factory.mktemp("transcribe")
    good, bad = root / "clips" / "good", root / "clips" / "bad"
    good.mkdir(parents=True)
    bad.mkdir(parents=True)
    sf.write(good / "sine.wav", sine(SINE_SECONDS, SAMPLE_RATE_HZ, CLIP_SECONDS), SAMPLE_RATE_HZ)
    rs.make_piece(
        rs.click_midi(CLICK_BPM, PIECE_SECONDS), "click", "good", CLICK_BPM, root, PIECE_SECONDS
    )
    chorale = rs.chorale_midi("bach/bwv66.6", 100.0, PIECE_SECONDS)
    rs.make_piece(chorale, "chorale", "good", 100.0, root, PIECE_SECONDS)
    sf.write(bad / "silence.wav", np.zeros(SAMPLE_RATE_HZ * 3, np.float32), SAMPLE_RATE_HZ)
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, SAMPLE_RATE_HZ * 3).astype(np.float32)
    sf.write(bad / "noise.wav", noise, SAMPLE_RATE_HZ)
    sf.write(bad / "short.wav", sine(0.5, SAMPLE_RATE_HZ, 0.5), SAMPLE_RATE_HZ)
    sf.write(bad / "rate44k.wav", sine(SINE_SECONDS, 44100, CLIP_SECONDS), 44100)
    whole = (bad / "rate44k.wav").read_bytes()
    (bad / "truncated.wav").write_bytes(whole[: len(whole) // 3])  # header promises more
    (bad / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4)
    return root


@pytest.fixture(scope="module")
def run(clips: Path) -> dict[str, dict]:
    summary = transcribe(clips / "clips", clips / "midi", TranscribeConfig(progress=False))
    assert (summary.done, summary.failed) == (7, 2)
    return {r["id"]: r for r in summary.records}


def pitched_notes(path: Path) -> list[Any]:
    score: Any = symusic.Score(str(path))
    return [n for t in score.tracks if not t.is_drum for n in t.notes]


def test_sustained_sine_is_one_note_at_its_pitch_and_none_in_the_padding(
    run: dict, clips: Path
) -> None:
    assert run["sine"]["status"] == "ok" and run["sine"]["notes"] == 1
    assert run["sine"]["audio_seconds"] == pytest.approx(SINE_SECONDS, abs=0.01)
    score: Any = symusic.Score(str(clips / "midi" / "good" / "sine.mid"))
    score = score.to("second")
    (note,) = score.tracks[0].notes
    assert note.pitch == 69
    assert note.time < 0.1 and SINE_SECONDS - 0.5 < note.end <= SINE_SECONDS + 0.05


def test_click_tempo_and_beat_grid(run: dict, clips: Path) -> None:
    assert run["click"]["tempo_bpm"] == pytest.approx(CLICK_BPM, abs=2.0)
    assert run["click"]["beat_confidence"] > 0.5
    path = clips / "midi" / "good" / "click.mid"
    midi = pretty_midi.PrettyMIDI(str(path))
    beats_per_second = (midi.time_to_tick(11.0) - midi.time_to_tick(1.0)) / 480 / 10.0
    assert beats_per_second * 60 == pytest.approx(CLICK_BPM, abs=1.0)
    # one note per beat (16 of 18 found, measured): each onset within a 64th of a beat tick
    onsets = np.array([n.time for n in pitched_notes(path)])
    assert 15 <= len(onsets) <= 18
    off_grid = np.abs((onsets + 240) % 480 - 240)
    assert off_grid.max() <= 480 // 16


def test_chorale_onset_f1_above_measured_floor(run: dict, clips: Path) -> None:
    # pretty_midi reads the beat-following tempo map back into seconds
    estimate = rs.midi_notes(clips / "midi" / "good" / "chorale.mid")
    reference = rs.known_notes(clips / "midi" / "chorale.mid", PIECE_SECONDS)
    scores = rs.score_notes(reference, estimate)
    assert scores["onset_f1"] > 0.8, scores


def test_bad_inputs_are_recorded_and_the_run_goes_on(run: dict) -> None:
    assert run["silence"]["status"] == "empty" and "silent" in run["silence"]["reason"]
    assert run["noise"]["status"] == "empty" and "noise" in run["noise"]["reason"]
    assert run["short"]["status"] == "empty" and "shorter than" in run["short"]["reason"]
    assert run["truncated"]["status"] == "failed" and "truncated" in run["truncated"]["reason"]
    assert run["corrupt"]["status"] == "failed" and run["corrupt"]["reason"]
    # the wrong rate is resampled, and gives the same single A4
    assert run["rate44k"]["resampled_from_hz"] == 44100
    assert (run["rate44k"]["status"], run["rate44k"]["notes"]) == ("ok", 1)
    for empty in ("silence", "noise", "short"):
        assert run[empty]["output"] is None


def test_rerun_skips_everything_and_manifest_has_all(clips: Path, run: dict) -> None:
    again = transcribe(clips / "clips", clips / "midi", TranscribeConfig(progress=False))
    assert (again.done, again.skipped, again.failed) == (0, 7, 2)  # failed ones are retried
    lines = (clips / "midi" / "manifest.jsonl").read_text().splitlines()
    assert {json.loads(line)["id"] for line in lines} == set(run)


def test_same_notes_as_basic_pitch_predict(clips: Path) -> None:
    import logging

    logging.disable(logging.WARNING)
    from basic_pitch.inference import Model, predict

    path = clips / "clips" / "good" / "chorale.wav"
    _, _, theirs = predict(path, Model(str(model_path())))
    config = TranscribeConfig(
        onset_threshold=0.5, frame_threshold=0.3, melodia=True, window_layout="basic-pitch"
    )  # basic-pitch predict's own thresholds
    audio, _ = load_clip(path)
    ours = activations_to_notes(run_model(audio, load_model(), layout="basic-pitch"), config)
    assert sorted((round(s, 4), p) for s, _, p, _ in ours) == sorted(
        (round(float(s), 4), int(p)) for s, _, p, _, _ in theirs
    )


def test_aligned_layout_covers_a_clip_with_fewer_windows() -> None:
    n_frames = frame_count(np.zeros(30 * SAMPLE_RATE_HZ))  # 2,580 as basic-pitch counts them
    starts = aligned_starts(n_frames)
    assert len(starts) == 16 and len(window_audio(np.zeros(30 * SAMPLE_RATE_HZ))) == 19
    assert starts[0] == 0 and starts[-1] + WINDOW_FRAMES == n_frames + 2 * EDGE_FRAMES
    assert np.all(WINDOW_FRAMES - np.diff(starts) >= MIN_SEAM_FRAMES)
    assert list(aligned_starts(100)) == [0]  # 100 frames and both edges fit one window
    # the crossfade's weights cover every frame once in all
    weights = seam_weights(starts)
    coverage = np.zeros(starts[-1] + WINDOW_FRAMES)
    for start, row in zip(starts, weights, strict=True):
        coverage[start : start + WINDOW_FRAMES] += row
    assert np.allclose(coverage, 1.0) and weights[1, 0] < 0.2 and weights[0, -1] < 0.2


@pytest.mark.parametrize("layout", ["aligned", "basic-pitch"])
def test_a_held_tone_stays_level_across_window_seams(layout: str) -> None:
    # 3.5 s tones starting at several times cross one or two seams each. Measured largest
    # frame-to-frame change of the note activation: 0.034 aligned (crossfaded), 0.04
    # basic-pitch, 0.13-0.31 with the same 8-frame overlaps cut in the middle instead.
    rate, steps = SAMPLE_RATE_HZ, []
    for start_s in (5.3, 10.0, 17.5):
        audio = np.concatenate([np.zeros(int(start_s * rate), np.float32), sine(3.5, rate, 4.5)])
        activations = run_model(audio, load_model(), layout=layout)
        assert len(activations["note"]) == frame_count(audio)
        first = int(start_s * rate / 256) + 12  # past the attack
        held = activations["note"][first : first + 270, 69 - 21]  # A4 to 0.2 s before the end
        assert held.min() > 0.5
        steps.append(np.abs(np.diff(held)).max())
    assert max(steps) < 0.08, steps


def test_the_strongest_onset_is_not_lost_to_a_tie_with_an_inferred_one() -> None:
    # a note whose activation jumps a frame before its onset peak: basic-pitch's inferred
    # onset at frame 9 is scaled to the clip's strongest onset, 0.8, and ties with frame 10
    note = np.zeros((100, 88), np.float32)
    onset = np.zeros((100, 88), np.float32)
    note[9:60, 48] = 0.8
    onset[9:12, 48] = (0.5, 0.8, 0.3)
    activations = {"note": note, "onset": onset, "contour": np.zeros((100, 264), np.float32)}
    exact = TranscribeConfig(onset_threshold=0.5, window_layout="basic-pitch")
    assert activations_to_notes(activations, exact) == []  # predict's own: no note at all
    ((start, end, pitch, _),) = activations_to_notes(activations, TranscribeConfig())
    assert (pitch, start) == (69, pytest.approx(10 * 256 / SAMPLE_RATE_HZ))
    assert end == pytest.approx(59 * 256 / SAMPLE_RATE_HZ, abs=0.02)
    # a pitch range below A4 drops the note, and leaves the activations as they were
    below = TranscribeConfig(max_pitch_hz=400.0)
    assert activations_to_notes(activations, below) == []
    assert note[30, 48] == pytest.approx(0.8) and onset[10, 48] == pytest.approx(0.8)
    assert len(activations_to_notes(activations, TranscribeConfig())) == 1


def test_config_checks_ranges() -> None:
    with pytest.raises(ConfigError, match="onset_threshold"):
        TranscribeConfig(onset_threshold=1.5)
    with pytest.raises(ConfigError, match="tempo_map"):
        TranscribeConfig(tempo_map="fast")
    with pytest.raises(ConfigError, match="window_layout"):
        TranscribeConfig(window_layout="tight")
    with pytest.raises(ConfigError, match="min_pitch_hz"):
        TranscribeConfig(min_pitch_hz=1000.0, max_pitch_hz=200.0)


def test_cli_missing_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--clips-dir", str(tmp_path / "nope"), "--midi-dir", str(tmp_path / "m")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_runs_and_prints_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "clips" / "lofi"
    folder.mkdir(parents=True)
    sf.write(folder / "quiet.wav", np.zeros(SAMPLE_RATE_HZ, np.float32), SAMPLE_RATE_HZ)
    argv = ["--clips-dir", str(tmp_path / "clips"), "--midi-dir", str(tmp_path / "midi")]
    assert main([*argv, "--no-progress"]) == 0
    assert "transcribe: 1 done, 0 up to date, 1 empty, 0 failed" in capsys.readouterr().out
    saved = json.loads((tmp_path / "midi" / "transcribe.config.json").read_text())
    assert not (tmp_path / "midi" / "transcribe.json").exists()  # one name: <stage>.config.json
    assert saved["onset_threshold"] is None  # per clip by default
    assert saved["onset_ratio"] == 0.78 and saved["frame_threshold"] == 0.25


def test_onset_threshold_per_clip() -> None:
    """Default: 0.78 x the clip's onset level (99.99th percentile), within 0.5-0.7 (0.3-0.5
    with --hpss); a given --onset-threshold holds for every clip."""
    onsets = np.zeros((10_000, 88), np.float32)
    onsets[:10, 0] = 0.8  # 10 of 880,000 values: above the 99.99th percentile (88th largest)
    onsets[10:200, 1] = 0.6  # the level: 0.6
    assert onset_level(onsets) == pytest.approx(0.6, abs=1e-4)
    default, hpss = TranscribeConfig(), TranscribeConfig(hpss=True)
    assert clip_onset_threshold(onsets, hpss) == pytest.approx(0.468, abs=1e-4)
    assert clip_onset_threshold(onsets, default) == pytest.approx(0.5)  # 0.468: the floor
    assert clip_onset_threshold(onsets * 1.3, default) == pytest.approx(0.6084, abs=1e-4)
    assert clip_onset_threshold(onsets * 1.5, default) == 0.7  # 0.702: capped
    assert clip_onset_threshold(onsets * 1.5, hpss) == 0.5
    assert clip_onset_threshold(onsets, TranscribeConfig(onset_threshold=0.65)) == 0.65
    assert clip_onset_threshold(np.zeros((5, 88), np.float32), default) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="onset_ratio"):
        TranscribeConfig(onset_ratio=-1.0)


def test_drum_track_holds_the_percussive_onsets(tmp_path: Path) -> None:
    import mir_eval

    tempo_bpm = 140.0
    midi = rs.lofi_midi(tempo_bpm, seed=1, drums=True, max_seconds=PIECE_SECONDS)
    piece = rs.make_piece(midi, "lofi", "lofi", tempo_bpm, tmp_path, PIECE_SECONDS)
    config = TranscribeConfig(drums=True, progress=False)
    summary = transcribe(tmp_path / "clips", tmp_path / "out", config)
    assert summary.done == 1 and summary.records[0]["drum_hits"] > 0
    out = pretty_midi.PrettyMIDI(str(tmp_path / "out" / "lofi" / f"{piece.id}.mid"))
    (kit,) = [inst for inst in out.instruments if inst.is_drum]
    assert {n.pitch for n in kit.notes} <= {36, 38, 42}
    (known,) = [inst for inst in midi.instruments if inst.is_drum]

    def f1(reference: list[float], found: list[float]) -> float:
        ref, est = np.unique(np.round(reference, 3)), np.unique(np.round(found, 3))
        return float(mir_eval.onset.f_measure(ref, est, window=0.05)[0])

    # every drum onset, whatever the kind: measured 0.98 (56 onsets in 12 s)
    assert f1([n.start for n in known.notes], [n.start for n in kit.notes]) > 0.9
    # by kind (the band of each): hats 0.99 and kicks 0.85; the snare band also rises with
    # the dense hats at 140 BPM, so snares come out at 0.55 (30 found for 14)
    by_kind = {
        pitch: f1(
            [n.start for n in known.notes if n.pitch == pitch],
            [n.start for n in kit.notes if n.pitch == pitch],
        )
        for pitch in (36, 38, 42)
    }
    assert by_kind[42] > 0.9 and by_kind[36] > 0.75 and by_kind[38] > 0.45


# -- long inputs: blocks of bounded memory, the same notes as one pass ---------------------


def _notes_audio(seconds: float, seed: int = 0) -> np.ndarray:
    """Overlapping decaying tones (0.2-3 s, MIDI 40-84) at random times: many notes, some
    held across the blocks' edges."""
    rng = np.random.default_rng(seed)
    rate = SAMPLE_RATE_HZ
    audio = np.zeros(round(seconds * rate), np.float32)
    for _ in range(int(seconds * 3)):
        start, length = rng.uniform(0, seconds - 3), rng.uniform(0.2, 3.0)
        pitch = int(rng.integers(40, 85))
        t = np.arange(round(length * rate)) / rate
        tone = np.sin(2 * np.pi * 440 * 2 ** ((pitch - 69) / 12) * t) * np.exp(-t / 1.5)
        tone[: round(0.005 * rate)] *= np.linspace(0, 1, round(0.005 * rate))
        first = round(start * rate)
        audio[first : first + len(tone)] += 0.15 * tone.astype(np.float32)
    return audio


@pytest.mark.parametrize("config", [TranscribeConfig(), TranscribeConfig(max_pitch_hz=600.0)])
def test_notes_found_block_by_block_are_the_notes_of_one_pass(
    config: TranscribeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    transcribe_module = sys.modules["midimix.transcribe"]  # the module, not the stage function
    activations = run_model(_notes_audio(40.0), load_model())
    monkeypatch.setattr(transcribe_module, "NOTE_BLOCK_FRAMES", 10**9)
    one_pass = activations_to_notes(activations, config)
    monkeypatch.setattr(transcribe_module, "NOTE_BLOCK_FRAMES", 500)  # 6 s blocks
    monkeypatch.setattr(transcribe_module, "NOTE_TAIL_FRAMES", 300)  # notes up to 3.5 s whole
    blocks = activations_to_notes(activations, config)
    assert len(one_pass) >= 10  # a real test: notes, some held across block edges
    assert any(s < k * 500 * 256 / SAMPLE_RATE_HZ < e for s, e, _, _ in one_pass for k in (1, 2))
    assert blocks == one_pass


def test_long_features_computed_in_blocks_match_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    import librosa

    import midimix.transcribe_beats as beats_module
    from midimix.transcribe_beats import framewise, onset_envelope

    audio = _notes_audio(50.0, seed=1)

    def flatness(y: np.ndarray) -> np.ndarray:
        return librosa.feature.spectral_flatness(y=y, n_fft=2048, hop_length=2048)[0]

    whole = flatness(audio)
    blocked = framewise(audio, SAMPLE_RATE_HZ, 2048, flatness, block_seconds=7.0)
    assert len(blocked) == len(whole) and np.array_equal(blocked, whole)
    whole = librosa.onset.onset_strength(y=audio, sr=SAMPLE_RATE_HZ, hop_length=512)
    monkeypatch.setattr(beats_module, "BLOCK_SECONDS", 7.0)
    blocked = onset_envelope(audio, SAMPLE_RATE_HZ)  # 8 blocks, the 80 dB floor of the whole
    assert len(blocked) == len(whole) and np.allclose(blocked, whole, rtol=0, atol=1e-5)


def test_the_end_of_the_audio_is_found_without_an_index_of_every_sample() -> None:
    from midimix.transcribe import audio_end

    cases = [np.zeros(0), np.zeros(9), np.r_[np.zeros(3 << 20), 1.0, np.zeros(7)]]
    cases += [np.r_[np.ones(3), np.zeros(5 << 20)], np.r_[np.zeros((1 << 20) - 1), 2.0]]
    for audio in cases:
        nonzero = np.flatnonzero(audio)
        assert audio_end(audio) == (int(nonzero[-1]) + 1 if len(nonzero) else 0)
