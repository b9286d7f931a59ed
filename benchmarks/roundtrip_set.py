"""The round-trip quality set: MIDI pieces with known notes, rendered to audio, cut to clips.

Pieces are made in code: a Bach chorale from music21's corpus (classical), jazz chords on an
electric piano over swung drums (lo-fi style), a piano click on every beat and a sustained sine
tone. Each is rendered with the FluidSynth command line and cut to a 30 s clip by
`midimix.prepare`, so the transcriber sees exactly what the pipeline gives it. `score_notes`
compares a transcription with the known notes using mir_eval.

Used by tests/test_transcribe.py (a few short pieces) and benchmarks/bench_transcribe.py.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pretty_midi

SAMPLE_RATE_HZ = 22050
CLIP_SECONDS = 30.0
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
ELECTRIC_PIANO = 4  # General MIDI program 5 (0-based 4): "Electric Piano 1"
CHORALES = ("bach/bwv66.6", "bach/bwv269", "bach/bwv347", "bach/bwv153.1")
# ii-V-I-vi voicings in C major as MIDI pitches (Dm9, G13, Cmaj9, A7b9): rootless, mid-range
JAZZ_CHORDS = (
    (50, 60, 64, 65, 69),
    (43, 59, 64, 65, 69),
    (48, 59, 62, 64, 67),
    (45, 58, 61, 64, 67),
)


@dataclass(frozen=True)
class Piece:
    """One piece of the set: its known MIDI, its rendered clip and its true tempo."""

    id: str
    genre: str
    tempo_bpm: float
    midi_path: Path
    clip_path: Path
    has_drums: bool


def chorale_midi(
    name: str, tempo_bpm: float, max_seconds: float = CLIP_SECONDS
) -> pretty_midi.PrettyMIDI:
    """A music21 corpus chorale as piano MIDI at `tempo_bpm` (one quarter note a beat)."""
    import music21

    score = music21.corpus.parse(name).stripTies()
    seconds_per_quarter = 60.0 / tempo_bpm
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo_bpm)
    piano = pretty_midi.Instrument(program=0, name="piano")
    for element in score.flatten().notes:
        start = float(element.offset) * seconds_per_quarter
        end = start + float(element.quarterLength) * seconds_per_quarter
        if start >= max_seconds or end <= start:
            continue
        for pitch in element.pitches:
            piano.notes.append(pretty_midi.Note(80, int(pitch.midi), start, min(end, max_seconds)))
    pm.instruments.append(piano)
    return pm


def lofi_midi(
    tempo_bpm: float, seed: int = 0, drums: bool = True, max_seconds: float = CLIP_SECONDS
) -> pretty_midi.PrettyMIDI:
    """Jazz chords on an electric piano (one chord a bar, a swung push on beat 4 and a 1) and,
    optionally, swung drums: kick on 1 and 3, snare on 2 and 4, hi-hat on swung eighths."""
    rng = np.random.default_rng(seed)
    beat_s = 60.0 / tempo_bpm
    swing_s = beat_s * 2 / 3  # the off-beat eighth of a triplet swing
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo_bpm)
    keys = pretty_midi.Instrument(program=ELECTRIC_PIANO, name="keys")
    kit = pretty_midi.Instrument(program=0, is_drum=True, name="drums")
    n_bars = int(max_seconds // (4 * beat_s))
    transpose = int(rng.integers(-3, 4))
    for bar in range(n_bars):
        bar_s = bar * 4 * beat_s
        chord = JAZZ_CHORDS[bar % len(JAZZ_CHORDS)]
        for onset_beats, length_beats in ((0.0, 2.5), (2.0 + 2 / 3, 1.2)):
            start = bar_s + onset_beats * beat_s
            velocity = int(rng.integers(70, 95))
            for pitch in chord:
                keys.notes.append(
                    pretty_midi.Note(
                        velocity, pitch + transpose, start, start + length_beats * beat_s
                    )
                )
        if drums:
            for beat in range(4):
                t = bar_s + beat * beat_s
                drum = 36 if beat in (0, 2) else 38
                kit.notes.append(pretty_midi.Note(100, drum, t, t + 0.1))
                for hat_s in (t, t + swing_s):
                    kit.notes.append(
                        pretty_midi.Note(int(rng.integers(50, 75)), 42, hat_s, hat_s + 0.05)
                    )
    pm.instruments.append(keys)
    if drums:
        pm.instruments.append(kit)
    return pm


def click_midi(
    tempo_bpm: float, max_seconds: float = CLIP_SECONDS, pitch: int = 72
) -> pretty_midi.PrettyMIDI:
    """A piano note on every beat, accented on each bar's first beat."""
    beat_s = 60.0 / tempo_bpm
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo_bpm)
    piano = pretty_midi.Instrument(program=0, name="piano")
    for k in range(int(max_seconds / beat_s)):
        start = k * beat_s
        velocity = 110 if k % 4 == 0 else 80
        piano.notes.append(
            pretty_midi.Note(velocity, pitch if k % 4 else pitch - 12, start, start + beat_s / 2)
        )
    pm.instruments.append(piano)
    return pm


def render_wav(midi_path: Path, wav_path: Path, sample_rate_hz: int = SAMPLE_RATE_HZ) -> Path:
    """Render with the FluidSynth command line (the render stage is not needed here)."""
    if shutil.which("fluidsynth") is None:
        raise RuntimeError(
            "the fluidsynth command is missing: install the Debian package fluidsynth"
        )
    command = [
        "fluidsynth", "-ni", "-g", "0.5", "-F", str(wav_path), "-r", str(sample_rate_hz),
        str(SOUNDFONT), str(midi_path),
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    return wav_path


def cut_clip(wav_path: Path, clip_path: Path, clip_seconds: float = CLIP_SECONDS) -> Path:
    """The first clip of a rendering, as `midimix.prepare` cuts it (mono, zero-padded)."""
    from midimix.audio import iter_mono, probe
    from midimix.prepare import cut_clips, write_clip

    clip_samples = round(clip_seconds * SAMPLE_RATE_HZ)
    blocks = iter_mono(wav_path, probe(wav_path), SAMPLE_RATE_HZ)
    _, clip, _ = next(cut_clips(blocks, clip_samples, min_remainder_samples=1))
    write_clip(clip_path, clip, SAMPLE_RATE_HZ)
    return clip_path


def make_piece(
    pm: pretty_midi.PrettyMIDI, piece_id: str, genre: str, tempo_bpm: float, out_dir: Path,
    clip_seconds: float = CLIP_SECONDS,
) -> Piece:  # fmt: skip
    """Write the MIDI, render it and cut the clip: out_dir/{midi,render,clips/<genre>}/."""
    midi_path = out_dir / "midi" / f"{piece_id}.mid"
    wav_path = out_dir / "render" / f"{piece_id}.wav"
    clip_path = out_dir / "clips" / genre / f"{piece_id}.wav"
    for folder in (midi_path.parent, wav_path.parent, clip_path.parent):
        folder.mkdir(parents=True, exist_ok=True)
    if not clip_path.exists():
        pm.write(str(midi_path))
        render_wav(midi_path, wav_path)
        cut_clip(wav_path, clip_path, clip_seconds)
    has_drums = any(inst.is_drum for inst in pm.instruments)
    return Piece(piece_id, genre, tempo_bpm, midi_path, clip_path, has_drums)


def build_set(
    out_dir: Path,
    tempos_bpm: tuple[float, ...] = (70, 90, 110, 140),
    clip_seconds: float = CLIP_SECONDS,
) -> list[Piece]:
    """A chorale and a lo-fi piece (with drums) at each tempo, plus a drum-free lo-fi piece."""
    pieces = []
    for k, tempo in enumerate(tempos_bpm):
        chorale = CHORALES[k % len(CHORALES)]
        pm = chorale_midi(chorale, tempo, clip_seconds)
        pieces.append(
            make_piece(pm, f"chorale{k}_{tempo:g}bpm", "classical", tempo, out_dir, clip_seconds)
        )
        pm = lofi_midi(tempo, seed=k, drums=True, max_seconds=clip_seconds)
        pieces.append(make_piece(pm, f"lofi{k}_{tempo:g}bpm", "lofi", tempo, out_dir, clip_seconds))
    return pieces


def known_notes(
    midi_path: Path, max_seconds: float = CLIP_SECONDS
) -> tuple[np.ndarray, np.ndarray]:
    """(intervals in s (n, 2), pitches in Hz (n,)) of the pitched notes, cut to the clip."""
    pm = pretty_midi.PrettyMIDI(str(midi_path))
    notes = [
        n
        for inst in pm.instruments
        if not inst.is_drum
        for n in inst.notes
        if n.start < max_seconds
    ]
    return _as_mir_eval(notes)


def _as_mir_eval(notes: list[pretty_midi.Note]) -> tuple[np.ndarray, np.ndarray]:
    if not notes:
        return np.zeros((0, 2)), np.zeros(0)
    intervals = np.array([[n.start, max(n.end, n.start + 1e-3)] for n in notes])
    pitches_hz = np.array([pretty_midi.note_number_to_hz(n.pitch) for n in notes])
    return intervals, pitches_hz


def midi_notes(midi_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The pitched notes of a transcribed MIDI file in mir_eval's form."""
    pm = pretty_midi.PrettyMIDI(str(midi_path))
    return _as_mir_eval([n for inst in pm.instruments if not inst.is_drum for n in inst.notes])


def score_notes(
    reference: tuple[np.ndarray, np.ndarray], estimate: tuple[np.ndarray, np.ndarray]
) -> dict[str, float]:
    """Onset precision/recall/F1 at 50 ms, and F1 with offsets (mir_eval's defaults)."""
    import mir_eval

    ref_iv, ref_hz = reference
    est_iv, est_hz = estimate
    if len(ref_hz) == 0 or len(est_hz) == 0:
        return {"precision": 0.0, "recall": 0.0, "onset_f1": 0.0, "offset_f1": 0.0}
    p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_iv, ref_hz, est_iv, est_hz, onset_tolerance=0.05, offset_ratio=None
    )
    _, _, f_off, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_iv, ref_hz, est_iv, est_hz, onset_tolerance=0.05
    )
    return {"precision": p, "recall": r, "onset_f1": f, "offset_f1": f_off}
