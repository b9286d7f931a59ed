"""A generation prompt: the piece a run continues, as token ids.

MIDI is read by the one MIDI loader (`midimix.midifile.load_score`); audio goes through the
transcription stage first and is kept as out/<stem>.prompt.mid, so the MIDI that was continued
can be heard and checked.

The model sees the prompt through the tokenizer, which rounds its tempo to a tempo bin and its
onsets to the position grid (a 90 BPM prompt reads as 94.4 BPM). The piece written back is
the prompt as it was, its own tempo map and timing, with the new material after it
(`splice`), not the prompt re-timed by a decode of its tokens.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from midimix.config import MIDI_SUFFIXES
from midimix.errors import InputError, MidimixError
from midimix.midifile import Score, is_midi_name, load_score

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


def load_prompt(path: Path, tokenizer: GenreTokenizer, out_dir: Path) -> tuple[list[int], Score]:
    """(body ids, score) of the prompt at `path` (MIDI, or audio transcribed into `out_dir`):
    the ids the model continues and the score the written piece starts with."""
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
    return tokenizer.bpe_encode(base_ids), score


def prompt_ids(path: Path, tokenizer: GenreTokenizer, out_dir: Path) -> list[int]:
    """The body ids of the prompt at `path` (MIDI, or audio transcribed into `out_dir`)."""
    return load_prompt(path, tokenizer, out_dir)[0]


def _added(before: Iterable[Any], after: Iterable[Any], key: Callable[[Any], Any]) -> list[Any]:
    """The events of `after` that `before` lacks (a multiset difference by `key`)."""
    left = Counter(map(key, before))
    out = []
    for event in after:
        if left[key(event)] > 0:
            left[key(event)] -= 1
        else:
            out.append(event)
    return out


def _tempo_changes(tempos: Iterable[Any]) -> list[Any]:
    """The tempo events that change the tempo (a repeated bin is no change)."""
    events = sorted(tempos, key=lambda t: t.time)
    return [t for i, t in enumerate(events) if i == 0 or t.mspq != events[i - 1].mspq]


def _note_key(note: Any) -> tuple[int, ...]:
    return note.time, note.duration, note.pitch, note.velocity


def _tempo_key(tempo: Any) -> tuple[int, ...]:
    return tempo.time, tempo.mspq


def _signature_key(sig: Any) -> tuple[int, ...]:
    return sig.time, sig.numerator, sig.denominator


def splice(
    prompt: Score, tokenizer: GenreTokenizer, prompt_ids: list[int], new_ids: list[int]
) -> Score:
    """The prompt score as written, then the notes, tempo and time-signature changes that
    `new_ids` add to it, placed beat for beat in the prompt's ticks.

    What is new is what decoding prompt + new ids gives beyond decoding the prompt alone; a
    beat of the decoded (tokenizer) timeline is a beat of the prompt, so the prompt keeps its
    own tempo and length and the new material follows on its bar lines. The prompt's tempo
    holds until the model changes it."""
    from symusic.core import NoteTick, TempoTick, TimeSignatureTick, TrackTick

    before, whole = tokenizer.decode(prompt_ids), tokenizer.decode(prompt_ids + new_ids)
    ratio = prompt.ticks_per_quarter / whole.ticks_per_quarter

    def tick(decoded_tick: int) -> int:  # decoded ticks -> the prompt's ticks, by beats
        return round(decoded_tick * ratio)

    out = prompt.copy()
    prompt_notes: dict[tuple[int, bool], Any] = {
        (t.program, t.is_drum): t.notes for t in before.tracks
    }
    for track in whole.tracks:
        notes = _added(prompt_notes.get((track.program, track.is_drum), []), track.notes, _note_key)
        if notes:
            added = TrackTick("generated", track.program, track.is_drum)
            for n in notes:
                added.notes.append(NoteTick(tick(n.time), tick(n.duration), n.pitch, n.velocity))
            out.tracks.append(added)
    for tempo in _added(_tempo_changes(before.tempos), _tempo_changes(whole.tempos), _tempo_key):
        out.tempos.append(TempoTick(tick(tempo.time), mspq=tempo.mspq))
    for sig in _added(before.time_signatures, whole.time_signatures, _signature_key):
        out.time_signatures.append(
            TimeSignatureTick(tick(sig.time), sig.numerator, sig.denominator)
        )
    out.tempos.sort()
    out.time_signatures.sort()
    return out
