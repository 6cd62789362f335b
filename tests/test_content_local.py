"""LocalStore: the conformance suite, plus what only a filesystem store has
(real cross-process locking, crash safety, permissions, a full disk)."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocidist.content.local import LocalStore
from ocidist.content.testsuite import StoreSuite
from ocidist.digest import Digest
from ocidist.errors import AlreadyExists, DigestMismatch, NoSpace

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.mark.parametrize("check", StoreSuite.CHECKS)
def test_conformance(tmp_path: Path, check: str) -> None:
    counter = iter(range(1000))
    suite = StoreSuite(lambda: LocalStore(str(tmp_path / f"store{next(counter)}")))
    getattr(suite, check)()


def _data(n: int) -> bytes:
    return bytes((i * 7 + 3) % 256 for i in range(n))


# A helper process: ingest DATA (from a file) under KEY, optionally slowly,
# and report what happened on stdout.
HELPER = textwrap.dedent(
    """
    import sys, time
    from ocidist.content.local import LocalStore
    from ocidist.digest import Digest
    from ocidist.errors import DistError
    root, key, path, chunk, delay, wait, mark = sys.argv[1:8]
    data = open(path, "rb").read()
    dgst = Digest.from_bytes(data)
    store = LocalStore(root)
    try:
        w = store.writer(key, total=len(data), expected=dgst, wait=wait == "1")
    except DistError as e:
        print(type(e).__name__, flush=True)
        sys.exit(0)
    open(mark, "w").close()
    off = w.status().offset
    view = memoryview(data)
    while off < len(data):
        n = w.write(view[off : off + int(chunk)])
        off += n
        time.sleep(float(delay))
    try:
        w.commit(len(data), dgst)
        print("committed", flush=True)
    except DistError as e:
        print(type(e).__name__, flush=True)
    """
)


def _helper(
    root: Path, key: str, data_file: Path, *, chunk: int, delay: float, wait: bool, mark: Path
) -> subprocess.Popen[str]:
    args = [str(root), key, str(data_file), str(chunk), str(delay), "1" if wait else "0", str(mark)]
    return subprocess.Popen(
        [sys.executable, "-c", HELPER, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
    )


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"helper exited early: {proc.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError("helper never started writing")
        time.sleep(0.01)


@pytest.fixture
def blobfile(tmp_path: Path) -> Iterator[tuple[Path, bytes]]:
    data = _data(4 << 20)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    yield path, data


def test_two_processes_same_key(tmp_path: Path, blobfile: tuple[Path, bytes]) -> None:
    path, data = blobfile
    root = tmp_path / "root"
    a = _helper(root, "k", path, chunk=256 << 10, delay=0.05, wait=True, mark=tmp_path / "a")
    _wait_for(tmp_path / "a", a)
    started = time.monotonic()
    b = _helper(root, "k", path, chunk=1 << 20, delay=0, wait=True, mark=tmp_path / "b")
    out_b, err_b = b.communicate(timeout=60)
    waited = time.monotonic() - started
    out_a, err_a = a.communicate(timeout=60)
    assert out_a.strip() == "committed", err_a
    # B blocked until A committed, then found the content there.
    assert out_b.strip() == "AlreadyExists", err_b
    assert not (tmp_path / "b").exists()
    assert waited > 0.3
    store = LocalStore(str(root))
    dgst = Digest.from_bytes(data)
    assert store.verify(dgst)
    assert store.list_statuses() == []


def test_second_process_nowait_fails(tmp_path: Path, blobfile: tuple[Path, bytes]) -> None:
    path, _ = blobfile
    root = tmp_path / "root"
    a = _helper(root, "k", path, chunk=128 << 10, delay=0.05, wait=True, mark=tmp_path / "a")
    _wait_for(tmp_path / "a", a)
    b = _helper(root, "k", path, chunk=1 << 20, delay=0, wait=False, mark=tmp_path / "b")
    out_b, _ = b.communicate(timeout=60)
    assert out_b.strip() == "FailedPrecondition"
    assert a.communicate(timeout=60)[0].strip() == "committed"


def test_killed_writer_leaves_resumable_ingest(
    tmp_path: Path, blobfile: tuple[Path, bytes]
) -> None:
    path, data = blobfile
    root = tmp_path / "root"
    # Slow enough that SIGKILL lands mid-blob.
    a = _helper(root, "k", path, chunk=64 << 10, delay=0.02, wait=True, mark=tmp_path / "a")
    _wait_for(tmp_path / "a", a)
    time.sleep(0.3)
    a.send_signal(signal.SIGKILL)
    a.wait(10)
    store = LocalStore(str(root))
    dgst = Digest.from_bytes(data)
    assert not store.exists(dgst)
    assert list(store.walk()) == []
    held = store.status("k").offset
    assert 0 < held < len(data)
    # The dead process's lock died with it; a new writer resumes at once.
    w = store.writer("k", expected=dgst, wait=False)
    assert w.status().offset == held
    w.write(data[held:])
    w.commit(len(data), dgst)
    assert store.verify(dgst)


def test_killed_writer_then_helper_resumes(tmp_path: Path, blobfile: tuple[Path, bytes]) -> None:
    path, data = blobfile
    root = tmp_path / "root"
    a = _helper(root, "k", path, chunk=64 << 10, delay=0.02, wait=True, mark=tmp_path / "a")
    _wait_for(tmp_path / "a", a)
    time.sleep(0.2)
    a.kill()
    a.wait(10)
    b = _helper(root, "k", path, chunk=1 << 20, delay=0, wait=False, mark=tmp_path / "b")
    assert b.communicate(timeout=60)[0].strip() == "committed"
    assert LocalStore(str(root)).verify(Digest.from_bytes(data))


def test_blobs_are_read_only(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path))
    w = store.writer("ro")
    w.write(b"frozen")
    dgst = Digest.from_bytes(b"frozen")
    w.commit(6, dgst)
    mode = stat.S_IMODE(os.stat(store.blob_path(dgst)).st_mode)
    assert mode == 0o444


def test_wrong_digest_publishes_nothing_and_keeps_the_ingest(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path))
    w = store.writer("bad")
    w.write(b"abc")
    with pytest.raises(DigestMismatch, match="digest mismatch"):
        w.commit(3, Digest.from_bytes(b"abd"))
    w.close()
    assert not (tmp_path / "blobs" / "sha256").exists() or not any(
        (tmp_path / "blobs" / "sha256").iterdir()
    )
    # A local writer stays open after a wrong commit: it may truncate and go on.
    w = store.writer("bad")
    with pytest.raises(DigestMismatch, match="size mismatch"):
        w.commit(4, Digest.from_bytes(b"abc"))
    w.truncate(0)
    w.write(b"abcd")
    w.commit(4, Digest.from_bytes(b"abcd"))
    assert store.exists(Digest.from_bytes(b"abcd"))
    w = store.writer("bad")
    w.write(b"abc")
    with pytest.raises(DigestMismatch, match="digest mismatch"):
        w.commit(3, Digest.from_bytes(b"abd"))
    w.close()
    # containerd's rule: the bytes stay under the key (resumable, abortable).
    assert store.status("bad").offset == 3
    store.abort("bad")
    assert [p for p in (tmp_path / "ingest").iterdir()] == []


def test_verify_detects_corruption(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path))
    dgst = Digest.from_bytes(b"original")
    w = store.writer("v")
    w.write(b"original")
    w.commit(8, dgst)
    p = store.blob_path(dgst)
    os.chmod(p, 0o644)
    Path(p).write_bytes(b"tampered")
    assert store.verify(dgst) is False


def test_resume_with_different_expected_restarts(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path))
    w = store.writer("k", expected=Digest.from_bytes(b"one"))
    w.write(b"on")
    w.close()
    w = store.writer("k", expected=Digest.from_bytes(b"two"))
    assert w.status().offset == 0
    w.write(b"two")
    w.commit(3, Digest.from_bytes(b"two"))


def test_commit_after_other_key_committed(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path))
    dgst = Digest.from_bytes(b"same")
    w1, w2 = store.writer("a"), store.writer("b")
    w1.write(b"same")
    w2.write(b"same")
    w1.commit(4, dgst)
    with pytest.raises(AlreadyExists):
        w2.commit(4, dgst)
    assert store.list_statuses() == []


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tiny tmpfs needs root")
def test_no_space(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], check=False)
    if r.returncode != 0:
        pytest.skip("cannot mount tmpfs here")
    try:
        store = LocalStore(str(mnt))
        w = store.writer("big")
        with pytest.raises(NoSpace, match="no space left on device"):
            for _ in range(10):
                w.write(b"\0" * (1 << 20))
        w.close()
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_writer_on_full_disk_leaves_no_half_made_ingest(tmp_path: Path) -> None:
    """An ingest whose metadata could not be written (disk full as it was
    made) is invisible to list_statuses and so to `content prune --ingests`;
    it must not be left behind."""
    from tests.harness.tmpfs import can_mount, fill, tmpfs

    if not can_mount():
        pytest.skip("mounting a tmpfs needs root (and leave to mount)")
    with tmpfs(tmp_path / "small", 64) as mnt:
        store = LocalStore(str(mnt / "root"))
        (mnt / "root" / "ingest").mkdir(parents=True)
        fill(mnt)
        with pytest.raises(NoSpace):
            store.writer("k", total=10).close()
        assert store.list_statuses() == []
        assert list((mnt / "root" / "ingest").iterdir()) == []


def test_ingest_left_by_a_kill_after_publish_goes_with_the_next_writer(tmp_path: Path) -> None:
    """A writer killed between publishing its blob and removing its ingest
    directory leaves the directory; the next writer of that key finds the
    content there (AlreadyExists) and must not leave it behind."""
    store = LocalStore(str(tmp_path))
    data = b"published, then killed"
    dgst = Digest.from_bytes(data)
    w = store.writer("k", total=len(data), expected=dgst)
    w.write(data)
    ingest = tmp_path / "ingest"
    (kept,) = [p for p in ingest.iterdir() if p.is_dir()]
    shutil.copytree(kept, tmp_path / "saved")
    w.commit(len(data), dgst)
    shutil.copytree(tmp_path / "saved", kept)  # as the kill left it
    assert [s.key for s in store.list_statuses()] == ["k"]
    with pytest.raises(AlreadyExists):
        store.writer("k", total=len(data), expected=dgst)
    assert store.list_statuses() == []
    assert store.exists(dgst)
