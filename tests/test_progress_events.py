"""Byte progress for programs (`--json`, the library's callbacks): what has
arrived is reported while a transfer is slow, for small blobs too, and the
events of one object keep their order.

A registry that sends a blob's first bytes and then pauses is the slow link
made exact: the fault proxy stalls every layer response after ``CUT`` bytes.
"""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

from ocidist import Client, ProgressEvent
from ocidist.descriptor import OCI_LAYER_GZIP, Descriptor
from ocidist.digest import Digest
from ocidist.progress import JSONProgress
from tests.dist_cli import run_dist
from tests.harness import FaultProxy, Registry, build_image, large_layer, push_image

CUT = 300_000
PAUSE = 2.0


def _image(tmp_path: Path, registry: Registry, repo: str) -> tuple[str, dict[str, int]]:
    """Two layers: one under 1 MiB (fetched into memory), one of 4 MiB
    (streamed into an ingest)."""
    small = large_layer(tmp_path, 900_000, seed=1, file_size=128 << 10)
    big = large_layer(tmp_path, 4 << 20, seed=2)
    assert small.blob.size < 1 << 20 < 3 << 20 < big.blob.size
    img = build_image([small, big])
    push_image(registry, repo, "v1", img)
    return "v1", {small.blob.digest: small.blob.size, big.blob.digest: big.blob.size}


def test_json_progress_reports_bytes_that_arrived_before_a_pause(
    tmp_path: Path, fault_proxy: FaultProxy, registry: Registry, repo_name: str
) -> None:
    tag, layers = _image(tmp_path, registry, repo_name)
    fault_proxy.stall(PAUSE, "/blobs/", after_bytes=CUT, times=None)
    ref = f"{fault_proxy.host}/{repo_name}:{tag}"
    proc = run_dist("--root", str(tmp_path / "root"), "--json", "pull", ref)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    for digest, size in layers.items():
        mine = [e for e in events if e.get("digest") == digest]
        offsets = [e["offset"] for e in mine if e["event"] == "progress"]
        # Shown while the registry pauses: not only after the next MiB (or,
        # for a small blob, only once it is whole).
        assert CUT in offsets, (size, offsets)
        assert [e["event"] for e in mine][-1] == "fetched"


class _SlowText(io.StringIO):
    """A reader that takes its time over each line (a pipe into a busy program)."""

    def write(self, s: str) -> int:
        time.sleep(0.002)
        return super().write(s)


def _desc(i: int) -> Descriptor:
    return Descriptor(OCI_LAYER_GZIP, Digest.parse("sha256:" + f"{i:064x}"), 10_000_000)


def test_no_progress_event_after_the_objects_outcome() -> None:
    out = _SlowText()
    prog = JSONProgress(out, interval=0.01)
    descs = [_desc(i) for i in range(40)]
    for d in descs:
        prog.start(d, 0)
    for round_ in range(1, 6):
        for d in descs:
            prog.update(d, round_ * 1000)
        time.sleep(0.02)  # a tick is writing its 40 lines slowly now
        if round_ == 5:
            for d in reversed(descs):  # ahead of the tick, which goes in order
                prog.done(d, "fetched")
    prog.close()
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    for d in descs:
        mine = [e["event"] for e in events if e["digest"] == str(d.digest)]
        assert mine[0] == "start" and mine[-1] == "fetched", mine
        assert mine.count("fetched") == 1


def test_client_callbacks_are_throttled_and_never_concurrent(
    tmp_path: Path, fault_proxy: FaultProxy, registry: Registry, repo_name: str
) -> None:
    tag, layers = _image(tmp_path, registry, repo_name)
    fault_proxy.stall(PAUSE, "/blobs/", after_bytes=CUT, times=None)
    events: list[ProgressEvent] = []
    inside = threading.Lock()
    overlapped = []

    def callback(e: ProgressEvent) -> None:
        if not inside.acquire(blocking=False):
            overlapped.append(e)
            return
        try:
            time.sleep(0.001)
            events.append(e)
        finally:
            inside.release()

    with Client(tmp_path / "root", progress=callback) as client:
        client.pull(f"{fault_proxy.host}/{repo_name}:{tag}")
    assert overlapped == []
    for digest in layers:
        mine = [e for e in events if str(e.descriptor.digest) == digest]
        offsets = [e.offset for e in mine if e.event == "progress"]
        assert CUT in offsets, offsets
        assert mine[-1].event == "fetched"
        # At most one progress event per 0.5 s: a few here, not one per chunk.
        assert len(offsets) <= 2 * (PAUSE + 2) / 0.5, offsets
