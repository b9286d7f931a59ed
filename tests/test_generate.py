"""Generation end to end with a tiny real GPT-2 (untrained: random tokens are the hardest test
of the grammar) and the real miditok tokenizer: every piece decodes to MIDI with notes and
exactly the requested bars; mixes, schedules, prompts, provenance and bad input."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import symusic
import torch

from midimix.config import save_config
from midimix.errors import ConfigError, InputError
from midimix.generate import GenerateConfig, generate, parse_genre_mix, parse_schedule
from midimix.generate.__main__ import audio_renderer, main
from midimix.manifest import sha256_file
from midimix.model import build_model, save_checkpoint
from midimix.sampler import MixPlan, Sampling, sample_tokens, tokenizer_grammar
from midimix.tokenize import GenreTokenizer, TokenizeConfig

gen = importlib.import_module("midimix.generate")  # the module, whatever `midimix` re-exports

GENRES = ["classical", "lofi"]


def fast(**fields: Any) -> GenerateConfig:
    """A config with short bars and no audio: fast tests."""
    return GenerateConfig(**{"max_tokens_per_bar": 24, "render": False, "device": "cpu", **fields})


def score_of(path: Path) -> Any:  # symusic ships incomplete type information
    return symusic.Score(str(path))


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)  # tiny matrices: threads only add contention on a busy machine


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer = GenreTokenizer.build(GENRES, TokenizeConfig())
    torch.manual_seed(0)
    model = build_model(
        tokenizer.vocab_size, "tiny", tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id
    )
    return save_checkpoint(model, tokenizer, {"step": 0}, tmp_path_factory.mktemp("ckpt") / "best")


@pytest.fixture(scope="module")
def loaded(model_dir: Path):
    from midimix.model import load_checkpoint

    model, tokenizer, _ = load_checkpoint(model_dir)
    return model, tokenizer, tokenizer_grammar(tokenizer)


def bars_and_notes(score: Any) -> tuple[int, int]:
    """(bars up to the last note onset, from the file's own time signatures; notes)."""
    onsets = [n.time for t in score.tracks for n in t.notes]
    if not onsets:
        return 0, 0
    return sum(int(d <= max(onsets)) for d in score.get_downbeats()), len(onsets)


# ---------------------------------------------------------------------------------------
# Parsing


def test_parse_genre_mix() -> None:
    assert parse_genre_mix("lofi=0.7,classical=0.3", GENRES) == pytest.approx(
        {"lofi": 0.7, "classical": 0.3}
    )
    assert parse_genre_mix("lofi=70%, classical=30%", GENRES) == pytest.approx(
        {"lofi": 0.7, "classical": 0.3}
    )
    assert parse_genre_mix("lofi=3,classical=1", GENRES) == pytest.approx(
        {"lofi": 0.75, "classical": 0.25}
    )
    assert parse_genre_mix("lofi", GENRES) == {"lofi": 1.0}
    assert parse_genre_mix(None, GENRES) == {"classical": 0.5, "lofi": 0.5}
    assert parse_genre_mix("", GENRES) == {"classical": 0.5, "lofi": 0.5}
    assert list(parse_genre_mix("lofi=1,classical=0", GENRES).values()) == [1.0, 0.0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("jazz=1", "this model knows classical, lofi"),
        ("lofi=-0.5,classical=1", "non-negative"),
        ("lofi=0,classical=0", "at least one weight above 0"),
        ("lofi=abc", "GENRE=WEIGHT"),
        ("lofi=1,lofi=2", "given twice"),
        ("=0.5", "no genre"),
        ("lofi=nan", "non-negative"),
    ],
)
def test_parse_genre_mix_rejects(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_genre_mix(text, GENRES)


def test_parse_schedule_forms() -> None:
    assert parse_schedule("classical->lofi", GENRES) == [
        (0.0, {"classical": 1.0}),
        (1.0, {"lofi": 1.0}),
    ]
    three = parse_schedule("classical->lofi->classical", GENRES)
    assert [place for place, _ in three] == [0.0, 0.5, 1.0]
    keys = parse_schedule("classical@0, lofi=1+classical=1@0.5, lofi@1", GENRES)
    assert keys[1] == (0.5, {"lofi": 0.5, "classical": 0.5})


@pytest.mark.parametrize(
    "text",
    ["classical", "classical->", "classical@0,lofi@2", "lofi@1,classical@0", "classical@x,lofi@1",
     "classical->lofi@1", "classical->jazz", "classical@0"],
)  # fmt: skip
def test_parse_schedule_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_schedule(text, GENRES)


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ConfigError, match="temperature"):
        GenerateConfig(temperature=0)
    with pytest.raises(ConfigError, match="top_p"):
        GenerateConfig(top_p=0)
    with pytest.raises(ConfigError, match="mix_method"):
        GenerateConfig(mix_method="average")
    with pytest.raises(ConfigError, match="not both"):
        GenerateConfig(genre_mix={"lofi": 1}, schedule="classical->lofi")
    with pytest.raises(ConfigError, match="bars or as seconds, not both"):
        GenerateConfig(bars=4, seconds=8)
    with pytest.raises(ConfigError, match="empty step"):
        GenerateConfig(schedule="classical->")  # the schedule's form, before any model loads
    assert GenerateConfig(seconds=9).target_bars == 5  # 2 s per 4/4 bar at 120 BPM
    assert GenerateConfig(bars=3).target_bars == 3
    assert GenerateConfig().target_bars == 16


def test_genre_mix_text_is_parsed_by_the_config() -> None:
    assert GenerateConfig(genre_mix="lofi=3,classical=1").genre_mix == {  # type: ignore[arg-type]
        "lofi": 0.75,
        "classical": 0.25,
    }
    assert GenerateConfig(genre_mix="").genre_mix is None  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="non-negative"):
        GenerateConfig(genre_mix="lofi=-1")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# Sampling


SETTINGS = [  # (method, rule, guidance, bars, weights lofi/classical, temperature, top_k, top_p)
    ("logits", "product", 0.0, 1, (0.7, 0.3), 1.0, 0, 0.95),
    ("logits", "product", 1.5, 3, (0.5, 0.5), 1.0, 0, 0.95),
    ("logits", "mixture", 0.0, 6, (0.3, 0.7), 1.2, 0, 1.0),
    ("logits", "product", 0.0, 2, (1.0, 0.0), 0.8, 20, 0.9),
    ("logits", "mixture", 3.0, 4, (0.9, 0.1), 1.0, 5, 0.95),
    ("embedding", "product", 0.0, 5, (0.7, 0.3), 1.0, 0, 0.95),
    ("embedding", "product", 2.0, 2, (0.2, 0.8), 1.0, 0, 0.95),
    ("embedding", "product", 0.0, 7, (0.5, 0.5), 1.5, 0, 1.0),
    ("logits", "product", 0.0, 8, (0.6, 0.4), 2.0, 0, 1.0),
    ("embedding", "product", 1.0, 3, (1.0, 0.0), 0.7, 10, 0.8),
]


def test_fifty_mixed_sequences_decode_with_notes_and_exact_bars(loaded) -> None:
    model, tokenizer, grammar = loaded
    checked, restarts = 0, 0
    for seed, (method, rule, guidance, bars, w, temp, k, p) in enumerate(SETTINGS):
        plan = MixPlan(
            method,
            [tokenizer.genre_id("lofi"), tokenizer.genre_id("classical")],
            torch.tensor([w]).repeat(bars, 1),
            rule,
            guidance,
            tokenizer.any_id,
        )
        result = sample_tokens(
            model, grammar, plan, Sampling(temp, k, p, seed, 24),
            bos_id=tokenizer.bos_id, num_samples=5, target_bars=bars,
        )  # fmt: skip
        restarts += result.restarts
        assert result.bars == [bars] * 5
        for ids in result.ids:
            assert bars_and_notes(tokenizer.decode(ids))[0] == bars
            assert bars_and_notes(tokenizer.decode(ids))[1] >= 1
            checked += 1
    assert checked == 50
    assert restarts > 0  # the longest pieces outgrew the 128-token context: sliding window


def test_fixed_length_runs_exactly_that_many_tokens(loaded) -> None:
    model, tokenizer, grammar = loaded
    plan = MixPlan("logits", [tokenizer.genre_id("lofi")], torch.ones(1, 1))
    result = sample_tokens(
        model, grammar, plan, Sampling(), bos_id=tokenizer.bos_id, num_samples=2,
        target_bars=None, max_new_tokens=300,
    )  # fmt: skip
    assert [len(ids) for ids in result.ids] == [300, 300]
    assert result.restarts >= 3  # 300 tokens through a 128-token context, half kept each time


# ---------------------------------------------------------------------------------------
# The stage


def test_generate_writes_midi_and_provenance_and_repeats_with_the_seed(
    model_dir: Path, tmp_path: Path
) -> None:
    config = fast(genre_mix={"lofi": 0.7, "classical": 0.3}, bars=3, seed=7)
    first = generate(model_dir, tmp_path / "a", config)
    again = generate(model_dir, tmp_path / "b", config)
    other = generate(
        model_dir,
        tmp_path / "c",
        fast(genre_mix={"lofi": 0.7, "classical": 0.3}, bars=3, seed=8),
    )
    assert first[0].ids == again[0].ids and first[0].ids != other[0].ids
    piece = first[0]
    assert piece.midi_path == tmp_path / "a" / "mix-lofi70-classical30-seed7.mid"
    assert bars_and_notes(score_of(piece.midi_path))[0] == 3
    record = json.loads(piece.provenance_path.read_text())
    assert record["model_sha256"] == sha256_file(model_dir / "model.safetensors")
    assert record["tokenizer_sha256"] == sha256_file(model_dir / "tokenizer.json")
    assert record["weights"] == {"lofi": 0.7, "classical": 0.3}
    assert (record["seed"], record["method"], record["bars"], record["notes"]) == (
        7,
        "logits",
        3,
        piece.notes,
    )
    assert record["sampling"] == {"temperature": 1.0, "top_k": 0, "top_p": 0.95}
    assert set(record["versions"]) >= {"midimix", "torch", "transformers", "miditok"}
    assert record["wall_seconds"] > 0


def test_schedule_weights_move_monotonically(model_dir: Path, tmp_path: Path) -> None:
    config = fast(schedule="classical->lofi", bars=6, mix_method="embedding", num_samples=2)
    pieces = generate(model_dir, tmp_path, config)
    record = json.loads(pieces[0].provenance_path.read_text())
    lofi = [row[record["genres_used"].index("lofi")] for row in record["weights_per_bar"]]
    assert lofi[0] == 0.0 and lofi[-1] == 1.0
    assert all(b > a for a, b in zip(lofi, lofi[1:], strict=False))
    assert [p.midi_path.name for p in pieces] == [
        "sched-classical-to-lofi-emb-seed0-0.mid",
        "sched-classical-to-lofi-emb-seed0-1.mid",
    ]
    for piece in pieces:
        assert bars_and_notes(score_of(piece.midi_path))[0] == 6


def _prompt_midi(path: Path) -> Path:
    """Two 4/4 bars of quarter notes, C4 D4 E4 F4 | G4 A4 B4 C5, at 480 ticks per quarter."""
    score: Any = symusic.Score(480)
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    score.tempos.append(symusic.Tempo(0, 120.0))
    track: Any = symusic.Track(program=0)
    for i, pitch in enumerate([60, 62, 64, 65, 67, 69, 71, 72]):
        track.notes.append(symusic.Note(i * 480, 480, pitch, 80))
    score.tracks.append(track)
    score.dump_midi(str(path))
    return path


def test_prompt_is_continued_in_another_genre(model_dir: Path, tmp_path: Path) -> None:
    prompt = _prompt_midi(tmp_path / "theme.mid")
    config = fast(genre_mix={"lofi": 1.0}, bars=2, prompt=prompt)
    piece = generate(model_dir, tmp_path / "out", config)[0]
    assert piece.midi_path.name == "lofi-from-theme-seed0.mid"
    score = score_of(piece.midi_path)
    notes = sorted((n.time * 480 // score.tpq, n.pitch) for t in score.tracks for n in t.notes)
    theme = [(i * 480, p) for i, p in enumerate([60, 62, 64, 65, 67, 69, 71, 72])]
    assert set(theme) <= set(notes)  # the prompt, note for note ...
    assert [n for n in notes if n[0] < 3360] == theme[:7]  # ... and nothing new before its end
    assert bars_and_notes(score)[0] == 4  # two bars of prompt + two new ones
    assert json.loads(piece.provenance_path.read_text())["prompt"]["sha256"] == sha256_file(prompt)


def test_render_writes_audio_with_the_mix(model_dir: Path, tmp_path: Path) -> None:
    import soundfile as sf

    mix = {"lofi": 0.7, "classical": 0.3}
    config = GenerateConfig(genre_mix=mix, bars=2, max_tokens_per_bar=24, device="cpu")
    piece = generate(model_dir, tmp_path, config, render_audio=audio_renderer())[0]
    assert piece.audio_path == tmp_path / "mix-lofi70-classical30-seed0.wav"
    info = sf.info(str(piece.audio_path))
    assert info.samplerate == 44_100
    assert info.duration >= piece.seconds  # the whole piece, plus the release tail
    assert json.loads(piece.provenance_path.read_text())["audio"] == str(piece.audio_path)


def test_audio_only_through_the_callback_it_is_given(model_dir: Path, tmp_path: Path) -> None:
    heard: list[tuple[str, dict[str, float], int]] = []

    def fake_render(midi_path: Path, weights: dict[str, float], seed: int) -> Path:
        heard.append((midi_path.name, weights, seed))
        return midi_path.with_suffix(".flac")

    mix = {"lofi": 0.7, "classical": 0.3}
    (plain,) = generate(model_dir, tmp_path / "a", fast(genre_mix=mix, bars=1, render=True))
    assert plain.audio_path is None and not list((tmp_path / "a").glob("*.wav"))
    assert plain.text().endswith(" + .json")
    (piece,) = generate(
        out_dir=tmp_path / "b",
        config=fast(genre_mix=mix, bars=1, seed=4, render=True),
        model_dir=model_dir,
        render_audio=fake_render,
    )
    assert heard == [("mix-lofi70-classical30-seed4.mid", {"lofi": 0.7, "classical": 0.3}, 4)]
    assert piece.audio_path == tmp_path / "b" / "mix-lofi70-classical30-seed4.flac"
    assert piece.text().endswith(" + .flac + .json")
    generate(model_dir, tmp_path / "c", fast(genre_mix=mix, bars=1), render_audio=fake_render)
    assert len(heard) == 1  # render=False: the callback is not called


def test_config_given_first_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="write generate\\(config=..., out_dir=...\\)"):
        generate(GenerateConfig(), tmp_path)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# Command line


def test_cli_prints_what_it_wrote(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "--model",
        str(model_dir),
        "--out-dir",
        str(tmp_path),
        "--bars",
        "2",
        "--no-render",
        "--max-tokens-per-bar",
        "24",
    ]
    assert main([*args, "--genre-mix", "lofi=0.7,classical=0.3"]) == 0
    assert main([*args, "--genre-mix"]) == 0
    assert main([*args, "--genre", "lofi", "--seed", "3"]) == 0
    assert main([*args, "--genre", "lofi", "--seed", "3", "--temperature", "0.8"]) == 0
    assert main([*args, "--genre", "lofi", "--seed", "3", "--top-p", "1", "--top-k", "8"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [Path(line.split()[1]).name for line in lines]
    assert names == [
        "mix-lofi70-classical30-seed0.mid",
        "mix-classical50-lofi50-seed0.mid",
        "lofi-seed3.mid",
        "lofi-t0.8-seed3.mid",  # other sampling settings: another file, none overwritten
        "lofi-k8-p1-seed3.mid",
    ]
    assert all(line.startswith("wrote ") and "2 bars" in line for line in lines)


def test_cli_takes_a_saved_config_and_flags_override_it(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = fast(genre_mix={"lofi": 1.0}, bars=1, seed=5, name="saved")
    path = save_config(saved, tmp_path, "generate")
    base = ["--model", str(model_dir), "--out-dir", str(tmp_path / "out"), "--config", str(path)]
    assert main(base) == 0
    assert main([*base, "--seed", "6", "--name", "typed", "--genre-mix"]) == 0
    records = [
        json.loads((tmp_path / "out" / f"{n}.json").read_text())
        for n in ("saved-seed5", "typed-seed6")
    ]
    assert [r["seed"] for r in records] == [5, 6]
    assert records[0]["weights"] == {"lofi": 1.0}
    assert records[1]["weights"] == {"classical": 0.5, "lofi": 0.5}  # the flag alone: equal
    assert all(r["audio"] is None and r["bars"] == 1 for r in records)


@pytest.mark.parametrize(
    "flags",
    [
        ["--bars", "2", "--seconds", "4"],
        ["--genre-mix", "lofi=1", "--genre-schedule", "classical->lofi"],
        ["--genre", "lofi", "--genre-mix", "lofi=1"],
    ],
    ids=["bars-and-seconds", "mix-and-schedule", "genre-and-mix"],
)
def test_cli_refuses_flags_that_exclude_each_other(
    flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(flags)
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_cli_without_the_render_stage_fails_before_generating(
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "midimix.render", None)  # import midimix.render fails
    code = main(["--model", str(model_dir), "--out-dir", str(tmp_path), "--bars", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "render stage (midimix.render)" in err and "--no-render" in err
    assert not tmp_path.exists() or not list(tmp_path.iterdir())  # nothing was generated


@pytest.fixture(scope="module")
def bad_models(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import miditok

    root = tmp_path_factory.mktemp("bad")
    corrupt = root / "corrupt"
    shutil.copytree(model_dir, corrupt)
    (corrupt / "model.safetensors").write_bytes(b"\x00not a safetensors file" * 10)
    # a tokenizer with only the neutral genre token: nothing to condition on
    plain = GenreTokenizer(
        miditok.REMI(miditok.TokenizerConfig(special_tokens=["PAD", "BOS", "EOS", "Genre_any"]))
    )
    model = build_model(plain.vocab_size, "tiny", plain.pad_id, plain.bos_id, plain.eos_id)
    return {"corrupt": corrupt, "no_genres": save_checkpoint(model, plain, {}, root / "plain")}


@pytest.mark.parametrize(
    ("case", "message"),
    [
        (["--genre-mix", "jazz=1"], "this model knows classical, lofi"),
        (["--genre-mix", "lofi=-1,classical=2"], "non-negative"),
        (["--genre-mix", "lofi=0,classical=0"], "at least one weight above 0"),
        (["--genre-schedule", "classical->"], "empty step"),
        (["--genre-schedule", "classical@0,lofi@7"], "PLACE in [0, 1]"),
        (["--prompt", "NOTES_TXT"], "neither MIDI"),
        (["--prompt", "BROKEN_MID"], "could not be read"),
        (["--temperature", "0"], "temperature"),
        (["--model", "MISSING"], "does not exist"),
        (["--model", "CORRUPT"], "corrupt"),
        (["--model", "NO_GENRES"], "no Genre_<name> tokens"),
    ],
)
def test_cli_bad_input_is_one_line_and_non_zero(
    case: list[str],
    message: str,
    model_dir: Path,
    bad_models: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "notes.txt").write_text("C D E F G\n")
    (tmp_path / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00")  # cut short
    paths = {
        "NOTES_TXT": tmp_path / "notes.txt",
        "BROKEN_MID": tmp_path / "broken.mid",
        "MISSING": tmp_path / "nowhere",
        "CORRUPT": bad_models["corrupt"],
        "NO_GENRES": bad_models["no_genres"],
    }
    args = [str(paths.get(a, a)) for a in case]
    if "--model" not in args:
        args = ["--model", str(model_dir), *args]
    code = main([*args, "--out-dir", str(tmp_path / "out"), "--bars", "1", "--no-render"])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert message in err


def test_missing_default_model_says_how_to_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gen, "DEFAULT_MODEL_DIR", tmp_path / "default_model")
    with pytest.raises(InputError, match="embedded default model is missing"):
        gen.resolve_model_dir(None)


def test_audio_prompt_is_transcribed_then_continued(model_dir: Path, tmp_path: Path) -> None:
    import numpy as np
    import soundfile as sf

    rate_hz = 22_050
    t = np.arange(rate_hz) / rate_hz  # one second per note: A4, C#5, E5
    tones = [
        0.5 * np.sin(2 * np.pi * f * t) * np.minimum(1, (1 - t) * 20)
        for f in (440.0, 554.37, 659.26)
    ]
    sf.write(
        tmp_path / "hum.wav",
        np.concatenate([np.zeros(rate_hz // 4), *tones]).astype(np.float32),
        rate_hz,
    )
    config = fast(genre_mix={"classical": 1.0}, bars=1, prompt=tmp_path / "hum.wav")
    piece = generate(model_dir, tmp_path / "out", config)[0]
    transcribed = score_of(tmp_path / "out" / "hum.prompt.mid")
    heard = sorted({n.pitch for t in transcribed.tracks for n in t.notes})
    assert {69, 73, 76} <= set(heard)  # the three tones came through as MIDI pitches
    out = {n.pitch for t in score_of(piece.midi_path).tracks for n in t.notes}
    assert {69, 73, 76} <= out
