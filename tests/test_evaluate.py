"""Distances, the genre classifier, the report and the sweep (with a tiny real GPT-2 and the
real miditok tokenizer), on synthetic genres made in code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from midi_fixtures import genre_sets, straight_piece, swung_piece, write

from midimix.config import save_config
from midimix.errors import InputError
from midimix.evaluate import (
    EvaluateConfig,
    GenreClassifier,
    distances,
    evaluate,
    feature_table,
    main,
    mean_ci95,
    overlap,
)
from midimix.features import FEATURE_NAMES
from midimix.options import config_from_dict
from midimix.sweep import SweepConfig, build_parser, config_from, rises, sweep

FAST = EvaluateConfig(cv_folds=3, piano_rolls_per_set=1)


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return genre_sets(tmp_path_factory.mktemp("ref"), 12)


@pytest.fixture(scope="module")
def tables(sets: dict[str, list[Path]]) -> dict[str, np.ndarray]:
    return {g: feature_table(g, paths)[1] for g, paths in sets.items()}


def test_identical_sets_have_distance_0_and_overlap_1(tables: dict[str, np.ndarray]) -> None:
    table = tables["lofi"]
    per = distances(table, table)
    assert all(v["effect_size"] == 0.0 for v in per.values())
    assert all(v["overlap"] == pytest.approx(1.0) for v in per.values())


def test_distance_of_shifted_and_disjoint_sets() -> None:
    ref = np.array([0.0, 1.0, 2.0, 3.0])  # std sqrt(1.25)
    assert overlap(ref + 100.0, ref, bins=10) == 0.0
    table = np.tile(ref[:, None], (1, len(FEATURE_NAMES)))
    per = distances(table + 2.0, table)
    assert per["pitch_range"]["effect_size"] == pytest.approx(2.0 / np.sqrt(1.25))


def test_mean_ci95_matches_student_t() -> None:
    mean, low, high = mean_ci95([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert high - mean == pytest.approx(4.302653 * 1.0 / np.sqrt(3), rel=1e-5)  # t(0.975, 2)


def test_classifier_separates_genres_and_round_trips(
    sets: dict[str, list[Path]], tables: dict[str, np.ndarray], tmp_path: Path
) -> None:
    classifier = GenreClassifier(seed=0, cv_folds=3)
    assert classifier.fit_features(tables) >= 0.9
    held_out = [
        write(swung_piece(500), tmp_path / "lofi.mid"),
        write(straight_piece(500), tmp_path / "classical.mid"),
    ]
    p_lofi, p_classical = classifier.predict_proba(held_out)
    assert p_lofi["lofi"] > 0.8 and p_classical["classical"] > 0.8
    assert p_lofi["lofi"] + p_lofi["classical"] == pytest.approx(1.0)
    loaded = GenreClassifier.load(classifier.save(tmp_path / "classifier.json"))
    assert loaded.genres == ["classical", "lofi"]
    assert loaded.predict_proba(held_out) == pytest.approx(
        [pytest.approx(p) for p in (p_lofi, p_classical)]
    )


def test_evaluate_writes_the_report(sets: dict[str, list[Path]], tmp_path: Path) -> None:
    generated = {"like-lofi": sets["lofi"][:4], "like-classical": sets["classical"][:4]}
    bad = tmp_path / "broken.mid"
    bad.write_bytes(b"MThd\x00\x00\x00\x06garbage")
    generated["like-lofi"] = [*generated["like-lofi"], bad]
    report = evaluate(generated, sets, tmp_path / "report", FAST)
    files = {p.name for p in (tmp_path / "report").iterdir()}
    assert {"report.md", "report.json", "classifier.json", "p_genre.png"} <= files
    assert {"features_like-lofi.png", "piano_roll_generated_like-lofi.png"} <= files
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert set(data) >= {"features", "reference", "classifier", "generated", "plots"}
    lofi = data["generated"]["like-lofi"]
    assert lofi["pieces"] == 4 and len(lofi["skipped"]) == 1  # the broken file is skipped
    assert lofi["closest_genre"] == "lofi"
    assert lofi["p_genre"]["lofi"]["mean"] > 0.9
    assert report["generated"]["like-classical"]["p_genre"]["classical"]["mean"] > 0.9
    # A generated set drawn from the reference itself sits on it: small effect, big overlap.
    assert lofi["distances"]["lofi"]["mean_effect_size"] < 0.5
    assert (
        lofi["distances"]["lofi"]["mean_overlap"] > lofi["distances"]["classical"]["mean_overlap"]
    )
    assert "cross-validated accuracy" in (tmp_path / "report" / "report.md").read_text()


def test_cli_and_bad_input(
    sets: dict[str, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = [f"--reference={g}={p[0].parent}" for g, p in sets.items()]
    out = tmp_path / "out"
    args = ["--no-plots", "--cv-folds", "3", "--out-dir", str(out)]
    assert main([f"--generated=mix={sets['lofi'][0]}", *ref, *args]) == 0
    assert "classifier CV accuracy" in capsys.readouterr().out
    assert (out / "report.json").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([f"--generated=mix={empty}", *ref, *args]) == 2
    assert "has no MIDI files" in capsys.readouterr().err
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.mid").write_text("not midi")
    assert main([f"--generated=mix={junk}", *ref, *args]) == 2
    err = capsys.readouterr().err
    assert "none of its 1 files could be measured" in err and err.count("\n") == 1
    assert main([f"--generated=mix={junk}", ref[0], *args]) == 2  # one genre only
    with pytest.raises(InputError, match="at least two genres"):
        GenreClassifier().fit_features({"lofi": np.zeros((3, len(FEATURE_NAMES)))})


def test_cli_saves_its_settings_and_takes_them_back(
    sets: dict[str, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = [f"--reference={g}={p[0].parent}" for g, p in sets.items()]
    first, second = tmp_path / "first", tmp_path / "second"
    generated = f"--generated=mix={sets['lofi'][0]}"
    flags = ["--no-plots", "--cv-folds", "3", "--overlap-bins", "7", "--max-reference", "6"]
    assert main([generated, *ref, *flags, "--out-dir", str(first)]) == 0
    saved = first / "evaluate.config.json"
    assert json.loads(saved.read_text()) == {
        "cv_folds": 3,
        "max_reference_per_genre": 6,
        "overlap_bins": 7,
        "piano_rolls_per_set": 3,
        "plots": False,
        "seed": 0,
    }
    # The saved settings come back with --config; a flag typed after it wins.
    assert main([generated, *ref, "--config", str(saved), "--cv-folds", "2", "--out-dir",
                 str(second)]) == 0  # fmt: skip
    used = json.loads((second / "report.json").read_text())["config"]
    assert (used["overlap_bins"], used["cv_folds"], used["plots"]) == (7, 2, False)
    assert json.loads((second / "evaluate.config.json").read_text())["cv_folds"] == 2
    capsys.readouterr()
    assert main([generated, *ref, "--overlap-bins", "1", "--out-dir", str(second)]) == 2
    assert "overlap_bins must be in [2, 1000], got 1" in capsys.readouterr().err


def test_sweep_command_line(tmp_path: Path) -> None:
    args = ["--model", "m", "--weights", "1,0,0.5", "--methods", "logits,embedding"]
    args += ["--tokens", "t", "--max-tokens-per-bar", "24", "--seed", "4", "--cv-folds", "3"]
    config = config_from(build_parser().parse_args([*args, "--no-plots", "--piano-rolls", "0"]))
    assert config.weights == (0.0, 0.5, 1.0) and config.methods == ("logits", "embedding")
    assert config.tokens_dir == Path("t") and config.max_tokens_per_bar == 24
    assert config.seed == 4 and config.evaluate.seed == 4  # --seed seeds the evaluation too
    assert config.evaluate.cv_folds == 3 and config.evaluate.piano_rolls_per_set == 0
    assert not config.evaluate.plots
    config = config_from(build_parser().parse_args([*args, "--evaluate.seed", "2"]))
    assert (config.seed, config.evaluate.seed) == (4, 2)
    saved = save_config(config, tmp_path, "sweep")  # --config gives back both seeds
    assert (
        config_from(build_parser().parse_args(["--model", "m", "--config", str(saved)])) == config
    )
    again = config_from(
        build_parser().parse_args(["--model", "m", "--config", str(saved), "--seed", "5"])
    )
    assert (again.seed, again.evaluate.seed, again.weights) == (5, 5, (0.0, 0.5, 1.0))
    config = config_from(build_parser().parse_args([*args, "--evaluate.overlap-bins", "9"]))
    assert config.evaluate.overlap_bins == 9


def test_evaluate_sweep_errors_are_one_line(
    sets: dict[str, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = [f"--reference={g}={p[0].parent}" for g, p in sets.items()]
    sweep_args = ["sweep", "--model", str(tmp_path), *ref, "--out-dir", str(tmp_path / "o")]
    assert main([*sweep_args, "--weights", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "at least two weights" in err and err.count("\n") == 1
    assert main([*sweep_args, "--methods", "nonsense"]) == 2
    assert "methods must be in logits, embedding" in capsys.readouterr().err


def test_rises_needs_separated_intervals() -> None:
    low, high = {"mean": 0.2, "ci95": [0.1, 0.3]}, {"mean": 0.8, "ci95": [0.7, 0.9]}
    assert rises([low, high]) and not rises([high, low])
    assert not rises([low, {"mean": 0.35, "ci95": [0.25, 0.45]}])


# ---------------------------------------------------------------------------------------
# Sweep with a tiny untrained GPT-2: the plumbing and the figures, not the trend


def _checkpoint(folder: Path, genres: list[str]) -> Path:
    from midimix.model import build_model, save_checkpoint
    from midimix.tokenize import GenreTokenizer, TokenizeConfig

    tokenizer = GenreTokenizer.build(genres, TokenizeConfig())
    torch.manual_seed(0)
    model = build_model(
        tokenizer.vocab_size, "tiny", tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id
    )
    return save_checkpoint(model, tokenizer, {"step": 0}, folder)


def test_sweep_writes_curve_and_model_figures(sets: dict[str, list[Path]], tmp_path: Path) -> None:
    torch.set_num_threads(1)
    model_dir = _checkpoint(tmp_path / "ckpt", ["classical", "lofi"])
    config = SweepConfig(
        pieces=2,
        bars=2,
        max_tokens_per_bar=24,
        weights=(1.0, 0.5, 0.0),
        evaluate=EvaluateConfig(cv_folds=3, piano_rolls_per_set=0),
    )
    report = sweep(model_dir, sets, tmp_path / "sweep", config)
    s = report["sweep"]
    assert [p["weight"] for p in s["methods"]["logits"]] == [0.0, 0.5, 1.0]
    assert all(
        0.0 <= p["ci95"][0] <= p["mean"] <= p["ci95"][1] <= 1.0 for p in s["methods"]["logits"]
    )
    assert report["generated"]["logits w=0"]["pieces"] == 2
    assert len(list((tmp_path / "sweep" / "pieces").rglob("*.mid"))) == 6
    # the single-genre ends, each against its genre, counted on the model's 16th grid
    fidelity = report["fidelity"]
    assert {k: v["genre"] for k, v in fidelity.items()} == {
        "logits w=1": s["genre"],
        "logits w=0": s["against"],
    }
    assert all(v["pieces"] == 2 and v["onsets_counted"] == "4 a beat" for v in fidelity.values())
    written = {p.name for p in (tmp_path / "sweep").glob("*.png")}
    # Distributions of the end points only: a sweep has many points.
    assert written == {
        "sweep.png",
        "p_genre.png",
        "features_logits-w-0.png",
        "features_logits-w-1.png",
    }
    # one mixing weight (0.5): the error is read there alone, and the report says so
    curve = {p["weight"]: p["mean"] for p in s["methods"]["logits"]}
    assert s["calibration_error"]["logits"] == pytest.approx(abs(curve[0.5] - 0.5))
    assert [p["pieces"] for p in s["methods"]["logits"]] == [2, 2, 2]
    markdown = (tmp_path / "sweep" / "report.md").read_text()
    assert "logits: calibration error (mean |P - w| at w = 0.25, 0.5, 0.75)" in markdown
    saved = json.loads((tmp_path / "sweep" / "sweep.config.json").read_text())
    assert config_from_dict(SweepConfig, saved) == config  # what `--config` gives back
    nll = report["model"]["nll"]
    assert set(nll) == {"classical", "lofi"}
    for v in nll.values():  # fewer notes than tokens: a note costs more than a token
        assert v["per_note"] > v["per_token"] > 0
    assert 0.0 <= report["model"]["genre_sensitivity"] <= 1.0
    one = _checkpoint(tmp_path / "one", ["lofi"])
    with pytest.raises(InputError, match="two or more genres"):
        sweep(one, sets, tmp_path / "x", config)


def test_model_figures_score_only_the_models_own_vocabulary(tmp_path: Path) -> None:
    """NLL per note on a token data set: refused when the set was tokenized with another
    vocabulary (its ids would be scored as if they were the model's)."""
    from midimix.sweep import model_figures
    from midimix.tokenize import GenreTokenizer, TokenizeConfig

    torch.set_num_threads(1)
    model_dir = _checkpoint(tmp_path / "ckpt", ["classical", "lofi"])
    own = tmp_path / "own"
    tokenizer = GenreTokenizer.load(model_dir)
    tokenizer.save(own)
    types = tokenizer.token_types()
    note = [types.index(t) for t in ("Bar", "Position", "Pitch", "Velocity", "Duration")]
    rows = [{"genre": g, "split": "validation", "ids": note} for g in ("lofi", "classical")]
    (own / "sequences.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    figures = model_figures(model_dir, {}, own)
    assert {g: v["sequences"] for g, v in figures["nll"].items()} == {"classical": 1, "lofi": 1}
    assert all(v["notes"] == 1 and v["per_note"] > 0 for v in figures["nll"].values())
    other = tmp_path / "finer"
    GenreTokenizer.build(["classical", "lofi"], TokenizeConfig(positions_per_beat=24)).save(other)
    (other / "sequences.jsonl").write_text((own / "sequences.jsonl").read_text())
    with pytest.raises(InputError, match="another vocabulary"):
        model_figures(model_dir, {}, other)
