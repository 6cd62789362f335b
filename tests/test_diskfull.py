"""A disk that fills up: `dist` must leave the store usable and let a person
free the space with `dist` itself (issue 21).

Each test mounts a small tmpfs (root only) and fills it to the last block.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocidist.descriptor import OCI_MANIFEST, Descriptor
from ocidist.digest import Digest
from ocidist.errors import NoSpace
from ocidist.metadata import MetadataStore
from tests.dist_cli import json_list, one_error_line, run_dist
from tests.harness import BuiltImage, Registry, large_image, push_image
from tests.harness.crashedwriter import names_left_in_wal
from tests.harness.tmpfs import can_mount, fill, free_bytes, resize, tmpfs, used_bytes

pytestmark = pytest.mark.skipif(not can_mount(), reason="mounting a tmpfs needs root")

METADATA_FILES = ("metadata.db", "metadata.db-wal", "metadata.db-shm", "metadata.db.reserve")


@pytest.fixture
def mnt(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB filesystem (the issue's); tests give it more room as needed."""
    with tmpfs(tmp_path / "small", 64) as path:
        yield path


@pytest.fixture(scope="module")
def image(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, BuiltImage]:
    img = large_image(tmp_path_factory.mktemp("diskfull-img"), total_compressed=1 << 20, layers=2)
    push_image(registry, "t/diskfull/img", "v1", img, method="http")
    return f"{registry.host}/t/diskfull/img:v1", img


def room_for(img: BuiltImage) -> int:
    """KiB of tmpfs a pull of ``img`` fits in, with room to spare."""
    return sum(o.size for o in img.objects()) // 1024 + 2048


def dist(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return run_dist("--root", str(root), "--plain-http", *args, timeout=60)


def ok(proc: subprocess.CompletedProcess[bytes]) -> str:
    assert proc.returncode == 0, proc.stderr.decode()
    assert "Traceback" not in proc.stderr.decode()
    return proc.stdout.decode()


def blob_names(root: Path) -> set[str]:
    d = root / "blobs" / "sha256"
    return {f"sha256:{p.name}" for p in d.iterdir()} if d.is_dir() else set()


def names_recorded(root: Path) -> list[str]:
    out = ok(dist(root, "images", "ls", "--json"))
    return sorted(i["name"] for i in json_list(out))


def tables_of(db: Path, scratch: Path) -> set[str]:
    """Tables of ``db`` (with its WAL), read from a copy so the store under
    test is not touched."""
    scratch.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal"):
        src = Path(f"{db}{suffix}")
        if src.exists():
            shutil.copyfile(src, scratch / f"copy.db{suffix}")
    conn = sqlite3.connect(scratch / "copy.db")
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


def metadata_bytes(root: Path) -> int:
    """Bytes the filesystem gives the metadata files (what prune may not free)."""
    total = 0
    for name in METADATA_FILES:
        p = root / name
        if p.exists():
            total += p.stat().st_blocks * 512
    return total


def test_pull_into_tiny_fs_then_prune_and_ls(
    mnt: Path, image: tuple[str, BuiltImage], tmp_path: Path
) -> None:
    """The issue's case: a pull fills a 64 KiB filesystem; `dist content
    prune` frees it and `dist images ls` lists, both on the full disk; with
    space given back, the pull completes."""
    ref, img = image
    root = mnt / "root"
    pull = dist(root, "fetch", "--all-platforms", ref)
    assert pull.returncode == 1
    assert "no space left on device" in one_error_line(pull)
    db = root / "metadata.db"
    if db.exists():  # created whole or not at all
        assert {"images", "ns_leases"} <= tables_of(db, tmp_path / "scratch")

    assert names_recorded(root) == []
    prune = dist(root, "content", "prune", "--force", "--ingests")
    ok(prune)
    assert blob_names(root) == set()
    ingests = list((root / "ingest").iterdir()) if (root / "ingest").exists() else []
    assert ingests == [], (prune.stdout, prune.stderr, [list(p.iterdir()) for p in ingests])
    # The space is back: what is left is the metadata store and nothing else.
    left = subprocess.run(["find", str(mnt), "-ls"], capture_output=True, text=True).stdout
    assert used_bytes(mnt) <= metadata_bytes(root) + 8192, left
    assert names_recorded(root) == []

    resize(mnt, room_for(img))
    ok(dist(root, "fetch", "--all-platforms", ref))
    assert names_recorded(root) == [ref]
    assert {o.digest for o in img.objects()} <= blob_names(root)


@pytest.mark.parametrize("leave_kib", [0, 4, 8, 12, 16, 20, 24, 32, 36, 40, 48])
def test_store_is_created_whole_or_not_at_all(mnt: Path, tmp_path: Path, leave_kib: int) -> None:
    """Creating metadata.db on a nearly full disk leaves either nothing or a
    store with its schema; never a file without tables (which every later
    open tried to complete, failing again on the full disk)."""
    fill(mnt, leave=leave_kib * 1024)
    path = mnt / "metadata.db"
    try:
        md = MetadataStore(str(path))
    except NoSpace:
        pass
    else:
        md.close()
    if path.exists():
        assert {"images", "ns_leases", "ns_lease_resources"} <= tables_of(path, tmp_path / "s")
    # Whatever happened, the root still answers (no store: no images).
    assert names_recorded(mnt) == []
    leftovers = [p for p in os.listdir(mnt) if p.startswith("metadata.db.")]
    assert leftovers in ([], ["metadata.db.reserve"]), leftovers


def _record(root: Path, name: str, seed: bytes) -> Digest:
    desc = Descriptor(OCI_MANIFEST, Digest.from_bytes(seed), len(seed))
    with MetadataStore(str(root / "metadata.db")) as md:
        md.put_image(name, desc)
    return desc.digest


def test_full_disk_images_rm_content_rm_prune(mnt: Path, image: tuple[str, BuiltImage]) -> None:
    """On a disk full to the last block: list, remove the image name (a write
    to the metadata store), remove a blob, prune the rest; each must work."""
    ref, img = image
    resize(mnt, room_for(img))
    root = mnt / "root"
    ok(dist(root, "fetch", "--all-platforms", ref))
    _record(root, "other", b"not in the store")
    fill(mnt)
    assert free_bytes(mnt) == 0

    assert names_recorded(root) == sorted(["other", ref])
    layer = max(img.blobs().values(), key=lambda b: b.size)
    ok(dist(root, "content", "rm", layer.digest))
    assert layer.digest not in blob_names(root)
    ok(dist(root, "images", "rm", ref))
    ok(dist(root, "images", "rm", "other"))
    ok(dist(root, "content", "prune", "--force"))
    assert blob_names(root) == set()
    assert names_recorded(root) == []
    # After the rm and the prune the disk is no longer full; a new name can
    # be recorded again.
    (mnt / "filler").unlink()
    _record(root, "again", b"x")
    assert names_recorded(root) == ["again"]


def test_full_disk_read_sees_commit_only_in_wal(mnt: Path) -> None:
    """A commit still in the WAL (its writer killed before a checkpoint) is
    seen by a reader on a full disk: the fallback must read the WAL, not
    the main file alone (which an immutable open would)."""
    resize(mnt, 256)
    root = mnt / "root"
    _record(root, "first", b"1")  # closed: checkpointed into metadata.db
    names_left_in_wal(root / "metadata.db", ["second"])
    wal = root / "metadata.db-wal"
    assert wal.exists() and wal.stat().st_size > 0
    # No process has the store open: its shared-memory index may go (the
    # next opener rebuilds it from the WAL), and with the disk full that
    # rebuilding has no room.
    (root / "metadata.db-shm").unlink()
    fill(mnt)
    assert names_recorded(root) == ["first", "second"]
    ok(dist(root, "images", "rm", "second"))
    assert names_recorded(root) == ["first"]


def test_full_disk_write_that_adds_fails_cleanly(mnt: Path) -> None:
    """Recording a name on a full disk fails with NoSpace, the store is
    unchanged, and the space kept for deletions is not given to it."""
    resize(mnt, 256)
    root = mnt / "root"
    _record(root, "first", b"1")
    assert (root / "metadata.db.reserve").exists()
    fill(mnt)
    with pytest.raises(NoSpace, match="no space left on device"):
        _record(root, "second", b"2")
    assert names_recorded(root) == ["first"]
    assert (root / "metadata.db.reserve").exists()


def test_full_disk_prune_keeps_what_a_lease_holds(mnt: Path) -> None:
    """Prune on a full disk still reads the leases: content a live lease
    holds (a `dist serve` client mid-fetch) is kept, the rest freed."""
    from ocidist.content.local import LocalStore
    from ocidist.leases import CONTENT, LeaseStore, Resource

    resize(mnt, 256)
    root = mnt / "root"
    store = LocalStore(str(root))
    held, loose = b"held" * 1000, b"loose" * 1000
    for data in (held, loose):
        store.put(data, Digest.from_bytes(data))
    leases = LeaseStore(str(root / "metadata.db"))
    lease = leases.create("default")
    leases.add_resource("default", lease.id, Resource(str(Digest.from_bytes(held)), CONTENT))
    leases.close()
    fill(mnt)
    ok(dist(root, "content", "prune", "--force"))
    assert blob_names(root) == {str(Digest.from_bytes(held))}


OLD_LEASE_TABLES = """
    CREATE TABLE leases (id TEXT PRIMARY KEY, created_at REAL NOT NULL,
                         labels_json TEXT NOT NULL DEFAULT '{}');
    CREATE TABLE lease_resources (lease TEXT NOT NULL REFERENCES leases(id)
                         ON DELETE CASCADE, type TEXT NOT NULL, id TEXT NOT NULL,
                         PRIMARY KEY (lease, type, id));
"""


def test_full_disk_old_lease_holding_content_is_not_overlooked(mnt: Path) -> None:
    """A lease of the version without namespaces, holding a blob, on a full
    disk where there is no room to move it to the new tables: prune must
    keep the blob or fail in one line, never take it."""
    from ocidist.content.local import LocalStore

    resize(mnt, 256)
    root = mnt / "root"
    root.mkdir()
    data = b"held by an old lease" * 100
    dgst = str(Digest.from_bytes(data))
    LocalStore(str(root)).put(data, Digest.from_bytes(data))
    conn = sqlite3.connect(root / "metadata.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(OLD_LEASE_TABLES)
    conn.execute("INSERT INTO leases VALUES ('old', 1.5, '{}')")
    conn.execute("INSERT INTO lease_resources VALUES ('old', 'content', ?)", (dgst,))
    conn.close()
    fill(mnt)
    prune = dist(root, "content", "prune", "--force")
    if prune.returncode != 0:
        assert "no space left on device" in one_error_line(prune)
    assert blob_names(root) == {dgst}


def test_full_disk_store_from_before_the_lease_tables(mnt: Path) -> None:
    """A store made by an older version (images only, user_version 1, no
    reserve) on a full disk: there is no room to add the lease tables, yet
    it lists and prunes; removing a name may need the room the prune made."""
    from ocidist.content.local import LocalStore

    resize(mnt, 512)
    root = mnt / "root"
    root.mkdir()
    conn = sqlite3.connect(root / "metadata.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(
        "CREATE TABLE images (name TEXT PRIMARY KEY, media_type TEXT NOT NULL,"
        " digest TEXT NOT NULL, size INTEGER NOT NULL, target_json TEXT NOT NULL,"
        " created_at REAL NOT NULL, updated_at REAL NOT NULL,"
        " labels_json TEXT NOT NULL DEFAULT '{}')"
    )
    desc = Descriptor(OCI_MANIFEST, Digest.from_bytes(b"m"), 1)
    conn.execute(
        "INSERT INTO images VALUES (?, ?, ?, ?, ?, 0, 0, '{}')",
        ("old", desc.media_type, str(desc.digest), desc.size, desc.dumps()),
    )
    # Made empty by the first prune of that version (its LeaseStore).
    conn.executescript(OLD_LEASE_TABLES)
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    junk = os.urandom(200 << 10)
    LocalStore(str(root)).put(junk, Digest.from_bytes(junk))
    fill(mnt)
    assert names_recorded(root) == ["old"]
    rm = dist(root, "images", "rm", "old")
    if rm.returncode != 0:
        assert "no space left on device" in one_error_line(rm)
    ok(dist(root, "content", "prune", "--force"))
    assert blob_names(root) == set()
    ok(dist(root, "images", "rm", "old"))
    assert names_recorded(root) == []
    assert {"images", "ns_leases"} <= tables_of(root / "metadata.db", mnt.parent / "scratch")


def test_full_disk_read_sees_a_name_a_pull_left_in_the_wal(
    mnt: Path, image: tuple[str, BuiltImage]
) -> None:
    """A `dist pull` exits leaving its name in the WAL (made durable there,
    not checkpointed: issue 20's tail); on a disk then full, where the
    shared-memory index cannot be rebuilt, the exclusive-mode read still
    finds it, and removing it still works."""
    ref, img = image
    resize(mnt, room_for(img))
    root = mnt / "root"
    ok(dist(root, "pull", "--all-platforms", ref))
    assert (root / "metadata.db-wal").stat().st_size > 0
    (root / "metadata.db-shm").unlink()  # no process has the store open
    fill(mnt)
    assert names_recorded(root) == [ref]
    ok(dist(root, "images", "rm", ref))
    assert names_recorded(root) == []


def test_full_disk_deletion_that_used_the_reserve_is_checkpointed_at_exit(
    mnt: Path, image: tuple[str, BuiltImage]
) -> None:
    """A `dist images rm` on a full disk gives up the reserve for its WAL
    frames; the checkpoint at close is then what gives that room back, so
    the command closes the store as it exits rather than leaving the WAL
    (as a command that had its reserve does)."""
    ref, img = image
    resize(mnt, room_for(img))
    root = mnt / "root"
    ok(dist(root, "pull", "--all-platforms", ref))
    fill(mnt)
    ok(dist(root, "images", "rm", ref))
    assert not (root / "metadata.db-wal").exists()
    assert names_recorded(root) == []
