"""Transfer progress: a live display on a TTY, quiet lines otherwise, JSON events.

Kept dependency-free and cheap: the hot loop only adds to a counter; a
display thread redraws a few times a second.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Protocol, TextIO

from ocidist.descriptor import Descriptor


class Progress(Protocol):
    def start(self, desc: Descriptor, offset: int) -> None: ...
    def update(self, desc: Descriptor, held: int) -> None: ...
    def done(self, desc: Descriptor, status: str) -> None: ...  # "fetched" | "exists"
    def close(self) -> None: ...


class NullProgress:
    def start(self, desc: Descriptor, offset: int) -> None:
        pass

    def update(self, desc: Descriptor, held: int) -> None:
        pass

    def done(self, desc: Descriptor, status: str) -> None:
        pass

    def close(self) -> None:
        pass


def human_size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def short(desc: Descriptor) -> str:
    return f"{desc.digest.algorithm}:{desc.digest.encoded[:12]}"


class LineProgress:
    """Not a TTY: one line per finished object, on stderr."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stderr
        self._lock = threading.Lock()
        self._started: dict[str, float] = {}

    def start(self, desc: Descriptor, offset: int) -> None:
        self._started[str(desc.digest)] = time.monotonic()

    def update(self, desc: Descriptor, held: int) -> None:
        pass

    def done(self, desc: Descriptor, status: str) -> None:
        with self._lock:
            self._out.write(f"{status:8} {desc.digest} {human_size(desc.size):>9}\n")
            self._out.flush()

    def close(self) -> None:
        pass


def object_kind(media_type: str) -> str:
    """What an object is, for people: index, manifest, config, layer or blob."""
    from ocidist.descriptor import is_config, is_index, is_layer, is_manifest

    for kind, test in (
        ("index", is_index),
        ("manifest", is_manifest),
        ("config", is_config),
        ("layer", is_layer),
    ):
        if test(media_type):
            return kind
    return "blob"


class JSONProgress:
    """`--json`: one event object per line, for programs (docs/JSON.md).

    ``start`` when an object's transfer begins, ``progress`` with the bytes
    held so far at most every ``interval`` seconds per object (and never
    from the hot loop: update only records the count), then the object's
    outcome (``fetched``, ``exists``, ``pushed``, ``mounted``, ``applied``)."""

    def __init__(self, out: TextIO | None = None, interval: float = 0.5) -> None:
        self._out = out or sys.stdout
        self._lock = threading.Lock()
        self._interval = interval
        self._held: dict[str, tuple[Descriptor, int, int]] = {}  # digest -> desc, held, sent
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _emit(self, event: dict[str, object]) -> None:
        with self._lock:
            self._out.write(json.dumps(event, separators=(",", ":")) + "\n")
            self._out.flush()

    @staticmethod
    def _doc(event: str, desc: Descriptor) -> dict[str, object]:
        return {"event": event, "kind": object_kind(desc.media_type), **desc.to_json()}

    def start(self, desc: Descriptor, offset: int) -> None:
        self._emit(self._doc("start", desc) | {"offset": offset})
        with self._lock:
            self._held[str(desc.digest)] = (desc, offset, offset)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, daemon=True)
                self._thread.start()

    def update(self, desc: Descriptor, held: int) -> None:
        key = str(desc.digest)
        entry = self._held.get(key)
        if entry is not None:
            self._held[key] = (entry[0], held, entry[2])

    def done(self, desc: Descriptor, status: str) -> None:
        with self._lock:
            self._held.pop(str(desc.digest), None)
        self._emit(self._doc(status, desc))

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._tick()

    def _tick(self) -> None:
        with self._lock:
            moved = [(k, d, h) for k, (d, h, sent) in self._held.items() if h != sent]
            for key, desc, held in moved:
                self._held[key] = (desc, held, held)
        for _, desc, held in moved:
            self._emit(self._doc("progress", desc) | {"offset": held})

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


class _Row:
    __slots__ = ("desc", "held", "first", "since", "status")

    def __init__(self, desc: Descriptor, held: int = 0, first: int = 0) -> None:
        self.desc = desc
        self.held = held
        self.first = first
        self.since = time.monotonic()
        self.status = "fetching"


class TTYProgress:
    """A live table on a terminal: per blob bytes, rate and ETA."""

    def __init__(self, out: TextIO | None = None, interval: float = 0.15) -> None:
        self._out = out or sys.stderr
        self._rows: dict[str, _Row] = {}
        self._lock = threading.Lock()
        self._drawn = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(interval,), daemon=True)
        self._thread.start()

    def start(self, desc: Descriptor, offset: int) -> None:
        with self._lock:
            self._rows[str(desc.digest)] = _Row(desc, offset, offset)

    def update(self, desc: Descriptor, held: int) -> None:
        row = self._rows.get(str(desc.digest))
        if row is not None:
            row.held = held

    def done(self, desc: Descriptor, status: str) -> None:
        with self._lock:
            row = self._rows.setdefault(str(desc.digest), _Row(desc))
            row.status, row.held = status, desc.size

    def _line(self, row: _Row) -> str:
        d = row.desc
        if row.status != "fetching":
            return f"{short(d)}  {row.status:<8} {human_size(d.size):>9}"
        elapsed = max(time.monotonic() - row.since, 1e-6)
        rate = (row.held - row.first) / elapsed
        pct = 100 * row.held / d.size if d.size > 0 else 0.0
        eta = f"{(d.size - row.held) / rate:5.1f}s" if rate > 0 else "   --"
        return (
            f"{short(d)}  {pct:5.1f}%  {human_size(row.held):>9} / {human_size(d.size):<9} "
            f"{human_size(rate):>9}/s  eta {eta}"
        )

    def _draw(self) -> None:
        with self._lock:
            lines = [self._line(r) for r in self._rows.values()]
        buf = "\x1b[F" * self._drawn + "".join(f"\x1b[2K{ln}\n" for ln in lines)
        self._out.write(buf)
        self._out.flush()
        self._drawn = len(lines)

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self._draw()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._draw()


def for_terminal(*, quiet: bool, json_events: bool, force: bool = False) -> Progress:
    if json_events:
        return JSONProgress()
    if quiet:
        return NullProgress()
    if force or sys.stderr.isatty():
        return TTYProgress()
    return LineProgress()
