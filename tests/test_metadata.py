from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ocidist.descriptor import OCI_INDEX, OCI_MANIFEST, Descriptor
from ocidist.digest import Digest
from ocidist.errors import InvalidArgument, NotFound
from ocidist.metadata import SCHEMA_VERSION, MetadataStore

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _desc(seed: bytes, media_type: str = OCI_MANIFEST) -> Descriptor:
    return Descriptor(media_type, Digest.from_bytes(seed), len(seed))


def test_put_get_update_keeps_created(tmp_path: Path) -> None:
    with MetadataStore(str(tmp_path / "m.db")) as md:
        first = md.put_image("docker.io/library/a:1", _desc(b"one"), {"k": "v"})
        time.sleep(0.01)
        second = md.put_image("docker.io/library/a:1", _desc(b"two", OCI_INDEX))
        assert second.created_at == first.created_at
        assert second.updated_at > first.updated_at
        got = md.get_image("docker.io/library/a:1")
        assert got.target == _desc(b"two", OCI_INDEX)
        assert got.target.media_type == OCI_INDEX
        assert dict(got.labels) == {"k": "v"}  # kept when not given
        assert got.created_at == first.created_at


def test_persisted_across_instances(tmp_path: Path) -> None:
    path = str(tmp_path / "m.db")
    with MetadataStore(path) as md:
        md.put_image("n", _desc(b"x"))
    with MetadataStore(path) as md:
        assert md.get_image("n").target.digest == Digest.from_bytes(b"x")
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


@pytest.mark.parametrize(
    "dirname",
    ["100% sure?#x", "%3F%23%25", "a?mode=ro#frag", "caf\u00e9 \u2603", os.fsdecode(b"bad-\xff")],
)
def test_directory_names_uri_syntax_cannot_confuse(tmp_path: Path, dirname: str) -> None:
    """The store is opened through an SQLite ``file:`` URI (mode=rw): ``%``,
    ``?``, ``#``, spaces, non-ASCII and non-UTF-8 bytes in the path are the
    path's, never an escape, a query or a fragment."""
    directory = tmp_path / dirname
    path = directory / "metadata.db"
    with MetadataStore(str(path)) as md:
        md.put_image("n", _desc(b"x"))
    with MetadataStore(str(path)) as md:  # opened again: the same file, through the URI
        assert md.get_image("n").target.digest == Digest.from_bytes(b"x")
    with MetadataStore("/" + str(path)) as md:  # "//…" is a path, not a host
        assert md.get_image("n").target.digest == Digest.from_bytes(b"x")
    assert sorted(os.listdir(tmp_path)) == [dirname]
    assert os.path.isfile(path)


def test_listing_images_loads_no_url_or_path_modules(tmp_path: Path) -> None:
    """`dist images ls` opens the store through a file: URI without pathlib
    (urllib.parse and ipaddress with it: ~4 ms of a ~45 ms command)."""
    code = (
        "import sys; from ocidist.cli.main import main;"
        "main(['--root', sys.argv[1], 'images', 'ls']);"
        "print(sorted({'pathlib', 'urllib.parse', 'ipaddress'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "root")],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    assert out.stdout.splitlines()[-1] == "[]", out.stdout


def test_list_prefix_and_filter(tmp_path: Path) -> None:
    with MetadataStore(str(tmp_path / "m.db")) as md:
        for name in ("b/x:1", "a/x:1", "a/y:2", "a%:3"):
            md.put_image(name, _desc(name.encode()))
        assert [i.name for i in md.list_images()] == ["a%:3", "a/x:1", "a/y:2", "b/x:1"]
        assert [i.name for i in md.list_images("a/")] == ["a/x:1", "a/y:2"]
        # % is not a wildcard
        assert [i.name for i in md.list_images("a%")] == ["a%:3"]
        assert [i.name for i in md.list_images(filter=lambda i: i.name.endswith(":2"))] == ["a/y:2"]


def test_delete_and_not_found(tmp_path: Path) -> None:
    with MetadataStore(str(tmp_path / "m.db")) as md:
        md.put_image("n", _desc(b"x"))
        md.delete_image("n")
        with pytest.raises(NotFound, match="image n: not found"):
            md.get_image("n")
        with pytest.raises(NotFound):
            md.delete_image("n")
        with pytest.raises(NotFound):
            md.update_labels("n", {"a": "b"})


def test_update_labels(tmp_path: Path) -> None:
    with MetadataStore(str(tmp_path / "m.db")) as md:
        md.put_image("n", _desc(b"x"), {"a": "1", "b": "2"})
        assert dict(md.update_labels("n", {"a": "", "c": "3"}).labels) == {"b": "2", "c": "3"}
        assert dict(md.update_labels("n", {"z": "9"}, replace=True).labels) == {"z": "9"}
        assert dict(md.get_image("n").labels) == {"z": "9"}


def test_invalid_name(tmp_path: Path) -> None:
    with MetadataStore(str(tmp_path / "m.db")) as md, pytest.raises(InvalidArgument):
        md.put_image("has space", _desc(b"x"))


WRITER = textwrap.dedent(
    """
    import sys
    from ocidist.descriptor import Descriptor
    from ocidist.digest import Digest
    from ocidist.metadata import MetadataStore
    path, who = sys.argv[1], sys.argv[2]
    md = MetadataStore(path)
    for i in range(150):
        data = f"{who}-{i}".encode()
        md.put_image(f"img-{i % 10}", Descriptor("application/json", Digest.from_bytes(data), 1))
        md.put_image(f"{who}/{i}", Descriptor("application/json", Digest.from_bytes(data), 1))
        md.update_labels(f"img-{i % 10}", {who: str(i)})
    md.close()
    """
)


def test_concurrent_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "m.db")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, path, f"p{n}"],
            env={**os.environ, "PYTHONPATH": SRC},
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with MetadataStore(path) as md:
        names = [i.name for i in md.list_images()]
        assert len(names) == 10 + 4 * 150
        for n in range(4):
            assert len(md.list_images(f"p{n}/")) == 150
        # Every process's last label update on a shared name survived.
        labels = md.get_image("img-9").labels
        assert {k: labels[k] for k in ("p0", "p1", "p2", "p3")} == dict.fromkeys(
            ("p0", "p1", "p2", "p3"), "149"
        )


def test_opening_an_existing_store_writes_nothing(tmp_path: Path) -> None:
    # A command that only reads (push, images ls) must not pay a commit: the
    # schema runs once, when the file is new (user_version says so after).
    path = tmp_path / "m.db"
    with MetadataStore(str(path)) as md:
        md.put_image("docker.io/library/a:1", _desc(b"one"))
    before = path.stat()
    data = path.read_bytes()
    time.sleep(0.01)
    with MetadataStore(str(path)) as md:
        assert md.get_image("docker.io/library/a:1").target == _desc(b"one")
    after = path.stat()
    assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)
    assert path.read_bytes() == data
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
