"""The reliability harness itself (scripts/reliab): its checks must work on
the stores they judge, and a check that breaks must not end the run
(issue 21: a traceback in the first disk-full trial left no table)."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import pytest

from ocidist.descriptor import OCI_MANIFEST, Descriptor
from ocidist.digest import Digest
from ocidist.metadata import MetadataStore
from tests.harness.crashedwriter import names_left_in_wal
from tests.harness.tmpfs import can_mount, fill, tmpfs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from reliab.env import recorded
from reliab.outcome import Trial
from reliab.suite import Kind, run_kinds


@pytest.mark.skipif(not can_mount(), reason="mounting a tmpfs needs root")
def test_recorded_reads_a_full_disk_and_leaves_it_alone(tmp_path: Path) -> None:
    """What the harness reads of metadata.db on a disk full to the last
    block: the names (one only in the WAL too), and the store's files are
    not changed by the reading."""
    with tmpfs(tmp_path / "small", 256) as mnt:
        root = mnt / "root"
        with MetadataStore(str(root / "metadata.db")) as md:
            md.put_image("first", Descriptor(OCI_MANIFEST, Digest.from_bytes(b"1"), 1))
        names_left_in_wal(root / "metadata.db", ["second"])
        (root / "metadata.db-shm").unlink()
        fill(mnt)
        before = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}
        got = recorded(root)
        assert sorted(got) == ["first", "second"]
        assert got["second"] == str(Digest.from_bytes(b"second"))  # names_left_in_wal's
        assert {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()} == before


def test_a_failing_check_is_an_unclean_trial_and_the_run_goes_on() -> None:
    calls: list[int] = []

    def flaky(env: Any, rng: random.Random, i: int) -> Trial:
        calls.append(i)
        if i == 1:
            raise OSError(28, "No space left on device")
        return Trial("flaky", "completed")

    class Env:
        recovered = 0

        def recover(self) -> None:
            self.recovered += 1

    env = Env()
    logged: list[str] = []
    kinds = [Kind("flaky", "flaky", flaky, 1, 3, "a kind whose check breaks once")]
    (tally,) = run_kinds(
        env,  # type: ignore[arg-type]
        kinds,
        quick=False,
        trials=None,
        seed=0,
        log=logged.append,
    )
    assert calls == [0, 1, 2]
    assert (tally.trials, tally.completed, tally.unclean) == (3, 2, 1)
    assert not tally.ok
    (problem,) = tally.problems
    assert problem.startswith("harness check failed: OSError:"), problem
    assert "No space left on device" in problem and "test_reliab_harness.py" in problem
    assert env.recovered == 1
    assert any("unclean" in line for line in logged)
