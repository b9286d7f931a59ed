"""The tempo and drum set: pieces with a known tempo (and drum track), rendered and degraded.

Pieces: midimix's rule-made lo-fi (`generate_lofi`, 60-90 BPM, swung, with drums; also with
the drums taken out, and sped up to 95-140 BPM), Bach chorales from music21's corpus at
60-140 BPM (straight, drum-free piano) and the round-trip set's straight jazz-chord piece with
swung drums at 100-140 BPM. Each is rendered with the render stage's synthesizer (FluidSynth,
the lo-fi or classical instruments, no effects) to mono 22,050 Hz and then degraded:

- clean: as rendered
- lofi50 / lofi100: midimix's lo-fi chain at amount 0.5 / 1.0 (low-pass, wow and flutter,
  crackle, hiss, bit and rate reduction, compression, reverb)
- mp3: MP3 at 128 kb/s through ffmpeg, decoded back
- noise: white noise at 15 dB SNR and the level 12 dB down

Audio is cached as .npy under the set's folder, so a second run only scores. Used by
benchmarks/bench_tempo.py and (a few pieces) tests/test_tempo.py.
"""

from __future__ import annotations

import subprocess
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_RATE_HZ = 22050
CLIP_SECONDS = 30.0
CONDITIONS = ("clean", "lofi50", "lofi100", "mp3", "noise")
CHORALES = (
    "bach/bwv66.6",
    "bach/bwv269",
    "bach/bwv347",
    "bach/bwv153.1",
    "bach/bwv86.6",
    "bach/bwv281",
)


@dataclass
class TempoPiece:
    """A piece of the set: its score (a symusic ScoreTick), true tempo and drum onsets."""

    id: str
    kind: str  # lofi / lofi-nodrums / lofi-fast / chorale / jazz
    tempo_bpm: float
    score: Any
    genre: str  # which instruments render it: lofi or classical
    drums: dict[int, np.ndarray] = field(default_factory=dict)  # GM key -> onset times (s)


def _set_tempo(score: Any, qpm: float) -> Any:
    import symusic

    out = score.copy()
    out.tempos.clear()
    out.tempos.append(symusic.core.TempoTick(0, qpm))
    return out


def _drop_drums(score: Any) -> Any:
    out = score.copy()
    keep = [t for t in out.tracks if not t.is_drum]
    out.tracks.clear()
    for track in keep:
        out.tracks.append(track)
    return out


def _drum_onsets(score: Any) -> dict[int, np.ndarray]:
    """GM key -> onset times in s, for the drum tracks, within the clip."""
    seconds = score.to("second")
    by_key: dict[int, list[float]] = {}
    for track in seconds.tracks:
        if track.is_drum:
            for note in track.notes:
                if note.time < CLIP_SECONDS:
                    by_key.setdefault(int(note.pitch), []).append(float(note.time))
    return {k: np.sort(np.array(v)) for k, v in by_key.items()}


def _pretty_to_symusic(pm: Any) -> Any:
    import symusic

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "piece.mid"
        pm.write(str(path))
        return symusic.Score(str(path))


def build_pieces(
    n_lofi: int = 12, n_nodrums: int = 4, n_fast: int = 6, n_chorales: int = 10, n_jazz: int = 4
) -> list[TempoPiece]:
    """The pieces (scores only): the sizes give the number of each kind."""
    import symusic

    from midimix.corpus.lofi import generate_lofi

    sys_path = Path(__file__).resolve().parent
    import sys

    if str(sys_path) not in sys.path:
        sys.path.insert(0, str(sys_path))
    from roundtrip_set import chorale_midi, lofi_midi

    pieces: list[TempoPiece] = []
    rng = np.random.default_rng(7)
    for k in range(n_lofi):
        score, traits = generate_lofi(1000 + k)
        pieces.append(
            TempoPiece(f"lofi{k}", "lofi", traits.tempo_qpm, score, "lofi", _drum_onsets(score))
        )
    for k in range(n_nodrums):
        score, traits = generate_lofi(2000 + k)
        pieces.append(
            TempoPiece(f"lofinodrums{k}", "lofi-nodrums", traits.tempo_qpm, _drop_drums(score),
                       "lofi")
        )  # fmt: skip
    for k in range(n_fast):
        score, _ = generate_lofi(3000 + k)
        qpm = round(float(rng.uniform(95, 140)), 1)
        score = _set_tempo(score, qpm)
        pieces.append(
            TempoPiece(f"lofifast{k}", "lofi-fast", qpm, score, "lofi", _drum_onsets(score))
        )
    tempos = np.linspace(60, 140, n_chorales)
    for k in range(n_chorales):
        qpm = round(float(tempos[k]), 1)
        pm = chorale_midi(CHORALES[k % len(CHORALES)], qpm)
        pieces.append(
            TempoPiece(f"chorale{k}", "chorale", qpm, _pretty_to_symusic(pm), "classical")
        )
    for k in range(n_jazz):
        qpm = round(float(rng.uniform(100, 140)), 1)
        score = _pretty_to_symusic(lofi_midi(qpm, seed=k, drums=True))
        pieces.append(TempoPiece(f"jazz{k}", "jazz", qpm, score, "lofi", _drum_onsets(score)))
    del symusic
    return pieces


def render_clean(piece: TempoPiece) -> np.ndarray:
    """Mono float32 at 22,050 Hz, the first 30 s, rendered by the render stage's synth."""
    from midimix.render import Renderer
    from midimix.render_config import RenderConfig

    config = RenderConfig(
        genre_weights={piece.genre: 1.0}, lofi_amount=0.0, drums="off", sample_rate_hz=44_100
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "piece.mid"
        piece.score.dump_midi(str(path))
        with Renderer(config) as renderer:
            stereo, _, _ = renderer.synthesize(path)
    import librosa

    mono = stereo.mean(axis=1)
    mono = librosa.resample(mono, orig_sr=44_100, target_sr=SAMPLE_RATE_HZ)
    mono = mono[: int(CLIP_SECONDS * SAMPLE_RATE_HZ)]
    return (0.5 * mono / max(float(np.abs(mono).max()), 1e-9)).astype(np.float32)


def degrade(audio: np.ndarray, condition: str, seed: int = 0) -> np.ndarray:
    """The clean audio under one of CONDITIONS."""
    if condition == "clean":
        return audio
    if condition.startswith("lofi"):
        from midimix.lofi import LofiConfig, apply_chain, build_chain

        amount = int(condition[4:]) / 100
        steps = build_chain(LofiConfig(seed=seed), amount, SAMPLE_RATE_HZ)
        out = apply_chain(steps, audio[None, :], SAMPLE_RATE_HZ)[0]
        return (0.5 * out / max(float(np.abs(out).max()), 1e-9)).astype(np.float32)
    if condition == "mp3":
        return _mp3(audio)
    if condition == "noise":
        rng = np.random.default_rng(seed)
        level = 10 ** (-12 / 20)
        signal_rms = float(np.sqrt(np.mean(audio**2)))
        noise = rng.standard_normal(len(audio)) * signal_rms * 10 ** (-15 / 20)
        return (level * (audio + noise)).astype(np.float32)
    raise ValueError(f"unknown condition {condition!r}")


def _mp3(audio: np.ndarray) -> np.ndarray:
    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp:
        wav, mp3, back = Path(tmp) / "a.wav", Path(tmp) / "a.mp3", Path(tmp) / "b.wav"
        sf.write(wav, audio, SAMPLE_RATE_HZ)
        run = ["ffmpeg", "-loglevel", "error", "-y"]
        subprocess.run([*run, "-i", str(wav), "-b:a", "128k", str(mp3)], check=True)
        subprocess.run([*run, "-i", str(mp3), "-ar", str(SAMPLE_RATE_HZ), str(back)], check=True)
        out, _ = sf.read(back, dtype="float32")
    if out.ndim > 1:
        out = out.mean(axis=1)
    return np.asarray(out[: len(audio)], np.float32)


def load_audio(piece: TempoPiece, condition: str, cache_dir: Path) -> np.ndarray:
    """The piece under `condition`, from the cache or rendered and degraded now."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{piece.id}_{condition}.npy"
    if path.exists():
        return np.load(path)
    if condition == "clean":
        audio = render_clean(piece)
    else:
        audio = degrade(
            load_audio(piece, "clean", cache_dir),
            condition,
            seed=zlib.crc32(piece.id.encode()) % 997,
        )
    np.save(path, audio)
    return audio
