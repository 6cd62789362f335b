"""Ctrl-C during a pull ends it at once: `dist: interrupted`, exit 130, and
what arrived kept for the next run, however long the other transfers would
still take (a pull used to wait for every running transfer to finish)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.dist_cli import run_dist
from tests.harness import FaultProxy, Registry, large_image, push_image

STALL = 60.0  # far longer than the test may wait
# "Ends within 5 s + slack": with the other bounded tests on one xdist worker.
pytestmark = pytest.mark.xdist_group("timing")


@pytest.mark.parametrize(
    ("options", "as_json"),
    [
        pytest.param([], False, id="streamed-text"),
        # Every layer in ranges: the interrupt lands in the wait for range workers.
        pytest.param(["--range-threshold", "1MiB", "--max-ranges", "2"], True, id="ranged-json"),
    ],
)
def test_ctrl_c_ends_a_pull_at_once(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    registry: Registry,
    repo_name: str,
    options: list[str],
    as_json: bool,
) -> None:
    # Three layers, two transfers at a time: the main thread is busy with one.
    img = large_image(tmp_path / "img", total_compressed=12 << 20, layers=3)
    push_image(registry, repo_name, "big", img)
    layers = [b for b in img.blobs().values() if b.size > 1 << 20]
    # Every layer response stalls after 500 kB, for longer than the test waits.
    fault_proxy.stall(STALL, "/blobs/", after_bytes=500_000, times=None)
    root = tmp_path / "root"
    argv = ["--root", str(root), *(["--json"] if as_json else []), "pull", "--concurrency", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ocidist", *argv, *options, f"{fault_proxy.host}/{repo_name}:big"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:

        def stalled() -> int:
            sent = fault_proxy.bytes_sent
            return sum(sent[f"/v2/{repo_name}/blobs/{b.digest}"] >= 500_000 for b in layers)

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and stalled() < 2:
            time.sleep(0.1)
        assert stalled() == 2, "the pull never reached two stalled layers"
        time.sleep(0.5)  # well into the stall
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("Ctrl-C did not end the pull within 10 s (it waits for the transfers)")
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err.decode()
    assert took < 5 + 3, took  # 5 s, plus slack for a loaded machine
    text = err.decode()
    assert "Traceback" not in text, text
    if as_json:
        (event,) = [json.loads(line) for line in text.splitlines()]
        assert event == {
            "event": "error",
            "message": "interrupted",
            "error": "Interrupted",
            "exitCode": 130,
        }
    else:
        assert text.splitlines()[-1] == "dist: interrupted", text

    # What arrived is kept: the next run (no stall now) completes from there.
    fault_proxy.clear()
    done = run_dist("--root", str(root), "-q", "pull", f"{fault_proxy.host}/{repo_name}:big")
    assert done.returncode == 0, done.stderr


def test_ctrl_c_ends_a_fetch_of_many_objects_at_once(
    tmp_path: Path, fault_proxy: FaultProxy, registry: Registry, repo_name: str
) -> None:
    """`fetch-object --stdin`: Ctrl-C neither waits for the running fetches
    nor starts the queued ones (its pool's shutdown did both: minutes)."""
    img = large_image(tmp_path / "img", total_compressed=12 << 20, layers=3)
    push_image(registry, repo_name, "big", img)
    layers = [b for b in img.blobs().values() if b.size > 1 << 20]
    fault_proxy.stall(STALL, "/blobs/", after_bytes=500_000, times=None)
    lines = tmp_path / "objects"
    lines.write_text("".join(f"{b.digest}\n" for b in layers))
    with lines.open("rb") as stdin:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ocidist", "fetch-object", "--stdin", "--concurrency", "2",
             "-o", str(tmp_path / "out"), f"{fault_proxy.host}/{repo_name}:big"],
            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
    try:

        def stalled() -> int:
            sent = fault_proxy.bytes_sent
            return sum(sent[f"/v2/{repo_name}/blobs/{b.digest}"] >= 500_000 for b in layers)

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and stalled() < 2:
            time.sleep(0.1)
        assert stalled() == 2, "the fetch never reached two stalled objects"
        time.sleep(0.5)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("Ctrl-C did not end the fetch within 10 s (it waits for the transfers)")
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err.decode()
    assert took < 5 + 3, took
    assert err.decode().splitlines()[-1] == "dist: interrupted", err.decode()
    assert stalled() == 2  # the third object was never asked for


def test_ctrl_c_ends_an_upload_the_registry_stopped_reading(tmp_path: Path) -> None:
    """A big push (read and sent by two threads) whose registry stops reading
    the body, so the sending thread is blocked: Ctrl-C ends it at once, not
    when that send gives up (30 s)."""
    from tests.harness.hostile import HostileServer, Peer
    from tests.test_deadline_paths import _upload_then

    stalled = threading.Event()
    upload = _upload_then(stall_reading=True)

    def script(peer: Peer) -> None:
        real_hold = peer.hold

        def hold() -> None:
            stalled.set()
            real_hold()

        peer.hold = hold  # type: ignore[method-assign]
        upload(peer)  # type: ignore[operator]

    blob = tmp_path / "blob"
    blob.write_bytes(b"\x5a" * (80 << 20))  # pipelined (64 MiB on), past any socket buffer
    with HostileServer(script) as srv:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ocidist", "push-object", f"{srv.host}/a", str(blob)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            assert stalled.wait(60), "the push never reached its body"
            time.sleep(2)  # the send is blocked by now, the buffers full
            sent = time.monotonic()
            proc.send_signal(signal.SIGINT)
            try:
                _, err = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                pytest.fail("Ctrl-C did not end the push within 20 s (it waits for the send)")
            took = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 130, err.decode()
    assert took < 5 + 3, took
    assert err.decode().splitlines()[-1] == "dist: interrupted", err.decode()
