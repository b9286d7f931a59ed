"""Every example script runs, on tiny data: train_on_your_audio.py trains a tiny model on two
folders, and quickstart / genre_morph / mix_sweep use that model (the same code paths as the
embedded default model, which they use when --model is not given)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
from midi_fixtures import scale_line
from symusic.core import ScoreTick

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def example(name: str, *args: str | Path, cwd: Path) -> str:
    """Run examples/<name> in `cwd`; its stdout (the test fails with its stderr)."""
    command = [sys.executable, str(EXAMPLES / name), *map(str, args)]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path], str]:
    """(working folder, the two input folders, the example's output): lo-fi low quarter
    notes, classical high sixteenths, 4 MIDI files each."""
    root = tmp_path_factory.mktemp("examples")
    folders = {"lofi": root / "in" / "lofi", "classical": root / "in" / "classical"}
    for genre, folder in folders.items():
        folder.mkdir(parents=True)
        for i in range(4):
            scale_line(genre, i, bars=4).dump_midi(folder / f"{genre}{i}.mid")
    out = example(
        "train_on_your_audio.py", folders["lofi"], folders["classical"], "--tiny", cwd=root
    )
    return root, folders, out


def test_train_on_your_audio(trained: tuple[Path, dict[str, Path], str]) -> None:
    root, _, out = trained
    meta = json.loads((root / "data" / "runs" / "model" / "best" / "midimix.json").read_text())
    assert meta["genres"] == ["classical", "lofi"] and meta["step"] == 8
    piece_path = root / "data" / "out" / "mix-lofi70-classical30-seed0.mid"
    assert (
        ScoreTick.from_file(str(piece_path)).note_num() > 0
        and sf.info(piece_path.with_suffix(".wav")).frames > 0
    )
    assert "tokenize: 8 done" in out and f"piece:  {piece_path.relative_to(root)}" in out
    assert (root / "data" / "out" / "report" / "report.md").is_file()


def test_quickstart(trained: tuple[Path, dict[str, Path], str]) -> None:
    root, _, _ = trained
    out = example("quickstart.py", "--model", "data/runs/model/best", "--bars", "2", cwd=root)
    midi = root / "out" / "quickstart" / "mix-lofi70-classical30-seed0.mid"
    record = json.loads(midi.with_suffix(".json").read_text())
    assert record["weights"] == {"lofi": 0.7, "classical": 0.3}
    assert record["bars"] == 2 and ScoreTick.from_file(str(midi)).note_num() > 0
    assert sf.info(midi.with_suffix(".wav")).samplerate == 44100
    assert f"MIDI: {midi.relative_to(root)}" in out


def test_quickstart_defaults_to_the_embedded_model(tmp_path: Path) -> None:
    """Without --model it uses the model shipped in midimix/default_model/."""
    from midimix.generate import DEFAULT_MODEL_DIR

    command = [sys.executable, str(EXAMPLES / "quickstart.py"), "--bars", "2"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (provenance,) = [
        p for p in (tmp_path / "out" / "quickstart").glob("*.json") if ".render" not in p.name
    ]
    record = json.loads(provenance.read_text())
    assert record["model_dir"] == str(DEFAULT_MODEL_DIR)
    assert record["weights"] == {"lofi": 0.7, "classical": 0.3}


def test_genre_morph_moves_from_classical_to_lofi(
    trained: tuple[Path, dict[str, Path], str],
) -> None:
    root, _, _ = trained
    args = ("--model", "data/runs/model/best", "--bars", "4", "--no-render")
    out = example("genre_morph.py", *args, cwd=root)
    (provenance,) = (root / "out" / "morph").glob("*.json")
    record = json.loads(provenance.read_text())
    lofi = [row[record["genres_used"].index("lofi")] for row in record["weights_per_bar"]]
    assert len(lofi) == 4 and lofi[0] == 0.0 and lofi[-1] == 1.0
    assert lofi == sorted(lofi)  # the lo-fi weight only grows along the piece
    assert (
        "bar   1: classical 1.00, lofi 0.00" in out and "bar   4: classical 0.00, lofi 1.00" in out
    )


def test_mix_sweep_writes_its_plot(trained: tuple[Path, dict[str, Path], str]) -> None:
    root, folders, _ = trained
    refs = [a for g, p in folders.items() for a in ("--reference", f"{g}={p}")]
    out = example("mix_sweep.py", "--model", "data/runs/model/best", *refs, "--tiny", cwd=root)
    report = json.loads((root / "out" / "sweep" / "report.json").read_text())
    points = report["sweep"]["methods"]["logits"]
    assert [p["weight"] for p in points] == [0.0, 1.0]
    assert report["sweep"]["pieces"] == 2
    png = (root / "out" / "sweep" / "sweep.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "lofi weight 0.00: P(lofi)" in out and "lofi weight 1.00: P(lofi)" in out
