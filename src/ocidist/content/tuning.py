"""``Tuning``: the parallel-range settings (flags, ``hosts.toml``), apart
from ``content.parallel`` that uses them: every network command builds a
resolver that carries them, but only a big blob is fetched in ranges, so the
workers' module (~1 ms of import with ``rangefile``) is loaded only then."""

from __future__ import annotations

from ocidist.value import Value

MiB = 1 << 20


class Tuning(Value):
    __slots__ = ("threshold", "start", "max", "piece")
    threshold: int  # objects from this size on; 0 = never
    start: int  # ranges at first; 0 = from the round trip (1 near, max/2 far)
    max: int  # ranges at most
    piece: int  # bytes per request; 0 = from the size

    def __init__(
        self, threshold: int = 32 * MiB, start: int = 0, max: int = 16, piece: int = 0
    ) -> None:
        object.__setattr__(self, "threshold", threshold)
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "max", max)
        object.__setattr__(self, "piece", piece)
