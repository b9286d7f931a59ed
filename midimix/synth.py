"""The FluidSynth synthesizer, driven sample-exactly through ctypes.

The SoundFont is loaded once (~0.4 s) and stays loaded; each piece is played by a fresh
synthesizer on that cached SoundFont (~0.07 s), because a FluidSynth synthesizer's voices
keep state from piece to piece that no reset clears. We drive it ourselves: a piece's notes,
pedals and bends become a sorted list of events, and between two events we pull exactly the
samples in between, as float32, straight into the output buffer. `pyfluidsynth` is imported
when a synthesizer is made, not before.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from pathlib import Path
from typing import Any

import numpy as np

from midimix.errors import ConfigError, InputError
from midimix.instruments import DRUM_BANK, Layer, channel_volume
from midimix.soundfont import HOW_TO_GET_SOUNDFONT, looks_like_soundfont

# symusic's type stubs are generic placeholders that know no attributes: plain Any here
Score = Any
Track = Any

MIN_NOTE_SECONDS = 0.01  # shorter notes would start and stop inside one synth block: silence
FLUID_FAILED = -1
PULL_BLOCK_SAMPLES = 1 << 16  # samples handed to FluidSynth per call
MAX_THREADS = 2  # the rendering threads measured (2 cores); more were not

CONTROL, NOTE_OFF, NOTE_ON = 0, 1, 2  # order of events that fall on the same sample
KIND_CC, KIND_BEND = 0, 1


def layer_events(track: Track, channel: int, sample_rate_hz: int) -> np.ndarray:
    """Rows (sample, order, kind, channel, a, b) of one seconds-time track on one channel."""
    notes = track.notes.numpy()
    on = np.round(notes["time"].astype(np.float64) * sample_rate_hz).astype(np.int64)
    dur = np.maximum(notes["duration"].astype(np.float64), MIN_NOTE_SECONDS)
    off = np.round((notes["time"] + dur) * sample_rate_hz).astype(np.int64)
    pitch = notes["pitch"].astype(np.int64)
    vel = notes["velocity"].astype(np.int64)
    n = len(on)
    rows = [
        np.stack([on, np.full(n, NOTE_ON), np.zeros(n), np.full(n, channel), pitch, vel], 1),
        np.stack([off, np.full(n, NOTE_OFF), np.zeros(n), np.full(n, channel), pitch, 0 * vel], 1),
    ]
    pedals = track.pedals.numpy()
    if len(pedals["time"]):
        down = np.round(pedals["time"] * sample_rate_hz).astype(np.int64)
        up = np.round((pedals["time"] + pedals["duration"]) * sample_rate_hz).astype(np.int64)
        m = len(down)
        for at, value in ((down, 127), (up, 0)):
            cols = [at, np.full(m, CONTROL), np.full(m, KIND_CC), np.full(m, channel)]
            rows.append(np.stack([*cols, np.full(m, 64), np.full(m, value)], 1))
    bends = track.pitch_bends.numpy()
    if len(bends["time"]):
        at = np.round(bends["time"] * sample_rate_hz).astype(np.int64)
        m = len(at)
        cols = [at, np.full(m, CONTROL), np.full(m, KIND_BEND), np.full(m, channel)]
        rows.append(np.stack([*cols, bends["value"].astype(np.int64), np.zeros(m)], 1))
    return np.concatenate(rows).astype(np.int64)


def sort_events(events: np.ndarray) -> np.ndarray:
    return events[np.lexsort((events[:, 1], events[:, 0]))]


def _silence_fluidsynth_log() -> None:
    """FluidSynth prints its own errors to stderr; we raise clearer ones instead."""
    import fluidsynth

    set_log = fluidsynth.cfunc(
        "fluid_set_log_function",
        ctypes.c_void_p,
        ("level", ctypes.c_int, 1),
        ("fun", ctypes.c_void_p, 1),
        ("data", ctypes.c_void_p, 1),
    )
    for level in range(5):  # PANIC, ERR, WARN, INFO, DBG
        set_log(level, None, None)


class Synthesizer:
    """A SoundFont loaded once, and a fresh FluidSynth synthesizer on it for every piece."""

    def __init__(self, soundfont: Path, sample_rate_hz: int, gain: float, threads: int = 1) -> None:
        import fluidsynth

        self.soundfont = Path(soundfont)
        self.sample_rate_hz = sample_rate_hz
        if not looks_like_soundfont(self.soundfont):
            raise InputError(
                f"{self.soundfont} is not a SoundFont (expected a RIFF 'sfbk' file); "
                f"{HOW_TO_GET_SOUNDFONT}"
            )
        _silence_fluidsynth_log()
        self.gain = gain
        # FluidSynth renders its voices on this many threads (synth.cpu-cores) and sums them in
        # a fixed order: the same samples, bit for bit, as one thread (a test); 0.24 s instead
        # of 0.37 s for a 45 s piece on 2 cores
        self.threads = max(1, min(threads, MAX_THREADS))
        # This synthesizer only holds the loaded SoundFont (FluidSynth caches a file's samples
        # while one synthesizer has it loaded), so the fresh one of each piece loads it fast.
        self._holder, self.sfid = self._new_synth()
        self.synth = self._holder
        # the next piece's fresh synthesizer, made in a thread while this piece's effects run
        # (loading the SoundFont into it takes about 50 ms, a warm studio request's 2.5%)
        self._spare: tuple[Any, int] | None = None
        self._spare_thread: threading.Thread | None = None
        self.channels = int(self.synth.get_setting("synth.midi-channels"))
        self._write_float = fluidsynth.cfunc(
            "fluid_synth_write_float",
            ctypes.c_int,
            ("synth", ctypes.c_void_p, 1),
            ("len", ctypes.c_int, 1),
            ("lout", ctypes.c_void_p, 1),
            ("loff", ctypes.c_int, 1),
            ("lincr", ctypes.c_int, 1),
            ("rout", ctypes.c_void_p, 1),
            ("roff", ctypes.c_int, 1),
            ("rincr", ctypes.c_int, 1),
        )

    def _new_synth(self, quiet: bool = True) -> tuple[Any, int]:
        """(a FluidSynth synthesizer with the SoundFont loaded, the SoundFont's id). `quiet`:
        C libraries' notes on stderr silenced (process-wide: not from a second thread)."""
        import fluidsynth

        from midimix.audio import quiet_stderr

        # FluidSynth's own reverb and chorus run modulators that carry on from one file to the
        # next: they are off, and the room comes from pedalboard's reverb (fresh per file).
        settings = {"synth.reverb.active": 0, "synth.chorus.active": 0}
        settings["synth.cpu-cores"] = self.threads
        synth = fluidsynth.Synth(gain=self.gain, samplerate=float(self.sample_rate_hz), **settings)
        with quiet_stderr() if quiet else contextlib.nullcontext():  # glib noise, corrupt file
            sfid = synth.sfload(str(self.soundfont))
        if sfid == FLUID_FAILED:
            synth.delete()
            raise InputError(
                f"SoundFont {self.soundfont} is corrupt or truncated and cannot be loaded; "
                f"{HOW_TO_GET_SOUNDFONT}"
            )
        return synth, sfid

    def close(self) -> None:
        spare = self._take_spare()
        if spare is not None:
            spare[0].delete()
        if self.synth is not self._holder:
            self.synth.delete()
        self._holder.delete()

    def _make_spare(self) -> None:
        """Start making the next piece's synthesizer in a thread (one the SoundFont loaded
        into once already: the file is known to be good, so stderr is left alone)."""

        def make() -> None:
            try:
                self._spare = self._new_synth(quiet=False)
            except Exception:  # the next piece makes its own, and reports what is wrong
                self._spare = None

        # not a daemon: a process that ends waits the few ms for it, not exiting mid-load
        self._spare_thread = threading.Thread(target=make, name="midimix-synth")
        self._spare_thread.start()

    def _take_spare(self) -> tuple[Any, int] | None:
        if self._spare_thread is not None:
            self._spare_thread.join()
            self._spare_thread = None
        spare, self._spare = self._spare, None
        return spare

    def __enter__(self) -> Synthesizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def play(self, score: Score, layers: list[Layer], n_samples: int) -> np.ndarray:
        """Stereo audio (n_samples, 2) float32 of a seconds-time score played by `layers`."""
        rate = self.sample_rate_hz
        events = sort_events(
            np.concatenate(
                [layer_events(score.tracks[x.track_index], x.channel, rate) for x in layers]
            )
        )
        self._reset(layers)
        audio = np.zeros((n_samples, 2), dtype=np.float32)
        position = 0
        for sample, order, kind, channel, a, b in events.tolist():
            sample = min(sample, n_samples)
            if sample > position:
                self._pull(audio, position, sample)
                position = sample
            if order == NOTE_ON:
                self.synth.noteon(channel, a, b)
            elif order == NOTE_OFF:
                self.synth.noteoff(channel, a)
            elif kind == KIND_CC:
                self.synth.cc(channel, a, b)
            else:
                self.synth.pitch_bend(channel, a)
        self._pull(audio, position, n_samples)
        self._make_spare()
        return audio

    def _reset(self, layers: list[Layer]) -> None:
        """A fresh synthesizer for this piece, with this piece's instruments. One reused after
        a reset gave a piece's first rendering different samples from every later one (by up
        to 1.5% of full scale with a drum kit): a file's audio depended on the files rendered
        before it in the same process, and a resumed batch did not match an unbroken one."""
        if self.synth is not self._holder:
            self.synth.delete()
        self.synth, self.sfid = self._take_spare() or self._new_synth()
        for layer in layers:
            if self.synth.program_select(layer.channel, self.sfid, layer.bank, layer.program):
                kind = "drum kit" if layer.bank == DRUM_BANK else "program"
                raise ConfigError(
                    f"SoundFont {self.soundfont.name} has no {kind} {layer.program} "
                    f"(bank {layer.bank}); choose another General MIDI number"
                )
            self.synth.cc(layer.channel, 7, channel_volume(layer.gain))

    def _pull(self, audio: np.ndarray, start: int, stop: int) -> None:
        """Synthesize samples [start, stop) into `audio` (samples, 2), in place."""
        base = audio.ctypes.data
        for begin in range(start, stop, PULL_BLOCK_SAMPLES):
            length = min(PULL_BLOCK_SAMPLES, stop - begin)
            pointer = base + begin * 2 * audio.itemsize
            self._write_float(self.synth.synth, length, pointer, 0, 2, pointer, 1, 2)
