"""Our own store conformance suite (ocidist.content.testsuite) on a daemon's
store through our client: the same contract, errors and times, whether a
command opens the store or works through `dist --address`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocidist.api.client import Daemon
from ocidist.content import Store
from ocidist.content.testsuite import StoreSuite
from tests.test_serve import Served, sockdir, start_serve

__all__ = ["sockdir"]


@pytest.fixture
def daemons(tmp_path: Path, sockdir: str) -> Iterator[list[tuple[Served, Daemon]]]:
    started: list[tuple[Served, Daemon]] = []
    yield started
    for served, daemon in started:
        daemon.close()
        assert served.stop() == 0


@pytest.mark.parametrize("check", StoreSuite.CHECKS)
def test_conformance_through_the_daemon(
    tmp_path: Path, sockdir: str, daemons: list[tuple[Served, Daemon]], check: str
) -> None:
    def fresh() -> Store:
        # A fresh, empty store each time the suite asks: a daemon of its own.
        n = len(daemons)
        served = start_serve(tmp_path / f"root{n}", os.path.join(sockdir, f"d{n}.sock"))
        daemon = Daemon(served.sock)
        daemons.append((served, daemon))
        return daemon.store()

    getattr(StoreSuite(fresh), check)()
