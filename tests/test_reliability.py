"""The short form of `make reliability`, so every `make test` runs it.

A few trials of every fault kind against real processes (registry, fault
proxy, `dist` subprocesses); see scripts/reliability.py and
docs/RELIABILITY.md. Nothing may be corrupted or lost, and every trial must
either complete correctly or fail with one clean `dist:` line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.registry import REGISTRY_BIN

ROOT = Path(__file__).resolve().parent.parent


# Its trials have time bounds and load the machine: with the other bounded tests.
@pytest.mark.xdist_group("timing")
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_quick_reliability_suite(tmp_path: Path) -> None:
    if not Path(REGISTRY_BIN).exists():
        pytest.skip("docker-registry is not installed (run `make deps`)")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "reliability.py"), "--quick", "--json",
         "--workdir", str(tmp_path / "work")],
        capture_output=True,
        timeout=380,
        check=False,
    )  # fmt: skip
    assert proc.stdout, proc.stderr.decode()[-3000:]
    report = json.loads(proc.stdout)
    kinds = {k["kind"]: k for k in report["kinds"]}
    ran = [k for k in kinds.values() if k["trials"]]
    assert len(ran) >= 12, sorted(kinds)
    for k in kinds.values():
        problems = "; ".join(k["problems"])
        assert k["corrupted"] == 0, f"{k['kind']}: corrupted: {problems}"
        assert k["lost"] == 0, f"{k['kind']}: lost data: {problems}"
        assert k["completed"] + k["failed_cleanly"] == k["trials"], f"{k['kind']}: {problems}"
    assert report["ok"] and proc.returncode == 0, proc.stdout.decode()
