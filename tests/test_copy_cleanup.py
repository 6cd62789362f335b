"""What a copy or an import leaves behind when it is stopped: nothing.

A copy between transports stages the image in a temporary store next to
the destination; Ctrl-C and SIGTERM (systemd, docker stop, timeout(1)) both
remove it, and the destination is never half written. A compressed archive
is decompressed into a file that never has a name (O_TMPFILE), in
``$TMPDIR`` or else ``/var/tmp`` — where skopeo puts big temporary files,
since ``/tmp`` is often a small tmpfs — so even SIGKILL leaves nothing.
"""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import FaultProxy, Registry, large_image, push_image

STALL = 60.0  # far longer than the test waits


@pytest.mark.parametrize(
    ("sig", "code", "word"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
    ids=["SIGINT", "SIGTERM"],
)
@pytest.mark.parametrize("dest_kind", ["oci-archive", "docker-archive", "oci"])
def test_a_stopped_copy_leaves_nothing(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    registry: Registry,
    repo_name: str,
    sig: signal.Signals,
    code: int,
    word: str,
    dest_kind: str,
) -> None:
    img = large_image(tmp_path / "img", total_compressed=4 << 20, layers=2)
    push_image(registry, repo_name, "big", img)
    fault_proxy.stall(STALL, "/blobs/", after_bytes=500_000, times=None)
    out = tmp_path / "out"
    out.mkdir()
    dest = out / ("layout" if dest_kind == "oci" else "image.tar")
    argv = ["--root", str(tmp_path / "root"), "copy", "--platform", "linux/amd64",
            f"{fault_proxy.host}/{repo_name}:big", f"{dest_kind}:{dest}"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "ocidist", *argv], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
            n >= 500_000 for p, n in fault_proxy.bytes_sent.items() if "/blobs/" in p
        ):
            time.sleep(0.1)
        assert [p.name for p in out.iterdir() if p.name.startswith(".ocidist-copy-")]
        time.sleep(0.3)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code, err.decode()
    assert err.decode().splitlines()[-1] == f"dist: {word}"
    assert list(out.iterdir()) == []


def _fds_into(pid: int, directory: str) -> list[str]:
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(directory.rstrip("/") + "/"):
            found.append(target)
    return found


@pytest.mark.parametrize("tmpdir_set", [True, False], ids=["TMPDIR", "default"])
def test_a_compressed_archive_is_spooled_where_big_files_go_and_never_named(
    tmp_path: Path, tmpdir_set: bool
) -> None:
    env = dict(os.environ)
    if tmpdir_set:
        where = str(tmp_path / "tmp")
        os.mkdir(where)
        env["TMPDIR"] = where
    else:
        env.pop("TMPDIR", None)
        where = "/var/tmp"
    before = set(os.listdir(where))
    argv = ["--root", str(tmp_path / "root"), "import", "-", "--name", "x.io/a"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ocidist", *argv],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdin is not None
        # A gzip member of a tar's first megabytes; stdin stays open, so the
        # import waits in the middle of decompressing it.
        proc.stdin.write(gzip.compress(os.urandom(2 << 20)))
        proc.stdin.flush()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _fds_into(proc.pid, where):
            time.sleep(0.1)
        spooled = _fds_into(proc.pid, where)
        assert spooled, f"no file open in {where}"
        assert all(t.endswith("(deleted)") for t in spooled), spooled
        proc.kill()
        proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert set(os.listdir(where)) <= before
