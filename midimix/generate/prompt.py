"""A generation prompt: the piece a run continues, as token ids.

MIDI is read by the one MIDI loader (`midimix.midifile.load_score`); audio goes through the
transcription stage first and is kept as out/<stem>.prompt.mid, so the MIDI that was continued
can be heard and checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from midimix.config import MIDI_SUFFIXES
from midimix.errors import InputError, MidimixError
from midimix.midifile import is_midi_name, load_score

if TYPE_CHECKING:
    from midimix.tokenize import GenreTokenizer

MIDI_HEADER = b"MThd"


def prompt_kind(path: Path) -> Literal["midi", "audio"]:
    """'midi' or 'audio' by suffix (or a MIDI header); InputError for anything else."""
    from midimix.audio import AUDIO_SUFFIXES  # numpy and soundfile: not for --help

    if not path.is_file():
        raise InputError(f"prompt {path} does not exist; give a .mid file or an audio file")
    if is_midi_name(path):
        return "midi"
    if path.suffix.lower() in AUDIO_SUFFIXES:
        return "audio"  # decoded (or refused, in one line) by midimix.audio
    with open(path, "rb") as handle:
        if handle.read(len(MIDI_HEADER)) == MIDI_HEADER:
            return "midi"
    raise InputError(
        f"prompt {path} is neither MIDI ({', '.join(MIDI_SUFFIXES)}) nor audio "
        f"({', '.join(AUDIO_SUFFIXES)}); give a MIDI file, or audio to transcribe first"
    )


def transcribe_prompt(path: Path, out_dir: Path) -> Path:
    """Audio prompt -> MIDI through the transcription stage (out_dir/<stem>.prompt.mid)."""
    from midimix.manifest import Item
    from midimix.transcribe import TranscribeConfig, transcribe_clip

    target = Path(out_dir) / f"{path.stem}.prompt.mid"
    record = transcribe_clip(Item(path.stem, "prompt", path, target), TranscribeConfig())
    if not target.is_file():
        reason = record.get("reason", "no notes found")
        raise InputError(f"audio prompt {path} gave no MIDI to continue: {reason}")
    return target


def prompt_ids(path: Path, tokenizer: GenreTokenizer, out_dir: Path) -> list[int]:
    """The body ids of the prompt at `path` (MIDI, or audio transcribed into `out_dir`)."""
    from midimix.scores import MAX_PITCH, MIN_PITCH

    kind = prompt_kind(path)
    try:
        midi = transcribe_prompt(path, out_dir) if kind == "audio" else path
        score = load_score(midi)
    except MidimixError as error:
        raise InputError(f"prompt {path} could not be read: {error}") from error
    base_ids = tokenizer.encode_base(tokenizer.prepare(score))
    if score.note_num() == 0 or not base_ids:
        raise InputError(f"prompt {path} has no notes to continue; give a MIDI file with notes")
    if tokenizer.note_count(base_ids) == 0:
        raise InputError(
            f"prompt {path}: none of its {score.note_num()} notes lies in the model's pitch "
            f"range {MIN_PITCH}-{MAX_PITCH} (drums are left out); give a prompt with notes there"
        )
    return tokenizer.bpe_encode(base_ids)
