"""collect: folders, single files and URLs into raw/<genre>/<id>.<ext>, each content once."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from audio_fixtures import encode, peak_frequency_hz, write_tone

from midimix.audio import AUDIO_SUFFIXES, read_mono
from midimix.collect import CollectConfig, collect, main, parse_genre_sources
from midimix.errors import ConfigError, InputError
from midimix.manifest import Manifest

QUIET = CollectConfig(progress=False)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """lofi/: a wav, the same wav under a non-ASCII name, an mp3, a note and a fake .wav;
    bach.flac: a single classical file."""
    root = tmp_path_factory.mktemp("library")
    tone = write_tone(root / "lofi" / "beat.wav", 2.0, 44100, channels=2)
    (root / "lofi" / "sub").mkdir()
    shutil.copyfile(tone, root / "lofi" / "sub" / "ビート copy.wav")
    encode(tone, root / "lofi" / "beat.mp3")
    (root / "lofi" / "notes.txt").write_text("not audio, ignored by its extension\n")
    (root / "lofi" / "fake.wav").write_text("not audio either, but named .wav\n" * 20)
    write_tone(root / "bach.flac", 3.0, 48000)
    return root


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_collect_stores_each_content_once_with_a_manifest(library: Path, tmp_path: Path) -> None:
    sources = {"lofi": [library / "lofi"], "classical": [library / "bach.flac"]}
    summary = collect(sources, tmp_path, QUIET)
    assert (summary.done, summary.failed) == (3, 1)  # wav (twice), mp3, flac; fake.wav fails
    records = Manifest(tmp_path / "manifest.jsonl").records()
    wav_id = sha(library / "lofi" / "beat.wav")[:16]
    flac_id = sha(library / "bach.flac")[:16]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.*")) == sorted(
        [
            f"lofi/{wav_id}.wav",
            f"lofi/{sha(library / 'lofi' / 'beat.mp3')[:16]}.mp3",
            f"classical/{flac_id}.flac",
            "manifest.jsonl",
            ".manifest.jsonl.lock",  # the manifest's lock against a second run at once
        ]
    )
    wav = records[wav_id]
    assert wav["sha256"] == sha(library / "lofi" / "beat.wav")
    assert (wav["genre"], wav["sample_rate_hz"], wav["channels"], wav["duration_seconds"]) == (
        "lofi", 44100, 2, 2.0,
    )  # fmt: skip
    assert wav["source"] == str(library / "lofi" / "beat.wav")
    assert wav["duplicates"] == [str(library / "lofi" / "sub" / "ビート copy.wav")]
    flac = records[flac_id]
    assert (flac["genre"], flac["sample_rate_hz"], flac["channels"], flac["duration_seconds"]) == (
        "classical", 48000, 1, 3.0,
    )  # fmt: skip
    (failed,) = summary.failures
    assert failed[1].startswith("not an audio file that libsndfile or ffmpeg can read")
    assert sha(tmp_path / "lofi" / f"{wav_id}.wav") == wav["sha256"]  # a byte-exact copy

    before = {  # the manifest and its lock (which records the pid of each run) change
        p: p.stat().st_mtime_ns
        for p in tmp_path.rglob("*")
        if p.is_file() and p.suffix not in (".jsonl", ".lock")
    }
    again = collect(sources, tmp_path, QUIET)
    assert (again.done, again.skipped, again.failed) == (0, 3, 1)
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_genre_root_list_and_cli(library: Path, tmp_path: Path) -> None:
    root = tmp_path / "music"
    write_tone(root / "classical" / "a.ogg", 1.0, 22050)
    write_tone(root / "lofi" / "b.flac", 1.0, 22050, frequency_hz=220.0)
    summary = collect([root], tmp_path / "raw", QUIET)
    assert sorted(r["genre"] for r in summary.records) == ["classical", "lofi"]
    code = main(["--genre", f"lofi={library / 'lofi'}", "--raw-dir", str(tmp_path / "cli"),
                 "--no-progress"])  # fmt: skip
    assert code == 1  # fake.wav failed


def test_download_through_yt_dlp_from_a_local_url(library: Path, tmp_path: Path) -> None:
    url = (library / "bach.flac").as_uri()
    summary = collect({"classical": [url]}, tmp_path, QUIET)
    (record,) = summary.records
    assert record["status"] == "ok" and record["url"] == url
    assert record["sha256"] == sha(library / "bach.flac")
    assert (tmp_path / "classical" / f"{record['id']}.flac").exists()


def test_bad_sources_are_clear() -> None:
    with pytest.raises(InputError, match="does not exist; expected an audio file or a folder"):
        collect({"lofi": [Path("/no/such/folder")]}, Path("/tmp/unused"), QUIET)
    with pytest.raises(ConfigError, match="genre name 'Lo Fi' is not usable"):
        parse_genre_sources(["Lo Fi=/music"])
    assert parse_genre_sources(["lofi=a", "lofi=https://x.org/y"]) == {
        "lofi": [Path("a"), "https://x.org/y"]
    }


def test_a_file_without_a_known_suffix_gets_one(tmp_path: Path) -> None:
    track = tmp_path / "in" / "track"
    track.parent.mkdir()
    write_tone(tmp_path / "t.flac", 1.0, 22050).rename(track)
    (record,) = collect({"lofi": [track]}, tmp_path / "raw", QUIET).records
    assert record["output"] == str(tmp_path / "raw" / "lofi" / f"{sha(track)[:16]}.flac")
    assert Path(record["output"]).read_bytes() == track.read_bytes()


@pytest.fixture(scope="module")
def every_suffix(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    """collect's record of a 1 s tone saved under each audio suffix (a different pitch each,
    so that no two files hold the same content), by suffix."""
    root = tmp_path_factory.mktemp("suffixes")
    for k, suffix in enumerate(AUDIO_SUFFIXES):
        wav = write_tone(root / "wav" / f"{k}.wav", 1.0, 22050, frequency_hz=200.0 + 10 * k)
        encode(wav, root / "lofi" / f"tone{suffix}")
    summary = collect({"lofi": [root / "lofi"]}, root / "raw", QUIET)
    return {Path(str(r["source"])).suffix: r for r in summary.records}


@pytest.mark.parametrize("suffix", AUDIO_SUFFIXES)
def test_every_audio_suffix_is_collected_and_decoded(
    every_suffix: dict[str, dict[str, object]], suffix: str
) -> None:
    record = every_suffix[suffix]
    assert record["status"] == "ok", record.get("reason")
    assert record["duration_seconds"] == pytest.approx(1.0, abs=0.07)  # aac pads 68 ms
    assert str(record["output"]).endswith(suffix)
    samples, rate_hz = read_mono(Path(str(record["output"])))  # decoded whole, as prepare does
    assert len(samples) / rate_hz == pytest.approx(1.0, abs=0.07)
    assert peak_frequency_hz(samples, rate_hz) == pytest.approx(
        200.0 + 10 * AUDIO_SUFFIXES.index(suffix), abs=3.0
    )
