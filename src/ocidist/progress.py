"""Transfer progress: a live display on a TTY, quiet lines otherwise, JSON events.

Kept dependency-free and cheap: the hot loop only adds to a counter; a
display thread redraws a few times a second.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Protocol, TextIO

from ocidist.descriptor import Descriptor, object_kind


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
            kind = object_kind(desc.media_type)
            self._out.write(f"{status:8} {kind:8} {desc.digest} {human_size(desc.size):>9}\n")
            self._out.flush()

    def close(self) -> None:
        pass


Sink = Callable[[str, Descriptor, str, int], None]
"""Where ``EventProgress`` sends each event: ``(event, descriptor, kind, offset)``."""


class _Moving:
    __slots__ = ("desc", "kind", "held", "sent")

    def __init__(self, desc: Descriptor, kind: str, offset: int) -> None:
        self.desc, self.kind, self.held, self.sent = desc, kind, offset, offset


class EventProgress:
    """Transfer progress as events, for programs (``--json``, the library's
    callbacks; docs/JSON.md).

    ``start`` when an object's transfer begins (``offset``: bytes already
    held), ``progress`` with the bytes held so far at most every
    ``interval`` seconds per object, only when they moved, then the object's
    outcome (``fetched``, ``exists``, ``pushed``, ``mounted``, ``applied``;
    ``offset`` its size). The hot loop's ``update`` only records the count;
    a thread of its own sends ``progress``, so bytes that arrived before a
    pause are reported during it. One lock around every call of ``sink``:
    it is never called from two threads at once, and no ``progress`` of an
    object follows its outcome."""

    def __init__(self, sink: Sink, interval: float = 0.5) -> None:
        self._sink = sink
        self._lock = threading.Lock()
        self._interval = interval
        self._moving: dict[str, _Moving] = {}  # by digest: started, no outcome yet
        self._stop = threading.Event()
        # Started now, not with the first object: a thread's start waits for
        # it to run (~0.7 ms), which came right after a far registry's first
        # answer, before the next request (unpack of a small image).
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        self._thread.start()

    def start(self, desc: Descriptor, offset: int) -> None:
        kind = object_kind(desc.media_type)
        with self._lock:
            self._sink("start", desc, kind, offset)
            self._moving[str(desc.digest)] = _Moving(desc, kind, offset)

    def update(self, desc: Descriptor, held: int) -> None:
        m = self._moving.get(str(desc.digest))
        if m is not None:
            m.held = held  # one store, no lock: the hot loop's whole cost

    def done(self, desc: Descriptor, status: str) -> None:
        with self._lock:
            self._moving.pop(str(desc.digest), None)
            self._sink(status, desc, object_kind(desc.media_type), desc.size)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                for m in self._moving.values():
                    held = m.held
                    if held != m.sent:
                        m.sent = held
                        self._sink("progress", m.desc, m.kind, held)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class JSONProgress(EventProgress):
    """``--json``: each event one compact JSON object per line (docs/JSON.md)."""

    def __init__(self, out: TextIO | None = None, interval: float = 0.5) -> None:
        self._out = out or sys.stdout
        super().__init__(self._write, interval)

    def _write(self, event: str, desc: Descriptor, kind: str, offset: int) -> None:
        doc: dict[str, object] = {"event": event, "kind": kind, **desc.to_json()}
        if event in ("start", "progress"):
            doc["offset"] = offset
        self._out.write(json.dumps(doc, separators=(",", ":")) + "\n")
        self._out.flush()


class _Row:
    __slots__ = ("desc", "kind", "held", "first", "since", "status", "order")

    def __init__(self, desc: Descriptor, order: int, held: int = 0, first: int = 0) -> None:
        self.desc = desc
        self.kind = object_kind(desc.media_type)
        self.held = held
        self.first = first  # held when the transfer started (a resume's offset)
        self.since = time.monotonic()
        self.status = "active"
        self.order = order

    def rate(self, now: float) -> float:
        return (self.held - self.first) / max(now - self.since, 1e-6)


def _fit(parts: list[tuple[int, str]], width: int) -> str:
    """Join ``(priority, text)`` parts with spaces, dropping the parts of
    lowest priority (highest number) until the line fits ``width``; then cut."""
    kept = list(parts)
    while len(kept) > 1 and len("  ".join(t for _, t in kept)) > width:
        worst = max(range(len(kept)), key=lambda i: (kept[i][0], i))
        del kept[worst]
    line = "  ".join(t for _, t in kept)
    return line[:width]


def _plural(kind: str) -> str:
    return "indexes" if kind == "index" else kind + "s"


def _eta(seconds: float) -> str:
    if seconds < 0 or seconds != seconds or seconds > 99 * 3600:
        return "--"
    s = int(seconds + 0.5)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class TTYProgress:
    """A live display on a terminal that fits it, whatever its size.

    One row per object (its kind, digest, percent, bytes, rate, ETA) and a
    total line (objects and bytes done of those known, overall rate, ETA).
    Rows never wrap (each is cut to the width) and the block is never taller
    than the terminal less one line, so redrawing it in place (cursor up, erase
    line) never pushes a copy into the scrollback. With fewer rows than
    objects, finished objects collapse into one summary line and the busiest
    transfers are shown. The size is read at every redraw (resizes are fine).
    """

    def __init__(
        self,
        out: TextIO | None = None,
        interval: float = 0.15,
        size: tuple[int, int] | None = None,
    ) -> None:
        self._out = out or sys.stderr
        self._size = size  # fixed (columns, lines), for tests; else the terminal's
        self._rows: dict[str, _Row] = {}
        self._lock = threading.Lock()
        self._drawn = 0
        self._started = time.monotonic()
        self._samples: list[tuple[float, int]] = []  # (time, bytes moved) for the rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(interval,), daemon=True)
        self._thread.start()

    # Progress protocol -------------------------------------------------

    def start(self, desc: Descriptor, offset: int) -> None:
        with self._lock:
            key = str(desc.digest)
            row = self._rows.get(key)
            if row is None:
                self._rows[key] = _Row(desc, len(self._rows), offset, offset)
            else:  # a retry resumes: the rate counts from here
                row.held = row.first = offset
                row.since, row.status = time.monotonic(), "active"

    def update(self, desc: Descriptor, held: int) -> None:
        row = self._rows.get(str(desc.digest))
        if row is not None:
            row.held = held

    def done(self, desc: Descriptor, status: str) -> None:
        with self._lock:
            row = self._rows.get(str(desc.digest))
            if row is None:
                row = self._rows[str(desc.digest)] = _Row(desc, len(self._rows), desc.size)
                row.first = desc.size  # nothing moved
            row.status, row.held = status, desc.size

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._draw()

    # Rendering -----------------------------------------------------------

    def _terminal(self) -> tuple[int, int]:
        if self._size is not None:
            return self._size
        try:
            size = os.get_terminal_size(self._out.fileno())
            return size.columns or 80, size.lines or 24
        except (AttributeError, ValueError, OSError):
            return 80, 24

    def _row_line(self, row: _Row, now: float, width: int) -> str:
        # Lower numbers are kept longest: a narrow terminal loses the byte
        # counts first, then rate and ETA; kind, digest and percent stay.
        d = row.desc
        name = f"{row.kind:<8}"
        dig = d.digest.encoded[:12]
        if row.status != "active":
            return _fit(
                [(0, name), (1, dig), (0, f"{row.status:<8}"), (2, human_size(d.size))], width
            )
        rate = row.rate(now)
        pct = 100 * row.held / d.size if d.size > 0 else 0.0
        eta = _eta((d.size - row.held) / rate) if rate > 0 else "--"
        return _fit(
            [
                (0, name),
                (1, dig),
                (0, f"{pct:5.1f}%"),
                (4, f"{human_size(row.held):>9} / {human_size(d.size):<9}"),
                (2, f"{human_size(rate):>9}/s"),
                (3, f"eta {eta}"),
            ],
            width,
        )

    def _total_line(self, rows: list[_Row], now: float, width: int) -> str:
        done = sum(1 for r in rows if r.status != "active")
        held = sum(min(r.held, r.desc.size) for r in rows)
        total = sum(r.desc.size for r in rows)
        moved = sum(r.held - r.first for r in rows)
        # The rate over the last 3 s, so it follows the current speed.
        self._samples.append((now, moved))
        while len(self._samples) > 2 and now - self._samples[0][0] > 3.0:
            self._samples.pop(0)
        t0, m0 = self._samples[0]
        rate = (moved - m0) / (now - t0) if now > t0 else 0.0
        eta = _eta((total - held) / rate) if rate > 0 and done < len(rows) else "--"
        return _fit(
            [
                (0, "total"),
                (1, f"{done}/{len(rows)} objects"),
                (0, f"{human_size(held)} / {human_size(total)}"),
                (2, f"{human_size(rate)}/s"),
                (0 if done < len(rows) else 3, f"eta {eta}"),
                (3, f"{now - self._started:.1f}s"),
            ],
            width,
        )

    def _summary_line(self, hidden: list[_Row], width: int) -> str:
        kinds: dict[str, int] = {}
        for r in hidden:
            if r.status != "active":
                kinds[r.kind] = kinds.get(r.kind, 0) + 1
        active = sum(1 for r in hidden if r.status == "active")
        bits = [f"{n} {_plural(k) if n > 1 else k}" for k, n in kinds.items()]
        text = ("done: " + ", ".join(bits)) if bits else "done: none"
        if active:
            text += f"; {active} more in progress"
        return text[:width]

    def lines(self) -> list[str]:
        """What the display shows now (also what tests look at)."""
        columns, height = self._terminal()
        width = max(columns - 1, 10)  # never the last column: no auto-wrap
        budget = max(height - 1, 1)  # one line for the cursor below the block
        now = time.monotonic()
        with self._lock:
            rows = sorted(self._rows.values(), key=lambda r: r.order)
        if not rows:
            return []
        total = self._total_line(rows, now, width)
        if len(rows) + 1 <= budget:
            return [self._row_line(r, now, width) for r in rows] + [total]
        # Too many: a summary of what is not shown, the busiest transfers.
        room = budget - 2  # total line + summary line
        if room < 1:
            return [total]
        active = [r for r in rows if r.status == "active"]
        busiest = sorted(active, key=lambda r: r.rate(now), reverse=True)[:room]
        shown = sorted(busiest, key=lambda r: r.order)
        hidden = [r for r in rows if r not in shown]
        return (
            [self._summary_line(hidden, width)]
            + [self._row_line(r, now, width) for r in shown]
            + [total]
        )

    def _draw(self) -> None:
        lines = self.lines()
        # Back to the top of what was drawn, rewrite each line, erase what is
        # left of a taller previous block.
        buf = ["\x1b[F" * self._drawn if self._drawn else ""]
        buf += [f"\x1b[2K{ln}\n" for ln in lines]
        extra = self._drawn - len(lines)
        if extra > 0:
            buf.append("\x1b[2K\n" * extra + "\x1b[F" * extra)
        self._out.write("".join(buf))
        self._out.flush()
        self._drawn = len(lines)

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self._draw()


def for_terminal(*, quiet: bool, json_events: bool, force: bool = False) -> Progress:
    if json_events:
        return JSONProgress()
    if quiet:
        return NullProgress()
    if force or sys.stderr.isatty():
        return TTYProgress()
    return LineProgress()
