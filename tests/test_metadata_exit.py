"""The metadata store at the two ends of a `dist` command that records a
name (issue 20: the tail of a small pull or unpack through a far link).

At the start (``SQLiteFile.prime``) the store's WAL is begun in the
background opener, so the sync of a new WAL's header and of its directory
no longer comes after the last layer. At the end (``SQLiteFile.leave``) the
`dist` program, which exits with ``os._exit``, makes its commit durable with
one fdatasync of the WAL instead of a checkpoint, and leaves the WAL for the
next connection. What that must keep: the name durable and seen by every
later reader, the WAL bounded, a command that only reads syncing nothing, a
busy store never delaying a command, and a program that calls ``main``
closing what it opened. (The full disk's side is in test_diskfull.)
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ocidist.metadata import MetadataStore
from ocidist.sqlitedb import LEAVE_WAL_BYTES
from tests.dist_cli import json_list, run_dist
from tests.harness import FaultProxy, Registry, push_image, simple_image
from tests.harness.crashedwriter import names_left_in_wal

SRC = str(Path(__file__).resolve().parents[1] / "src")
WAL_HEADER = 32


def pulled(registry: Registry, repo: str, root: Path, tag: str = "v1") -> str:
    img = simple_image(tag=f"{repo}-{tag}")
    push_image(registry, repo, tag, img)
    ref = f"{registry.host}/{repo}:{tag}"
    ok(run_dist("--root", str(root), "pull", ref))
    return ref


def ok(proc: subprocess.CompletedProcess[bytes]) -> str:
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    return proc.stdout.decode()


def names(root: Path) -> list[str]:
    return sorted(
        i["name"] for i in json_list(ok(run_dist("--root", str(root), "--json", "images", "ls")))
    )


def wal_size(root: Path) -> int:
    try:
        return (root / "metadata.db-wal").stat().st_size
    except FileNotFoundError:
        return -1


@pytest.mark.parametrize("command", ["unpack", "pull"])
def test_the_wal_is_begun_while_the_registry_is_still_answering(
    command: str, tmp_path: Path, registry: Registry, fault_proxy: FaultProxy, repo_name: str
) -> None:
    """The registry holds back its answer about the manifest for 3 s; well
    before it comes, the store's WAL already has its header (the tree before
    began it with the name's commit, after the last layer)."""
    img = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", img)
    fault_proxy.stall(3, "/manifests/", method=None)
    root = tmp_path / "root"
    args = [command, f"{fault_proxy.host}/{repo_name}:v1"]
    if command == "unpack":
        args.append(str(tmp_path / "rootfs"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ocidist", "--root", str(root), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        start = time.monotonic()
        size = -1
        while time.monotonic() - start < 2.5 and proc.poll() is None:
            size = wal_size(root)
            if size >= WAL_HEADER:
                break
            time.sleep(0.01)
        running = proc.poll() is None
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert running, "the command finished before the stall was over"
    assert size >= WAL_HEADER, size
    assert proc.returncode == 0, err.decode()
    assert names(root) == [f"{fault_proxy.host}/{repo_name}:v1"]


def _strace(root: Path, *args: str) -> list[str]:
    """The file syscalls (paths shown) of `dist --root ROOT ARGS`, in order."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    trace = root.parent / f"{root.name}.strace"
    proc = subprocess.run(
        [strace, "-f", "-qq", "-y", "-o", str(trace),
         "-e", "trace=write,pwrite64,fsync,fdatasync,sync_file_range,unlink",
         sys.executable, "-m", "ocidist", "--root", str(root), *args],
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    ok(proc)
    return trace.read_text().splitlines()


_CALL = re.compile(r"^\d+\s+(\w+)\((\d+)<([^>]*)>")


def _calls(lines: list[str]) -> list[tuple[str, str]]:
    """(syscall, path of its fd) for each call on a file descriptor."""
    return [(m[1], m[3]) for m in map(_CALL.match, lines) if m]


def test_a_pull_leaves_its_name_in_a_synced_wal(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    """A pull into a new root exits with its commit in the WAL, not
    checkpointed into metadata.db; what makes it durable is there, in the
    order it must come: the WAL's directory entry synced once the WAL holds
    a frame (SQLite syncs it with a new WAL's header), and the WAL synced
    after its last write. A later `dist images ls` sees the name."""
    img = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", img)
    ref = f"{registry.host}/{repo_name}:v1"
    root = tmp_path / "root"
    calls = _calls(_strace(root, "pull", ref))
    wal, directory = str(root / "metadata.db-wal"), str(root)
    writes = [i for i, (call, path) in enumerate(calls) if path == wal and "write" in call]
    syncs = [i for i, (call, path) in enumerate(calls) if path == wal and "sync" in call]
    dir_syncs = [i for i, (call, path) in enumerate(calls) if path == directory and "sync" in call]
    assert writes, calls
    assert syncs and syncs[-1] > writes[-1], calls
    assert any(i > writes[0] for i in dir_syncs), calls
    assert not any(path == wal for call, path in calls if call == "unlink")
    assert wal_size(root) > WAL_HEADER
    assert names(root) == [ref]


def test_a_command_that_only_reads_syncs_nothing(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    """`dist images ls` after a pull that left its WAL: nothing is synced (an
    fdatasync, even of a clean file, is a disk cache flush on ext4), and the
    WAL is left as it was."""
    root = tmp_path / "root"
    ref = pulled(registry, repo_name, root)
    size = wal_size(root)
    calls = _calls(_strace(root, "images", "ls"))
    assert not [c for c in calls if "sync" in c[0]], calls
    assert wal_size(root) == size
    assert names(root) == [ref]


def test_a_busy_store_does_not_delay_the_command(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    """Another process holds the store's write lock (BEGIN IMMEDIATE) while
    `dist unpack` of a stored name runs: the unpack only reads the store, so
    beginning the WAL (a write) must not wait for that lock (the busy
    timeout is 10 s) but give up at once. A pull, which must record its
    name, still waits for the lock as before: the holder lets go after
    1.5 s and the pull succeeds."""
    root = tmp_path / "root"
    ref = pulled(registry, repo_name, root)
    MetadataStore(str(root / "metadata.db")).close()  # the last close: the WAL checkpointed away
    assert wal_size(root) == -1
    holder = sqlite3.connect(root / "metadata.db", isolation_level=None, check_same_thread=False)
    try:
        holder.execute("BEGIN IMMEDIATE")
        start = time.monotonic()
        ok(run_dist("--root", str(root), "unpack", ref, str(tmp_path / "rootfs"), timeout=60))
        took = time.monotonic() - start
        assert took < 5, took
        assert (tmp_path / "rootfs" / "app" / "main.py").is_file()

        push_image(registry, repo_name, "v2", simple_image(tag=f"{repo_name}-v2"))
        release = threading.Timer(1.5, holder.execute, ("ROLLBACK",))
        release.start()
        try:
            ok(run_dist("--root", str(root), "pull", f"{registry.host}/{repo_name}:v2"))
        finally:
            release.join()
    finally:
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()
    assert names(root) == sorted([ref, f"{registry.host}/{repo_name}:v2"])


def test_a_long_wal_is_checkpointed_at_exit(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    """Every later first opener rebuilds its index from the whole WAL that
    was left (~2 ms for SQLite's 1000-page autocheckpoint), and the file
    never shrinks: a `dist` command that finds the WAL past the bound
    checkpoints it away as it exits."""
    root = tmp_path / "root"
    root.mkdir()
    names_left_in_wal(root / "metadata.db", [f"left/{i}" for i in range(60)], {"why": "x" * 200})
    assert wal_size(root) > LEAVE_WAL_BYTES
    ref = pulled(registry, repo_name, root)
    assert wal_size(root) in (-1, 0)
    assert len(names(root)) == 61 and ref in names(root)


def test_main_called_in_a_program_closes_the_store(
    tmp_path: Path, registry: Registry, repo_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A program that calls ``main`` goes on after it: the store is closed
    (the last connection's checkpoint folds the WAL in and removes it), not
    left as the exiting `dist` program leaves it."""
    from ocidist.cli.main import main

    img = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", img)
    ref = f"{registry.host}/{repo_name}:v1"
    root = tmp_path / "root"
    for args in (["pull", ref], ["unpack", ref, str(tmp_path / "rootfs")]):
        assert main(["--root", str(root), *args]) == 0
        assert wal_size(root) == -1, args
        assert not (root / "metadata.db-shm").exists()
    capsys.readouterr()
    with MetadataStore(str(root / "metadata.db")) as md:
        assert str(md.get_image(ref).target.digest) == img.digest
