"""``Tuning``: the parallel-range settings (flags, ``hosts.toml``), apart
from ``content.parallel`` that uses them: every network command builds a
resolver that carries them, but only a big blob is fetched in ranges, so the
workers' module (~1 ms of import with ``rangefile``) is loaded only then."""

from __future__ import annotations

from typing import NamedTuple

MiB = 1 << 20


class Tuning(NamedTuple):
    threshold: int = 32 * MiB  # objects from this size on; 0 = never
    start: int = 0  # ranges at first; 0 = from the round trip (1 near, max/2 far)
    max: int = 16  # ranges at most
    piece: int = 0  # bytes per request; 0 = from the size
