"""Big blobs fetched as concurrent ranges: written at their offsets, verified,
resumed after a kill with only the missing ranges, a server that ignores
Range served by one stream, and a redirect target ranged directly.

The thresholds are lowered with the CLI's own flags so that an 8 MB layer
takes the ranged path (1 MiB pieces); `make bench` measures it at size."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ocidist.content.local import LocalStore
from ocidist.content.rangefile import gaps, merge, read_sidecar
from ocidist.digest import Digest
from tests.dist_cli import one_error_line, run_dist
from tests.harness import FaultProxy, Registry, Stall, large_image, push_image

MiB = 1 << 20
RANGED = ("--range-threshold", "1MiB", "--range-size", "1MiB")


def _image(tmp_path: Path, registry: Registry, repo: str) -> tuple[str, int]:
    """Push an image whose one layer is ~8 MB: its digest and size."""
    img = large_image(tmp_path / "img", total_compressed=8 * MiB, layers=1)
    push_image(registry, repo, "big", img)
    big = max(img.blobs().values(), key=lambda b: b.size)
    return big.digest, big.size


def _fetch(root: Path, ref: str, *args: str) -> None:
    out = run_dist("--root", str(root), *args, "-q", "fetch", ref)
    assert out.returncode == 0, out.stderr


def _ranges(log: list, digest: str) -> list[tuple[int, int]]:  # type: ignore[type-arg]
    """The byte ranges asked for ``digest``, as [start, end)."""
    out = []
    for e in log:
        if digest in e.path and e.method == "GET" and e.header("Range"):
            first, last = e.header("Range").removeprefix("bytes=").split("-")
            out.append((int(first), int(last) + 1))
    return out


def _committed(root: Path, digest: str) -> bool:
    return LocalStore(str(root)).exists(Digest.parse(digest))


def _no_overlap(spans: list[tuple[int, int]]) -> bool:
    return all(a[1] <= b[0] for a, b in itertools.pairwise(sorted(spans)))


def test_big_blob_is_fetched_in_ranges_that_cover_it_once(
    tmp_path: Path, fault_proxy: FaultProxy, registry: Registry, repo_name: str
) -> None:
    digest, size = _image(tmp_path, registry, repo_name)
    root = tmp_path / "root"
    _fetch(root, f"{fault_proxy.host}/{repo_name}:big", *RANGED)
    assert _committed(root, digest)
    spans = _ranges(fault_proxy.log, digest)
    assert len(spans) >= 8  # 1 MiB pieces, several at once
    assert _no_overlap(spans)
    assert merge(spans) == [(0, size)]
    # Nothing of the ranged ingest is left behind.
    assert not list((root / "ingest").glob("*/ranges"))


def test_server_ignoring_range_gets_one_stream(
    tmp_path: Path, fault_proxy: FaultProxy, registry: Registry, repo_name: str
) -> None:
    digest, size = _image(tmp_path, registry, repo_name)
    fault_proxy.ignore_range(f"/blobs/{digest}")
    root = tmp_path / "root"
    _fetch(root, f"{fault_proxy.host}/{repo_name}:big", *RANGED)
    assert _committed(root, digest)
    # Each worker's first answer was the whole object; then one plain GET.
    gets = [e for e in fault_proxy.log if digest in e.path and e.method == "GET"]
    assert gets[-1].header("Range") is None
    assert fault_proxy.bytes_sent[f"/v2/{repo_name}/blobs/{digest}"] < 2 * size + 4 * MiB


def test_killed_ranged_fetch_resumes_with_only_the_missing_ranges(
    tmp_path: Path, fault_proxy: FaultProxy, registry: Registry, repo_name: str
) -> None:
    digest, size = _image(tmp_path, registry, repo_name)
    root = tmp_path / "root"
    ref = f"{fault_proxy.host}/{repo_name}:big"
    # Three pieces come through; every later request hangs: kill it there.
    fault_proxy.add(Stall(120), method="GET", path=f"/blobs/{digest}", times=None, skip=3)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ocidist", "--root", str(root), *RANGED, "--max-ranges", "2",
         "-q", "fetch", ref],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        done: list[tuple[int, int]] = []
        while time.monotonic() < deadline:
            sidecars = list((root / "ingest").glob("*/ranges"))
            if sidecars:
                done = read_sidecar(str(sidecars[0].parent), size) or []
                if sum(e - s for s, e in done) >= 3 * MiB:
                    break
            time.sleep(0.1)
        assert sum(e - s for s, e in done) >= 3 * MiB, "three pieces never recorded"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not _committed(root, digest)
    # What the killed process left on disk says which ranges are complete.
    (sidecar,) = (root / "ingest").glob("*/ranges")
    done = read_sidecar(str(sidecar.parent), size) or []
    assert done
    fault_proxy.clear()

    _fetch(root, ref, *RANGED)
    assert _committed(root, digest)
    asked = _ranges(fault_proxy.log, digest)
    # Exactly the gaps were fetched: nothing that was complete, all that was not.
    assert _no_overlap(asked + done)
    assert merge(asked) == gaps(done, size)


def test_redirected_blob_is_ranged_at_the_target(
    tmp_path: Path, fault_proxy: FaultProxy, registry: Registry, repo_name: str
) -> None:
    digest, size = _image(tmp_path, registry, repo_name)
    fault_proxy.redirect(f"/blobs/{digest}")
    root = tmp_path / "root"
    _fetch(root, f"{fault_proxy.host}/{repo_name}:big", *RANGED)
    assert _committed(root, digest)
    at_target = _ranges(fault_proxy.redirect_log, digest)
    assert merge(at_target) == [(0, size)]
    # Only the first wave asked the registry (4 workers start together);
    # every later range went straight to the redirect's target.
    via_registry = _ranges(fault_proxy.log, digest)
    assert 1 <= len(via_registry) <= 4 < len(at_target)
    assert all(e.header("Authorization") is None for e in fault_proxy.redirect_log)


def test_one_range_is_one_stream(
    tmp_path: Path, fault_proxy: FaultProxy, registry: Registry, repo_name: str
) -> None:
    digest, _ = _image(tmp_path, registry, repo_name)
    root = tmp_path / "root"
    args = ("--range-threshold", "1MiB", "--max-ranges", "1")
    _fetch(root, f"{fault_proxy.host}/{repo_name}:big", *args)
    assert _ranges(fault_proxy.log, digest) == []


@pytest.mark.parametrize("text", ["0", "12x", "-1MiB"])
def test_bad_range_size_is_one_clear_line(text: str, tmp_path: Path) -> None:
    out = run_dist("--root", str(tmp_path), f"--range-size={text}", "images", "ls")
    if text == "0":
        assert out.returncode == 0, out.stderr  # 0: from the blob's size
        return
    assert out.returncode != 0
    assert "invalid size" in out.stderr.decode()
    assert "Traceback" not in out.stderr.decode()


def test_sidecar_never_claims_more_than_was_written(tmp_path: Path) -> None:
    """The ranged writer records its ranges before writing any out of order,
    and a reopened writer resumes from exactly the recorded ranges."""
    store = LocalStore(str(tmp_path / "root"))
    data = bytes(range(256)) * (12 * 4096)  # 12 MiB
    import hashlib

    dgst = Digest.parse("sha256:" + hashlib.sha256(data).hexdigest())
    w = store.writer("k", total=len(data), expected=dgst)
    rf = w.ranged()
    sidecar = tmp_path / "root" / "ingest"
    (path,) = sidecar.glob("*/ranges")
    assert json.loads(path.read_text()) == {"total": len(data), "done": []}
    rf.write_at(4 * MiB, memoryview(data)[4 * MiB : 6 * MiB])
    rf.complete(4 * MiB, 6 * MiB)
    rf.write_at(0, memoryview(data)[: 1 * MiB])
    rf.complete(0, 1 * MiB)
    rf.write_at(8 * MiB, memoryview(data)[8 * MiB : 9 * MiB])  # never completed
    rf.checkpoint()
    rf.close()
    w.close()
    assert store.status("k").offset == 1 * MiB  # the contiguous prefix only
    w = store.writer("k", total=len(data), expected=dgst)
    rf = w.ranged()
    assert rf.missing() == [(1 * MiB, 4 * MiB), (6 * MiB, len(data))]
    for s, e in rf.missing():
        rf.write_at(s, memoryview(data)[s:e])
        rf.complete(s, e)
    w.adopt(rf)
    w.commit(len(data), dgst)
    assert store.exists(dgst)


def test_hosts_toml_keys_tune_ranges_and_flags_win(
    tmp_path: Path, fault_proxy: FaultProxy, registry: Registry, repo_name: str
) -> None:
    digest, size = _image(tmp_path, registry, repo_name)
    hosts = tmp_path / "certs.d" / fault_proxy.host
    hosts.mkdir(parents=True)
    (hosts / "hosts.toml").write_text(
        "max_ranges = 2\nrange_threshold = 1048576\nrange_size = 1048576\n"
    )
    ref = f"{fault_proxy.host}/{repo_name}:big"
    _fetch(tmp_path / "a", ref, "--hosts-dir", str(tmp_path / "certs.d"))
    assert merge(_ranges(fault_proxy.log, digest)) == [(0, size)]
    fault_proxy.clear()
    _fetch(tmp_path / "b", ref, "--hosts-dir", str(tmp_path / "certs.d"), "--max-ranges", "1")
    assert _ranges(fault_proxy.log, digest) == []
    (hosts / "hosts.toml").write_text("max_ranges = -2\n")
    out = run_dist("--root", str(tmp_path / "c"), "--hosts-dir", str(tmp_path / "certs.d"),
                   "fetch", ref)  # fmt: skip
    assert out.returncode != 0
    assert "'max_ranges' must be a whole number" in one_error_line(out)


def test_broken_range_refetches_only_its_rest_and_gives_up_in_one_line(
    tmp_path: Path, fault_proxy: FaultProxy, registry: Registry, repo_name: str
) -> None:
    digest, size = _image(tmp_path, registry, repo_name)
    ref = f"{fault_proxy.host}/{repo_name}:big"
    fault_proxy.drop(f"/blobs/{digest}", after_bytes=300_000, times=2)
    _fetch(tmp_path / "a", ref, *RANGED)
    assert _committed(tmp_path / "a", digest)
    # What arrived before each break was kept: never a range fetched twice.
    assert fault_proxy.bytes_sent[f"/v2/{repo_name}/blobs/{digest}"] < size + 2 * MiB
    fault_proxy.clear()
    fault_proxy.drop(f"/blobs/{digest}", after_bytes=1000, times=None)
    out = run_dist("--root", str(tmp_path / "b"), *RANGED, "fetch", ref)
    assert out.returncode == 1
    assert "gave up after" in one_error_line(out)
