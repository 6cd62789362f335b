"""A 200 MB artifact: pushed and pulled verified, each resumed after a dropped
connection (fault proxy), with the `dist` process's peak RSS measured — it
must not grow with the file (the bytes stream through fixed buffers)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.dist_cli import run_dist_peak
from tests.harness import Drop, FaultProxy, Registry

MiB = 1 << 20


def write_file(path: Path, size: int) -> str:
    """``size`` bytes of incompressible data, quickly; returns its digest."""
    h = hashlib.sha256()
    block = os.urandom(8 * MiB)
    with path.open("wb") as f:
        for i in range(size // len(block)):
            # Each block differs (a counter up front), so no two chunks are equal.
            piece = i.to_bytes(8, "big") + block[8:]
            f.write(piece)
            h.update(piece)
    return "sha256:" + h.hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(8 * MiB):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def run_measured(root: Path, *args: str, cwd: Path) -> tuple[int, str, int]:
    """Run dist; (exit code, stderr, the child's own peak RSS in bytes)."""
    return run_dist_peak("--root", str(root), *args, cwd=cwd)


def prepare(tmp_path: Path, size: int, name: str) -> tuple[Path, str]:
    work = tmp_path / name
    work.mkdir()
    return work, write_file(work / "data.bin", size)


def push_and_pull(work: Path, host: str, repo: str) -> tuple[int, int, Path]:
    ref = f"{host}/{repo}:{work.name}"
    root = work / "root"
    code, err, push_rss = run_measured(
        root, "artifact", "push", "--chunk-size", "8MiB", ref, "data.bin", cwd=work
    )
    assert code == 0, err
    code, err, pull_rss = run_measured(root, "artifact", "pull", ref, "out", cwd=work)
    assert code == 0, err
    return push_rss, pull_rss, work / "out" / "data.bin"


@pytest.mark.slow
@pytest.mark.xdist_group("timing")  # a peak-RSS bound
def test_200mb_artifact_resumes_both_ways_in_flat_memory(
    tmp_path: Path, registry: Registry, fault_proxy: FaultProxy, repo_name: str
) -> None:
    size = 200 * MiB
    work, dgst = prepare(tmp_path, size, "big")
    # Push: one chunk upload (the 11th PATCH) is cut off before the registry
    # answers; the writer asks the registry where it stands and goes on from there.
    fault_proxy.add(
        Drop(before_headers=True), method="PATCH", path="/blobs/uploads/", skip=10, times=1
    )
    # Pull: the body of the big blob breaks off after 100 MiB; the fetcher
    # resumes with Range from there.
    fault_proxy.drop(path=f"/blobs/{dgst}", after_bytes=100 * MiB)
    push_rss, pull_rss, out = push_and_pull(work, fault_proxy.host, repo_name)
    assert file_digest(out) == dgst
    patches = [e for e in fault_proxy.log if e.method == "PATCH"]
    dropped = [e for e in patches if any(isinstance(a, Drop) for a in e.actions)]
    assert len(dropped) == 1
    # The lost chunk is sent again, from where it started (not from 0), and
    # the upload goes on after it.
    after = patches[patches.index(dropped[0]) + 1]
    assert after.header("Content-Range") == dropped[0].header("Content-Range") != f"0-{8 * MiB - 1}"
    sent = sum(int(e.header("Content-Length") or 0) for e in patches)
    assert size <= sent <= size + 8 * MiB, sent
    ranges = [e.header("Range") for e in fault_proxy.log if e.method == "GET" and dgst in e.path]
    assert any(r and r.startswith(f"bytes={100 * MiB}-") for r in ranges), ranges
    # The same with a file ten times smaller, straight to the registry: peak
    # RSS must not follow the file's size.
    small, _ = prepare(tmp_path, 20 * MiB, "small")
    small_push, small_pull, _ = push_and_pull(small, registry.host, repo_name)
    print(f"peak RSS push {push_rss / MiB:.0f}/{small_push / MiB:.0f} MiB, "
          f"pull {pull_rss / MiB:.0f}/{small_pull / MiB:.0f} MiB (200 MB/20 MB)")  # fmt: skip
    assert push_rss < 160 * MiB and pull_rss < 160 * MiB
    assert push_rss - small_push < 32 * MiB and pull_rss - small_pull < 32 * MiB
