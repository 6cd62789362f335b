"""Loopback networking helpers shared by the harness servers."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago on ``host``.

    There is an unavoidable race between closing this probe socket and the
    real server binding the port; callers that spawn processes retry on
    "address already in use" rather than pretend the race does not exist.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def refused_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port that refuses connections for as long as the block runs.

    A port that was free a moment ago (``free_port``, or a stopped server's)
    is no dead address: under pytest-xdist another worker's server may bind
    it meanwhile and answer (seen: a "connection refused" test got a
    registry's 501). A socket bound without ``listen`` holds the port: the
    kernel answers every connection with RST and gives the port to no one
    else until it is closed.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        yield int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
