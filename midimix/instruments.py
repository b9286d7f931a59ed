"""The instrument plan of a render: which General MIDI program plays each track, on which
synth channel, at which gain.

The genre mix picks the instruments: each track is played by one layer per genre (electric
piano for lo-fi, grand piano for classical, ...) whose channel volume follows the genre's
weight, so a 70/30 mix sounds 70/30."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from midimix.errors import ItemError
from midimix.render_config import LOFI_GENRE, RenderConfig

# symusic's type stubs are generic placeholders that know no attributes: plain Any here
Score = Any
Track = Any

DRUM_BANK = 128  # General MIDI percussion bank of a SoundFont
BASS_MEDIAN_PITCH = 52  # E3: a line whose median pitch sits below it is played as bass


@dataclass
class Palette:
    """The General MIDI programs one genre plays a piece with."""

    keys: int  # melodic tracks
    bass: int  # tracks that sit low (a bass line)
    drum_kit: int | None  # bank-128 preset for drum tracks; None keeps the file's kit
    pad: int | None = None  # optional extra layer under the keys (strings)
    pad_gain: float = 0.45


@dataclass
class Layer:
    track_index: int
    channel: int
    bank: int
    program: int
    gain: float  # amplitude; becomes channel volume (CC 7) below


def palettes(config: RenderConfig) -> dict[str, Palette]:
    """The programs of each genre the config names."""
    strings = config.strings_program if config.strings else None
    return {
        LOFI_GENRE: Palette(
            config.lofi_keys_program, config.lofi_bass_program, config.lofi_drum_kit
        ),
        "classical": Palette(
            config.classical_keys_program, config.classical_bass_program, None, strings
        ),
    }


def is_bass_track(track: Track) -> bool:
    """A General MIDI bass program, or a line whose median pitch sits below E3."""
    if 32 <= track.program <= 39:
        return True
    pitches = track.notes.numpy()["pitch"]
    return bool(len(pitches)) and float(np.median(pitches)) < BASS_MEDIAN_PITCH


def plan_layers(score: Score, config: RenderConfig) -> list[tuple[int, int, int, float]]:
    """(track index, bank, program, gain) for every track and genre layer of `score`."""
    weights = config.genre_weights or {}
    by_genre = palettes(config)
    plan: list[tuple[int, int, int, float]] = []
    for index, track in enumerate(score.tracks):
        if not track.note_num():
            continue
        if track.is_drum:
            lofi_kit = by_genre[LOFI_GENRE].drum_kit
            use_lofi_kit = config.lofi_weight >= config.drums_threshold and lofi_kit is not None
            kit = lofi_kit if use_lofi_kit and lofi_kit is not None else track.program
            plan.append((index, DRUM_BANK, int(kit), 1.0))
            continue
        if not weights:
            plan.append((index, 0, track.program, 1.0))
            continue
        gains: dict[int, float] = {}
        for genre, weight in weights.items():
            palette = by_genre.get(genre)
            if palette is None:  # a genre without a palette plays the file's own instrument
                gains[track.program] = gains.get(track.program, 0.0) + weight
                continue
            program = palette.bass if is_bass_track(track) else palette.keys
            gains[program] = gains.get(program, 0.0) + weight
            if palette.pad is not None:
                gains[palette.pad] = gains.get(palette.pad, 0.0) + weight * palette.pad_gain
        plan += [(index, 0, program, gain) for program, gain in gains.items() if gain > 0]
    return plan


def assign_channels(plan: list[tuple[int, int, int, float]], channels: int) -> list[Layer]:
    """Drum layers on channel 10 of a block of 16 (9, 25, ...), melodic layers elsewhere."""
    drum_free = [c for c in range(channels) if c % 16 == 9]
    melodic_free = [c for c in range(channels) if c % 16 != 9]
    layers = []
    for track_index, bank, program, gain in plan:
        pool = drum_free if bank == DRUM_BANK else melodic_free
        if not pool:
            raise ItemError(f"the piece needs more than {channels} synth channels; merge tracks")
        layers.append(Layer(track_index, pool.pop(0), bank, program, gain))
    return layers


def channel_volume(gain: float) -> int:
    """CC 7 for an amplitude gain: SoundFont synths attenuate by 40 log10(cc/127) dB."""
    return int(round(127 * math.sqrt(min(max(gain, 0.0), 1.0))))
