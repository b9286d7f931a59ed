"""Correctness defects found on an older version, each pinned by a test that failed there:
render's output format against its file name, evaluate's effect size and P(genre) intervals,
generate's prompt timing and stale audio, collect's messages for a corrupt mp3 and a failed
download, and the exit status of examples/train_on_your_audio.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import symusic
from audio_fixtures import tone
from midi_fixtures import make_score, scale_line, straight_piece, swung_piece, write

from midimix.collect import CollectConfig, collect
from midimix.collect import main as collect_main
from midimix.errors import ConfigError
from midimix.generate import DEFAULT_MODEL_DIR, GenerateConfig, generate
from midimix.measure import PROBABILITY, EvaluateConfig, effect_size, evaluate_sets, mean_ci95
from midimix.render import RenderConfig, render, render_piece
from midimix.render import main as render_main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
QUIET = CollectConfig(progress=False)


def score_of(path: Path) -> Any:  # symusic's stubs know no attributes
    return symusic.Score(str(path))


# ---------------------------------------------------------------------------------------------
# 1. render: the file's real format is the one its name says, or one line and exit 2


@pytest.fixture(scope="module")
def short_midi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    notes = [(float(beat), 1.0, 60 + beat, 90) for beat in range(2)]  # 1 s at 120 BPM
    return write(make_score(notes), tmp_path_factory.mktemp("render") / "x.mid")


FAST_RENDER = ["--sample-rate", "22050", "--tail-seconds", "0.2"]


def test_render_writes_the_format_its_output_suffix_names(short_midi: Path, tmp_path: Path) -> None:
    assert render_main([str(short_midi), "-o", str(tmp_path / "y.mp3"), *FAST_RENDER]) == 0
    head = (tmp_path / "y.mp3").read_bytes()[:3]
    assert head == b"ID3" or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xe3")  # MPEG frame
    assert sf.info(str(tmp_path / "y.mp3")).format == "MP3"
    assert render_main([str(short_midi), "-o", str(tmp_path / "z.flac"), *FAST_RENDER]) == 0
    assert (tmp_path / "z.flac").read_bytes()[:4] == b"fLaC"
    assert json.loads((tmp_path / "z.render.json").read_text())["config"]["format"] == "flac"


def test_render_refuses_a_suffix_that_disagrees_or_is_no_audio_format(
    short_midi: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wav = tmp_path / "z.wav"
    assert render_main([str(short_midi), "-o", str(wav), "--format", "flac", *FAST_RENDER]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err == f"error: {wav} ends in .wav but the format asked for is flac; name it " \
        ".flac, or ask for wav (--format wav)\n"  # fmt: skip
    ogg = tmp_path / "z.ogg"
    assert render_main([str(short_midi), "-o", str(ogg), *FAST_RENDER]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {ogg}: .ogg is not an audio format render writes; end the output " \
        "name with .wav, .flac, .mp3\n"  # fmt: skip
    assert not wav.exists() and not ogg.exists()
    config = RenderConfig(sample_rate_hz=22_050, tail_seconds=0.2)  # format wav
    with pytest.raises(ConfigError, match=r"ends in \.mp3 but the format asked for is wav"):
        render(short_midi, tmp_path / "b.mp3", config)  # the library too
    assert not (tmp_path / "b.mp3").exists()


# ---------------------------------------------------------------------------------------------
# 2. evaluate: a feature the reference holds constant gives no effect size of 1e14


def at_105_bpm(score: Any, again_at_beat: int) -> Any:
    """The piece at one tempo, 105 BPM, stated twice: as 571,429 us per beat it reads
    104.99992125 BPM, and its time-weighted mean over the two spans differs between pieces in
    the last bit (a std of 5e-15, not 0)."""
    score.tempos.clear()
    score.tempos.append(symusic.Tempo(0, 105.0))
    score.tempos.append(symusic.Tempo(again_at_beat * 480, 105.0))
    return score


@pytest.fixture(scope="module")
def constant_tempo_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("evaluate")
    reference = {
        "classical": [
            write(at_105_bpm(straight_piece(i), 1 + 2 * i), root / f"c{i}.mid") for i in range(8)
        ],
        "lofi": [write(swung_piece(i), root / f"l{i}.mid") for i in range(8)],
    }
    generated = {
        "straight": [write(straight_piece(100 + i), root / f"gs{i}.mid") for i in range(4)],
        "swung": [write(swung_piece(100 + i), root / f"gw{i}.mid") for i in range(4)],
        "one": [write(swung_piece(200), root / "one.mid")],
        "two": [write(straight_piece(3), root / "t0.mid"), write(swung_piece(3), root / "t1.mid")],
    }  # fmt: skip
    report, _ = evaluate_sets(generated, reference, EvaluateConfig(cv_folds=3, plots=False))
    return report


def test_a_constant_reference_feature_gives_a_bounded_effect_size(
    constant_tempo_sets: dict[str, Any],
) -> None:
    report = constant_tempo_sets
    assert 0 < report["reference"]["classical"]["feature_stds"]["tempo_qpm"] < 1e-12
    for label in ("straight", "swung"):
        vs_classical = report["generated"][label]["distances"]["classical"]
        assert vs_classical["per_feature"]["tempo_qpm"]["effect_size"] is None  # left out
        effects = [v["effect_size"] for v in vs_classical["per_feature"].values()]
        assert max(e for e in effects if e is not None) < 1e3  # not 1e7 .. 1e14
        assert vs_classical["mean_effect_size"] < 100
    assert report["generated"]["straight"]["closest_genre"] == "classical"
    assert report["generated"]["swung"]["closest_genre"] == "lofi"
    same = np.full(5, 104.99992125005906)
    assert effect_size(same, np.r_[same, 104.99992125005905]) == 0.0
    assert effect_size(np.full(3, 90.0), np.r_[same, 104.99992125005905]) is None
    assert effect_size(np.array([3.0]), np.array([0.0, 2.0])) == 2.0  # |3 - 1| / std 1


# ---------------------------------------------------------------------------------------------
# 3. P(genre) intervals stay inside 0..1; one piece gets the whole range, not a point


def test_probability_intervals_stay_in_0_to_1(constant_tempo_sets: dict[str, Any]) -> None:
    assert mean_ci95([0.0, 1.0], PROBABILITY) == (0.5, 0.0, 1.0)  # t(0.975, 1) = 12.7: clipped
    assert mean_ci95([0.21], PROBABILITY) == (0.21, 0.0, 1.0)
    mean, low, high = mean_ci95([0.2, 0.25, 0.3], PROBABILITY)  # inside: the plain t interval
    assert (mean, high - mean) == pytest.approx((0.25, 4.302653 * 0.05 / np.sqrt(3)), rel=1e-5)
    assert low == pytest.approx(0.5 - high)
    for label, generated in constant_tempo_sets["generated"].items():
        for p in generated["p_genre"].values():
            assert 0.0 <= p["ci95"][0] <= p["mean"] <= p["ci95"][1] <= 1.0, label
    for p in constant_tempo_sets["generated"]["one"]["p_genre"].values():
        assert p["ci95"] == [0.0, 1.0]


# ---------------------------------------------------------------------------------------------
# 4 and 5. generate: the prompt keeps its tempo and length; no stale audio beside a new record


def generate_fast(out_dir: Path, **fields: Any) -> Any:
    config = GenerateConfig(
        **{"genre_mix": {"lofi": 1.0}, "bars": 2, "device": "cpu", "threads": 1,
           "progress": False, "render": False, **fields}
    )  # fmt: skip
    render_audio = render_piece if config.render else None
    return generate(DEFAULT_MODEL_DIR, out_dir, config, render_audio=render_audio)[0]


def test_a_midi_prompt_keeps_its_own_tempo_and_length(tmp_path: Path) -> None:
    # 16 quarter notes at 90 BPM, a few ticks off the grid: the tokenizer reads 94.37 BPM
    notes = [
        (i + (7 / 480 if i % 3 else 0), 400 / 480, 60 + (i * 5) % 12, 70 + i) for i in range(16)
    ]
    prompt = write(make_score(notes, qpm=90.0), tmp_path / "prompt90.mid")
    piece = generate_fast(tmp_path / "out", prompt=prompt)
    out, given = score_of(piece.midi_path), score_of(prompt)
    assert out.ticks_per_quarter == given.ticks_per_quarter == 480
    assert (out.tempos[0].time, round(out.tempos[0].qpm, 3)) == (0, 90.0)  # not 94.37
    last_start = 15 * 480  # the prompt's last onset; the model may change tempo only after it
    assert all(t.time > last_start for t in out.tempos[1:])
    out_notes = {(n.time, n.duration, n.pitch, n.velocity) for t in out.tracks for n in t.notes}
    given_notes = [(n.time, n.duration, n.pitch, n.velocity) for n in given.tracks[0].notes]
    assert len(given_notes) == 16 and set(given_notes) <= out_notes  # tick for tick
    assert max(n.start for n in out.to("second").tracks[0].notes) == pytest.approx(10.0, abs=1e-3)
    assert out.note_num() > 16  # and the new material after it


def test_no_render_removes_the_audio_an_earlier_run_left(tmp_path: Path) -> None:
    first = generate_fast(tmp_path, render=True)
    wav = tmp_path / "lofi-seed0.wav"
    assert first.audio_path == wav and wav.is_file()
    assert (tmp_path / "lofi-seed0.render.json").is_file()
    second = generate_fast(tmp_path, render=False)
    assert second.audio_path is None
    assert json.loads(second.provenance_path.read_text())["audio"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lofi-seed0.json", "lofi-seed0.mid"]


# ---------------------------------------------------------------------------------------------
# 6 and 7. collect: a corrupt mp3 "could not be decoded", silently; a failed download, one line


def test_a_corrupt_mp3_is_recorded_as_undecodable_and_the_decoder_stays_quiet(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.mp3"
    sf.write(str(good), tone(2.0, 44_100), 44_100, format="MP3", subtype="MPEG_LAYER_III")
    data = good.read_bytes()
    noise = np.random.default_rng(0).integers(0, 256, len(data) - 200, dtype=np.uint8)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "scrambled.mp3").write_bytes(data[:200] + noise.tobytes())
    capfd.readouterr()
    (record,) = collect({"lofi": [tmp_path / "in"]}, tmp_path / "raw", QUIET).records
    captured = capfd.readouterr()
    assert record["status"] == "failed"
    assert "could not be decoded: corrupt, or a format that is not supported" in record["reason"]
    assert "possibly a pipe" not in record["reason"]
    assert "MPEG" not in captured.err and "Note:" not in captured.err, captured.err


def test_a_failed_download_is_said_once(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    url = "http://127.0.0.1:9/piece.mp3"  # the discard port: refused at once, offline or not
    argv = ["--genre", f"lofi={url}", "--raw-dir", str(tmp_path), "--no-progress"]
    assert collect_main(argv) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: could not download {url}: ")
    assert "Connection refused" in err and "caused by" not in err


# ---------------------------------------------------------------------------------------------
# 8. examples/train_on_your_audio.py: a failed item makes the exit status 1


def test_train_on_your_audio_exits_1_when_an_item_failed(tmp_path: Path) -> None:
    for genre in ("lofi", "classical"):
        for i in range(3):
            write(scale_line(genre, i, bars=4), tmp_path / genre / f"{genre}{i}.mid")
    (tmp_path / "lofi" / "broken.mp3").write_bytes(b"\x00not audio\xff" * 200)
    command = [sys.executable, str(EXAMPLES / "train_on_your_audio.py"), "lofi", "classical"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*command, "--tiny"], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert "collect: 0 done, 0 up to date, 1 failed" in done.stdout
    assert "piece:  data/out/mix-lofi70-classical30-seed0.mid" in done.stdout  # it went on
