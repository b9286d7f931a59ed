"""Fuzz the stage command lines with mutated audio and MIDI files.

Small valid seeds (WAV 16-bit and float, FLAC, MP3, OGG, MIDI) are made in code, then mutated
by a seeded generator: bit flips, truncation, inserted and duplicated chunks and bytes, and
extreme header fields (WAV channels 32767, sample rate 0, a huge data size, NaN samples; MIDI
ticks-per-quarter 0, huge track lengths, tempo 0, time-signature denominators that overflow,
notes far out of range or at absurd ticks). Each stage's command line runs over a batch of
cases in a child process with a timeout and an address-space cap; a batch that crashes or
hangs is re-run case by case to find the culprit.

A case counts as
- a crash: stderr holds a Python traceback, or the process died by a signal;
- a hang: the run passed the timeout;
- unexpected: the stage caught an exception no check foresaw ("unexpected ..." reason);
- unrecorded: the input is missing from the stage's manifest (or report) with a status.

    python benchmarks/fuzz_cli.py --cases 2000 --seed 0
    python benchmarks/fuzz_cli.py --cases 300 --stages collect,prepare,tokenize,evaluate

Prints one line per stage and the totals; exits 1 when any case crashed, hung or went
unrecorded.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
GENRE = "g"
AUDIO_KINDS = ("wav16", "wavf32", "flac", "mp3", "ogg")
AUDIO_STAGES = ("collect", "prepare", "transcribe")
MIDI_STAGES = ("tokenize", "render", "evaluate", "prompt")
ALL_STAGES = ("collect", "prepare", "tokenize", "render", "evaluate", "prompt", "transcribe")
FAST_STAGES = ("collect", "prepare", "tokenize", "evaluate")
# share of the cases each stage gets (transcribe and prompts load a model per run: slow)
STAGE_WEIGHT = {
    "collect": 3,
    "prepare": 4,
    "tokenize": 4,
    "render": 2,
    "evaluate": 3,
    "prompt": 0.15,
    "transcribe": 0.25,
}
STAGE_BATCH = {
    "collect": 60,
    "prepare": 60,
    "tokenize": 60,
    "render": 25,
    "evaluate": 60,
    "prompt": 1,
    "transcribe": 8,
}


# ---------------------------------------------------------------------------- seeds


def _tone(seconds: float, rate_hz: int, channels: int) -> np.ndarray:
    t = np.arange(round(seconds * rate_hz)) / rate_hz
    mono = 0.4 * np.sin(2 * np.pi * 440 * t) * np.minimum(1, t * 4)
    return np.stack([mono] * channels, axis=1).astype(np.float32)


def _encoded(samples: np.ndarray, rate_hz: int, fmt: str, subtype: str) -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, samples, rate_hz, format=fmt, subtype=subtype)
    return buffer.getvalue()


def _vlq(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _track(events: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(_vlq(delta) + data for delta, data in events) + b"\x00\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(body)) + body


def midi_seed() -> bytes:
    """A format-1 MIDI: a tempo/meter track and two bars of piano notes, 96 ticks a beat."""
    meta = _track(
        [
            (0, b"\xff\x51\x03" + (500000).to_bytes(3, "big")),  # 120 BPM
            (0, b"\xff\x58\x04\x04\x02\x18\x08"),  # 4/4
        ]
    )
    notes: list[tuple[int, bytes]] = [(0, b"\xc0\x00")]
    for pitch in (60, 64, 67, 72, 67, 64, 62, 60):
        notes += [(0, bytes([0x90, pitch, 90])), (96, bytes([0x80, pitch, 0]))]
    header = b"MThd" + struct.pack(">IHHH", 6, 1, 2, 96)
    return header + meta + _track(notes)


def seeds() -> dict[str, bytes]:
    stereo = _tone(2.0, 16000, 2)
    mono = _tone(2.0, 22050, 1)
    return {
        "wav16": _encoded(stereo, 16000, "WAV", "PCM_16"),
        "wavf32": _encoded(mono, 22050, "WAV", "FLOAT"),
        "flac": _encoded(stereo, 16000, "FLAC", "PCM_16"),
        "mp3": _encoded(mono, 22050, "MP3", "MPEG_LAYER_III"),
        "ogg": _encoded(stereo, 16000, "OGG", "VORBIS"),
        "mid": midi_seed(),
    }


SUFFIX = {"wav16": ".wav", "wavf32": ".wav", "flac": ".flac", "mp3": ".mp3", "ogg": ".ogg"}


# ---------------------------------------------------------------------------- mutations


def _chunks(data: bytes, start: int, order: str) -> list[tuple[int, bytes, int]]:
    """(offset, id, size) of the RIFF sub-chunks or MIDI chunks from `start`."""
    out = []
    offset = start
    while offset + 8 <= len(data):
        cid = data[offset : offset + 4]
        (size,) = struct.unpack(order + "I", data[offset + 4 : offset + 8])
        out.append((offset, cid, size))
        offset += 8 + size + (size & 1 if order == "<" else 0)
    return out


def _put(data: bytes, offset: int, fmt: str, value: int | float) -> bytes:
    packed = struct.pack(fmt, value)
    return data[:offset] + packed + data[offset + len(packed) :]


def m_bitflip(rng: random.Random, data: bytes, kind: str) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 2, 8, 64))):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def m_bitflip_head(rng: random.Random, data: bytes, kind: str) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 2, 4))):
        i = rng.randrange(min(len(out), 64))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def m_truncate(rng: random.Random, data: bytes, kind: str) -> bytes:
    return data[: rng.choice((0, 1, 4, 12, 44, rng.randrange(len(data)), len(data) * 9 // 10))]


def m_insert_bytes(rng: random.Random, data: bytes, kind: str) -> bytes:
    i = rng.randrange(len(data))
    return data[:i] + rng.randbytes(rng.choice((1, 7, 100, 4096))) + data[i:]


def m_duplicate_range(rng: random.Random, data: bytes, kind: str) -> bytes:
    i = rng.randrange(len(data))
    j = min(len(data), i + rng.choice((4, 64, 1024, len(data))))
    return data[:j] + data[i:j] * rng.choice((1, 2, 10)) + data[j:]


def m_zero_range(rng: random.Random, data: bytes, kind: str) -> bytes:
    i = rng.randrange(len(data))
    j = min(len(data), i + rng.choice((4, 64, 4096)))
    return data[:i] + bytes(j - i) + data[j:]


def m_wav_header(rng: random.Random, data: bytes, kind: str) -> bytes:
    """An extreme fmt field: channels, rate, byte rate, block align or bits per sample."""
    field_fmt = rng.choice(
        [
            (22, "<H", (0, 3, 255, 32767, 65535)),  # channels
            (24, "<I", (0, 1, 7, 0x7FFFFFFF, 0xFFFFFFFF)),  # sample rate
            (28, "<I", (0, 1, 0xFFFFFFFF)),  # byte rate
            (32, "<H", (0, 1, 3, 65535)),  # block align
            (34, "<H", (0, 1, 7, 12, 64, 65535)),  # bits per sample
            (4, "<I", (0, 4, 0xFFFFFFFF)),  # RIFF size
            (20, "<H", (0, 2, 0xFFFE, 85)),  # format tag
        ]
    )
    offset, fmt, values = field_fmt
    return _put(data, offset, fmt, rng.choice(values))


def m_wav_data_size(rng: random.Random, data: bytes, kind: str) -> bytes:
    for offset, cid, _ in _chunks(data, 12, "<"):
        if cid == b"data":
            size = rng.choice((0, 1, 3, 0x7FFFFFF0, 0xFFFFFFF0, 0xFFFFFFFF, len(data) * 100))
            return _put(data, offset + 4, "<I", size & 0xFFFFFFFF)
    return data


def m_wav_chunks(rng: random.Random, data: bytes, kind: str) -> bytes:
    """Duplicate a chunk, insert an unknown one (maybe with a lying size) or a second fmt."""
    chunks = _chunks(data, 12, "<")
    if not chunks:
        return data
    offset, cid, size = rng.choice(chunks)
    whole = data[offset : offset + 8 + min(size, 4096)]
    choice = rng.randrange(3)
    if choice == 0:
        return data[:offset] + whole + data[offset:]
    body = rng.randbytes(rng.choice((0, 5, 64)))
    claimed = rng.choice((len(body), 0xFFFFFFF0, len(body) + 1000))
    junk = rng.choice((b"LIST", b"JUNK", b"fmt ", b"fact", b"\x00\x00\x00\x00"))
    chunk = junk + struct.pack("<I", claimed) + body
    return data[:12] + chunk + data[12:] if choice == 1 else data[:offset] + chunk + data[offset:]


def m_wav_nan(rng: random.Random, data: bytes, kind: str) -> bytes:
    """A stretch of NaN or infinite samples in a float WAV (16-bit: full-scale noise)."""
    for offset, cid, size in _chunks(data, 12, "<"):
        if cid != b"data":
            continue
        start = offset + 8
        if kind != "wavf32":
            noise = bytes(rng.randrange(256) for _ in range(min(size, 4000)))
            return data[:start] + noise + data[start + len(noise) :]
        count = min(size // 4, rng.choice((1, 100, 2205, size // 4)))
        first = rng.randrange(max(1, size // 4 - count + 1))
        value = rng.choice((float("nan"), float("inf"), float("-inf"), 1e30))
        patch = struct.pack("<f", value) * count
        at = start + 4 * first
        return data[:at] + patch + data[at + len(patch) :]
    return data


def m_midi_header(rng: random.Random, data: bytes, kind: str) -> bytes:
    choice = rng.randrange(4)
    if choice == 0:  # ticks per quarter
        return _put(data, 12, ">H", rng.choice((0, 1, 0x7FFF, 0xE250, 0x8001)))
    if choice == 1:  # number of tracks
        return _put(data, 10, ">H", rng.choice((0, 1, 3, 0xFFFF)))
    if choice == 2:  # format
        return _put(data, 8, ">H", rng.choice((0, 2, 3, 0xFFFF)))
    return _put(data, 4, ">I", rng.choice((0, 4, 7, 0xFFFFFFFF)))  # header length


def m_midi_track_length(rng: random.Random, data: bytes, kind: str) -> bytes:
    chunks = _chunks(data, 14, ">")
    if not chunks:
        return data
    offset, _, size = rng.choice(chunks)
    value = rng.choice((0, 1, size + 1, size * 1000, 0x7FFFFFFF, 0xFFFFFFFF))
    return _put(data, offset + 4, ">I", value & 0xFFFFFFFF)


def m_midi_chunks(rng: random.Random, data: bytes, kind: str) -> bytes:
    chunks = _chunks(data, 14, ">")
    if not chunks:
        return data
    offset, _, size = rng.choice(chunks)
    choice = rng.randrange(3)
    if choice == 0:  # the same track again (and again)
        whole = data[offset : offset + 8 + size]
        return data[:offset] + whole * rng.choice((1, 2, 50)) + data[offset:]
    body = rng.randbytes(rng.choice((0, 3, 40)))
    chunk = rng.choice((b"XFIH", b"MTrk", b"MThd")) + struct.pack(">I", len(body)) + body
    return data[:offset] + chunk + data[offset:]


def m_midi_events(rng: random.Random, data: bytes, kind: str) -> bytes:
    """Absurd event values in a valid frame: tempo 0 or huge, time signatures whose
    denominator power overflows, notes out of every range, deltas at the VLQ maximum."""
    out = data
    choice = rng.randrange(6)
    if choice == 0:
        tempo = rng.choice((0, 1, 0xFFFFFF)).to_bytes(3, "big")
        out = out.replace(b"\xff\x51\x03" + (500000).to_bytes(3, "big"), b"\xff\x51\x03" + tempo)
    elif choice == 1:
        num, den = rng.choice(((0, 2), (4, 32), (4, 64), (4, 255), (255, 0), (4, 31)))
        out = out.replace(b"\xff\x58\x04\x04\x02", b"\xff\x58\x04" + bytes([num, den]))
    elif choice == 2:  # every note below the piano (tokenizers keep 21-108)
        low = rng.choice((0, 5, 12, 20, 127))
        for pitch in (60, 64, 67, 72, 62):
            for status in (0x90, 0x80):
                out = out.replace(bytes([status, pitch]), bytes([status, low]))
    elif choice == 3:  # a note very far away
        out = out.replace(b"\x60\x80\x48\x00", _vlq(rng.choice((0x0FFFFFFF, 10**7))) + b"\x80H\x00")
        return _fix_track_lengths(out)
    elif choice == 4:  # many notes: thousands of onsets
        n = rng.choice((2000, 20000))
        extra = b"".join(
            b"\x01\x90" + bytes([40 + i % 40, 80]) + b"\x00\x80" + bytes([40 + i % 40, 0])
            for i in range(n)
        )
        out = out.replace(b"\xc0\x00", b"\xc0\x00" + extra, 1)
        return _fix_track_lengths(out)
    else:  # a long note: one key held for hours
        out = out.replace(b"\x60\x80\x48\x00", _vlq(0x0FFFFFF) + b"\x80H\x00", 1)
        return _fix_track_lengths(out)
    return out


def _fix_track_lengths(data: bytes) -> bytes:
    """After growing an event list: the track lengths that make the frame valid again."""
    header, rest = data[:14], data[14:]
    tracks = rest.split(b"MTrk")[1:]
    out = header
    for track in tracks:
        body = track[4:]
        out += b"MTrk" + struct.pack(">I", len(body)) + body
    return out


GENERIC = [m_bitflip, m_bitflip_head, m_truncate, m_insert_bytes, m_duplicate_range, m_zero_range]
BY_KIND: dict[str, list[Callable[[random.Random, bytes, str], bytes]]] = {
    "wav16": [m_wav_header, m_wav_data_size, m_wav_chunks, m_wav_nan],
    "wavf32": [m_wav_header, m_wav_data_size, m_wav_chunks, m_wav_nan, m_wav_nan],
    "flac": [],
    "mp3": [],
    "ogg": [],
    "mid": [m_midi_header, m_midi_track_length, m_midi_chunks, m_midi_events, m_midi_events],
}


def mutate(rng: random.Random, kind: str, data: bytes) -> tuple[str, bytes]:
    """(name of the mutations, mutated bytes): one to three mutations, format-aware ones
    chosen as often as generic ones."""
    names = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        pool = BY_KIND[kind] if BY_KIND[kind] and rng.random() < 0.6 else GENERIC
        fn = rng.choice(pool)
        if data:
            data = fn(rng, data, kind)
        names.append(fn.__name__.removeprefix("m_"))
    return "+".join(names), data


# ---------------------------------------------------------------------------- running


@dataclass
class Case:
    name: str  # file stem, unique
    kind: str
    mutation: str
    path: Path


@dataclass
class RunResult:
    returncode: int | None
    stderr: str
    hung: bool
    peak_kib: int
    seconds: float

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.stderr

    @property
    def signalled(self) -> bool:
        return self.returncode is not None and self.returncode < 0


@dataclass
class StageStats:
    cases: int = 0
    crashes: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    unrecorded: list[str] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    peak_kib: int = 0
    seconds: float = 0.0


def run_cli(args: list[str], cwd: Path, timeout_s: float, memory_bytes: int) -> RunResult:
    """Run `python -m midimix <args>` under an address-space cap, killed (with its process
    group) after `timeout_s`; the peak resident memory is that of the child's whole run."""

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))

    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MIDIMIX_THREADS="1")
    env.pop("PYTHONWARNINGS", None)
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            [PYTHON, "-m", "midimix", *args],
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=err,
            stdin=subprocess.DEVNULL,
            preexec_fn=limits,
            start_new_session=True,
            env=env,
        )
        hung = threading.Event()

        def kill() -> None:
            hung.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

        timer = threading.Timer(timeout_s, kill)
        timer.start()
        _, status, usage = os.wait4(process.pid, 0)
        timer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        # workers left in the group: none should be, but never leak them
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    return RunResult(
        process.returncode,
        stderr,
        hung.is_set(),
        int(usage.ru_maxrss),
        time.perf_counter() - start,
    )


def _records(manifest: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    if manifest.exists():
        for line in manifest.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "id" in record:
                out[str(record["id"])] = record
    return out


def _sha_id(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


class Stage:
    """How one stage's command line is run over a batch and how its record of a case is found."""

    def __init__(self, name: str, work: Path, reference: Path, model_free: bool = True) -> None:
        self.name = name
        self.work = work
        self.reference = reference

    def layout(self, batch: list[Case], folder: Path) -> list[str]:
        """Place the batch's files under `folder`; the command line's arguments."""
        inputs = folder / "in" / GENRE
        inputs.mkdir(parents=True)
        for case in batch:
            shutil.copyfile(case.path, inputs / case.path.name)
        out = folder / "out"
        files = [str(inputs / c.path.name) for c in batch]
        common = ["--no-progress"] if self.name in ("prepare", "transcribe") else []
        if self.name == "collect":
            return ["collect", "--genre", f"{GENRE}={inputs}", "--raw-dir", str(out), *common]
        if self.name == "prepare":
            return [
                "prepare", "--raw-dir", str(folder / "in"), "--clips-dir", str(out),
                "--clip-seconds", "1", "--min-remainder-seconds", "0.2", *common,
            ]  # fmt: skip
        if self.name == "transcribe":
            return ["transcribe", "--clips-dir", str(folder / "in"), "--midi-dir", str(out)]
        if self.name == "tokenize":
            return ["tokenize", f"{GENRE}={inputs}", "--out", str(out), "--no-progress"]
        if self.name == "render":
            return ["render", *files, "--out-dir", str(out), "--max-seconds", "20"]
        if self.name == "evaluate":
            return [
                "evaluate", "--generated", f"fuzz={inputs}", "--reference",
                f"a={self.reference / 'a'}", "--reference", f"b={self.reference / 'b'}",
                "--out-dir", str(out), "--no-plots", "--cv-folds", "2",
            ]  # fmt: skip
        if self.name == "prompt":
            return [
                "generate", "--prompt", files[0], "--out-dir", str(out), "--no-render",
                "--bars", "1", "--threads", "1",
            ]  # fmt: skip
        raise ValueError(self.name)

    def statuses(self, batch: list[Case], folder: Path, run: RunResult) -> dict[str, str | None]:
        """case name -> its recorded status ('failed: unexpected ...' marks an unforeseen
        exception), None when the input is not recorded."""
        out = folder / "out"
        found: dict[str, str | None] = {}
        if self.name in ("collect", "prepare", "transcribe", "tokenize", "render"):
            records = _records(out / "manifest.jsonl")
            for case in batch:
                if self.name == "collect":
                    key = _sha_id(case.path)
                elif self.name == "tokenize":
                    key = f"{GENRE}/{case.name}"
                else:
                    key = case.name
                record = records.get(key)
                found[case.name] = _status(record) if record else None
        elif self.name == "evaluate":
            report_path = out / "report.json"
            report = json.loads(report_path.read_text()) if report_path.exists() else None
            for case in batch:
                if report is None:  # refused as a whole: fine if it said why in one line
                    found[case.name] = "refused" if run.returncode else None
                    continue
                generated = report["generated"]["fuzz"]
                kept = {Path(p["path"]).name for p in generated["per_piece"]}
                skipped = [s for s in generated["skipped"] if case.path.name in s]
                found[case.name] = (
                    "ok" if case.path.name in kept else f"failed: {skipped[0]}" if skipped else None
                )
        else:  # a prompt: a generated piece, or a one-line refusal
            ok = run.returncode == 0 and any(out.glob("*.mid"))
            found[batch[0].name] = "ok" if ok else "refused" if run.returncode else None
        return found


def _status(record: dict) -> str:
    status = str(record.get("status"))
    reason = str(record.get("reason", ""))
    return f"{status}: {reason}" if reason else status


def make_reference(folder: Path) -> Path:
    """Two small reference genres for evaluate (valid MIDI, different pitch ranges)."""
    base = midi_seed()
    for genre, shift in (("a", 0), ("b", 12)):
        (folder / genre).mkdir(parents=True)
        for i in range(4):
            data = base
            for pitch in (60, 64, 67, 72, 62):
                for status in (0x90, 0x80):
                    data = data.replace(bytes([status, pitch]), bytes([status, pitch + shift + i]))
            (folder / genre / f"r{i}.mid").write_bytes(data)
    return folder


def make_cases(rng: random.Random, kinds: tuple[str, ...], count: int, folder: Path) -> list[Case]:
    originals = seeds()
    cases = []
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        kind = kinds[i % len(kinds)]
        mutation, data = mutate(rng, kind, originals[kind])
        name = f"c{i:05d}_{kind}"
        path = folder / f"{name}{SUFFIX.get(kind, '.mid')}"
        path.write_bytes(data)
        cases.append(Case(name, kind, mutation, path))
    return cases


def fuzz_stage(
    stage: Stage,
    cases: list[Case],
    *,
    batch_size: int,
    timeout_s: float,
    memory_bytes: int,
    log: Callable[[str], None] = print,
) -> StageStats:
    stats = StageStats(cases=len(cases))
    start = time.perf_counter()
    for first in range(0, len(cases), batch_size):
        batch = cases[first : first + batch_size]
        _run_batch(stage, batch, stats, timeout_s, memory_bytes, split=len(batch) > 1, log=log)
    stats.seconds = time.perf_counter() - start
    return stats


def _run_batch(
    stage: Stage,
    batch: list[Case],
    stats: StageStats,
    timeout_s: float,
    memory_bytes: int,
    *,
    split: bool,
    log: Callable[[str], None],
) -> None:
    folder = Path(tempfile.mkdtemp(prefix=f"{stage.name}-", dir=stage.work))
    try:
        args = stage.layout(batch, folder)
        run = run_cli(args, folder, timeout_s, memory_bytes)
        stats.peak_kib = max(stats.peak_kib, run.peak_kib)
        if (run.traceback or run.hung or run.signalled) and split:
            for case in batch:  # find which input did it
                _run_batch(stage, [case], stats, timeout_s, memory_bytes, split=False, log=log)
            return
        found = stage.statuses(batch, folder, run)
        for case in batch:
            what = f"{case.path.name} ({case.mutation})"
            if run.hung:
                stats.hangs.append(what)
                log(f"  HANG {stage.name} {what} after {run.seconds:.0f} s")
                continue
            if run.traceback or run.signalled:
                stats.crashes.append(what)
                tail = run.stderr.strip().splitlines()[-1:] or [f"exit {run.returncode}"]
                log(f"  CRASH {stage.name} {what}: {tail[0][:200]}")
                continue
            status = found.get(case.name)
            if status is None:
                stats.unrecorded.append(what)
                log(f"  UNRECORDED {stage.name} {what}: rc {run.returncode}, {run.stderr[-200:]!r}")
                continue
            if "unexpected " in status:
                stats.unexpected.append(what)
                log(f"  UNEXPECTED {stage.name} {what}: {status[:200]}")
            stats.statuses[status.split(":")[0]] += 1
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def plan(total: int, stages: tuple[str, ...]) -> dict[str, int]:
    weight = sum(STAGE_WEIGHT[s] for s in stages)
    return {s: max(1, round(total * STAGE_WEIGHT[s] / weight)) for s in stages}


def run_fuzz(
    total: int,
    seed: int,
    stages: tuple[str, ...],
    work: Path,
    *,
    timeout_s: float = 60.0,
    memory_bytes: int = 2 << 30,
    log: Callable[[str], None] = print,
) -> dict[str, StageStats]:
    rng = random.Random(seed)
    reference = make_reference(work / "reference")
    results: dict[str, StageStats] = {}
    for name, count in plan(total, stages).items():
        kinds: tuple[str, ...] = AUDIO_KINDS if name in AUDIO_STAGES else ("mid",)
        if name == "transcribe":
            kinds = ("wav16", "wavf32")  # transcribe reads the clips prepare writes: WAV
        cases = make_cases(rng, kinds, count, work / "cases" / name)
        stage = Stage(name, work, reference)
        results[name] = stats = fuzz_stage(
            stage,
            cases,
            batch_size=STAGE_BATCH[name],
            timeout_s=timeout_s,
            memory_bytes=memory_bytes,
            log=log,
        )
        log(summary_line(name, stats))
    return results


def summary_line(name: str, stats: StageStats) -> str:
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(stats.statuses.items()))
    return (
        f"{name:10s} {stats.cases:5d} cases: {len(stats.crashes)} crashes, {len(stats.hangs)} "
        f"hangs, {len(stats.unexpected)} unexpected, {len(stats.unrecorded)} unrecorded; peak "
        f"{stats.peak_kib / 1024:.0f} MiB; {stats.seconds:.0f} s ({statuses})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=2000, help="total cases over the stages")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stages", default=",".join(ALL_STAGES), help="comma-separated")
    parser.add_argument("--timeout-s", type=float, default=60.0, help="per run of a command")
    parser.add_argument("--memory-gib", type=float, default=2.0, help="address-space cap")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    stages = tuple(s for s in args.stages.split(",") if s)
    unknown = set(stages) - set(ALL_STAGES)
    if unknown:
        parser.error(f"unknown stages {sorted(unknown)}; choose from {', '.join(ALL_STAGES)}")
    work = args.work or Path(tempfile.mkdtemp(prefix="midimix-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = run_fuzz(
        args.cases,
        args.seed,
        stages,
        work,
        timeout_s=args.timeout_s,
        memory_bytes=int(args.memory_gib * (1 << 30)),
    )
    cases = sum(s.cases for s in results.values())
    crashes = sum(len(s.crashes) for s in results.values())
    hangs = sum(len(s.hangs) for s in results.values())
    unexpected = sum(len(s.unexpected) for s in results.values())
    unrecorded = sum(len(s.unrecorded) for s in results.values())
    peak = max((s.peak_kib for s in results.values()), default=0)
    print(
        f"total: {cases} cases, {crashes} crashes, {hangs} hangs, {unexpected} unexpected, "
        f"{unrecorded} unrecorded, peak memory {peak / 1024:.0f} MiB, "
        f"{time.perf_counter() - start:.0f} s"
    )
    if args.json:
        figures = {
            name: {
                "cases": s.cases, "crashes": s.crashes, "hangs": s.hangs,
                "unexpected": s.unexpected, "unrecorded": s.unrecorded,
                "statuses": dict(s.statuses), "peak_mib": round(s.peak_kib / 1024),
                "seconds": round(s.seconds, 1),
            }
            for name, s in results.items()
        }  # fmt: skip
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if crashes or hangs or unrecorded else 0


if __name__ == "__main__":
    sys.exit(main())
