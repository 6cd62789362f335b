"""apply_layer semantics: entry types, metadata, whiteouts, opaque dirs, replacement."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path

import pytest

from ocidist.archive import ApplyOptions, ApplyResult, apply_layer
from ocidist.digest import Digest
from ocidist.errors import ArchiveError, DigestMismatch
from tests.archive_helpers import (
    MTIME,
    Entry,
    chrdev,
    dir_,
    fifo,
    hard,
    layer,
    reg,
    sym,
    tar_bytes,
)

ROOT = os.geteuid() == 0


def apply(root: Path, entries: list[Entry], how: str = "gzip", **kw: object) -> ApplyResult:
    opts = ApplyOptions(layer_name="test", **kw)  # type: ignore[arg-type]
    return apply_layer(str(root), io.BytesIO(layer(entries, how)), options=opts)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    return r


@pytest.mark.parametrize("how", ["gzip", "zstd", "tar"])
def test_every_entry_type(root: Path, how: str) -> None:
    big = os.urandom(3 * (1 << 20) + 123)  # several 1 MiB chunks and a tail
    warnings: list[str] = []
    entries = [
        dir_("etc", mode=0o750),
        reg("etc/hosts", b"127.0.0.1 localhost\n", mode=0o640, uid=1000, gid=1001),
        reg("bin/big", big, mode=0o755),  # parent "bin" implicitly created
        sym("etc/link", "hosts"),
        sym("abs", "/etc/hosts"),
        hard("etc/hosts2", "etc/hosts"),
        fifo("run/fifo", mode=0o600),
        reg("usr/bin/su", b"su", mode=0o4755),
        dir_("tmp", mode=0o1777),
        chrdev("dev/null", 1, 3),
    ]
    result = apply(root, entries, how, warn=warnings.append)
    assert result.entries == len(entries)

    assert (root / "etc/hosts").read_bytes() == b"127.0.0.1 localhost\n"
    assert stat.S_IMODE((root / "etc").stat().st_mode) == 0o750
    assert stat.S_IMODE((root / "etc/hosts").stat().st_mode) == 0o640
    assert (root / "bin/big").read_bytes() == big
    assert stat.S_IMODE((root / "bin").stat().st_mode) == 0o755
    assert os.readlink(root / "etc/link") == "hosts"
    assert os.readlink(root / "abs") == "/etc/hosts"  # stored as given, never followed
    assert (root / "etc/hosts2").stat().st_ino == (root / "etc/hosts").stat().st_ino
    assert stat.S_ISFIFO((root / "run/fifo").lstat().st_mode)
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777
    # mtimes: files and directories (applied last, after their children).
    assert (root / "etc/hosts").stat().st_mtime == MTIME
    assert (root / "etc").stat().st_mtime == MTIME
    assert (root / "etc/link").lstat().st_mtime == MTIME
    if ROOT:
        assert (root / "etc/hosts").stat().st_uid == 1000
        assert (root / "etc/hosts").stat().st_gid == 1001
        assert stat.S_IMODE((root / "usr/bin/su").stat().st_mode) == 0o4755
        dev = root / "dev/null"
        if dev.exists():  # mknod may be refused even to root (containers)
            assert stat.S_ISCHR(dev.lstat().st_mode)
            assert os.major(dev.lstat().st_rdev) == 1
            assert os.minor(dev.lstat().st_rdev) == 3
        else:
            assert any("dev/null" in w for w in warnings)
    else:
        assert not (root / "dev/null").exists()
        assert any("dev/null" in w and "skipped" in w for w in warnings)


def test_diff_id_is_sha256_of_uncompressed_tar(root: Path) -> None:
    raw = tar_bytes([reg("a", b"hello"), dir_("d")])
    for how in ("gzip", "zstd"):
        from tests.archive_helpers import compress

        res = apply_layer(str(root), io.BytesIO(compress(raw, how)))
        assert res.diff_id == Digest("sha256", hashlib.sha256(raw).hexdigest())
        assert res.size == len(raw)


def test_diff_id_mismatch_raises_after_applying(root: Path) -> None:
    wrong = Digest("sha256", "0" * 64)
    with pytest.raises(DigestMismatch, match=r"layer test: digest mismatch"):
        apply(root, [reg("a", b"x")], expected_diff_id=wrong)
    assert (root / "a").read_bytes() == b"x"  # the caller decides about the tree


def test_expected_diff_id_match(root: Path) -> None:
    raw = tar_bytes([reg("a", b"x")])
    want = Digest("sha256", hashlib.sha256(raw).hexdigest())
    res = apply_layer(str(root), io.BytesIO(raw), options=ApplyOptions(expected_diff_id=want))
    assert res.diff_id == want


def test_empty_stream_and_empty_tar(root: Path) -> None:
    assert apply_layer(str(root), io.BytesIO(b"")).size == 0
    res = apply_layer(str(root), io.BytesIO(b"\0" * 1024))
    assert res.entries == 0 and res.size == 1024
    assert list(root.iterdir()) == []


def test_whiteout_file_and_dir(root: Path) -> None:
    apply(root, [reg("a/f", b"1"), reg("a/keep", b"2"), reg("d/x/y", b"3")])
    apply(root, [reg("a/.wh.f"), reg(".wh.d"), reg("a/.wh.missing")])
    assert not (root / "a/f").exists()
    assert (root / "a/keep").read_bytes() == b"2"
    assert not (root / "d").exists()
    assert not any(p.name.startswith(".wh.") for p in root.rglob("*"))


def test_whiteout_does_not_hide_same_layer_entry(root: Path) -> None:
    apply(root, [reg("a", b"new"), reg(".wh.a")])
    assert (root / "a").read_bytes() == b"new"


@pytest.mark.parametrize("marker_first", [True, False])
def test_opaque_dir_keeps_this_layers_entries(root: Path, marker_first: bool) -> None:
    apply(root, [reg("d/lower", b"l"), reg("d/sub/lower2", b"l2"), reg("d/sub/shared", b"old")])
    own = [dir_("d"), reg("d/mine", b"m"), reg("d/sub/shared", b"new")]
    marker = reg("d/.wh..wh..opq")
    apply(root, [marker, *own] if marker_first else [*own, marker])
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == [
        "d",
        "d/mine",
        "d/sub",
        "d/sub/shared",
    ]
    assert (root / "d/sub/shared").read_bytes() == b"new"


def test_file_replaces_dir_tree_and_dir_replaces_file(root: Path) -> None:
    apply(root, [reg("x/deep/f", b"1"), reg("y", b"file"), sym("z", "x")])
    apply(root, [reg("x", b"now a file"), dir_("y", mode=0o700), dir_("z")])
    assert (root / "x").read_bytes() == b"now a file"
    assert (root / "y").is_dir() and not (root / "y").is_symlink()
    assert stat.S_IMODE((root / "y").stat().st_mode) == 0o700
    assert (root / "z").is_dir() and not (root / "z").is_symlink()
    assert (root / "x").exists()  # the symlink did not take its target with it


def test_dir_over_dir_merges_and_updates_metadata(root: Path) -> None:
    apply(root, [dir_("d", mode=0o755), reg("d/old", b"o")])
    apply(root, [dir_("d", mode=0o711, mtime=MTIME + 50), reg("d/new", b"n")])
    assert (root / "d/old").read_bytes() == b"o"
    assert (root / "d/new").read_bytes() == b"n"
    assert stat.S_IMODE((root / "d").stat().st_mode) == 0o711
    assert (root / "d").stat().st_mtime == MTIME + 50


def test_file_over_file_does_not_modify_hardlinked_inode(root: Path) -> None:
    apply(root, [reg("a", b"orig"), hard("b", "a")])
    apply(root, [reg("b", b"changed")])
    assert (root / "a").read_bytes() == b"orig"
    assert (root / "b").read_bytes() == b"changed"


def test_hardlink_target_must_exist(root: Path) -> None:
    with pytest.raises(ArchiveError, match=r"layer test: entry b: hardlink target nope not found"):
        apply(root, [hard("b", "nope")])


def test_hardlink_to_symlink_links_the_symlink(root: Path) -> None:
    apply(root, [reg("t", b"t"), sym("s", "t"), hard("h", "s")])
    assert (root / "h").is_symlink() and os.readlink(root / "h") == "t"


def test_xattrs_from_pax(root: Path) -> None:
    e = reg("f", b"x")
    e.info.pax_headers = {"SCHILY.xattr.user.test": "value", "SCHILY.xattr.trusted.t": "v"}
    warnings: list[str] = []
    apply(root, [e], warn=warnings.append)
    try:
        got = os.getxattr(root / "f", "user.test")
    except OSError:
        pytest.skip("filesystem without user xattrs")
    assert got == b"value"
    if not ROOT:
        assert any("trusted.t" in w for w in warnings)


def test_limits(root: Path) -> None:
    with pytest.raises(ArchiveError, match="more than 2 entries"):
        apply(root, [reg("a"), reg("b"), reg("c")], max_entries=2)
    with pytest.raises(ArchiveError, match="deeper than 3"):
        apply(root, [reg("a/b/c/d")], max_path_depth=3)
    with pytest.raises(ArchiveError, match="exceeds the limit"):
        apply(root, [reg("big", b"x" * 100_000)], max_total_size=50_000)


def test_unsupported_entry_type_names_layer_and_entry(root: Path) -> None:
    e = reg("vol")
    e.info.type = b"V"  # a volume label: never valid in a layer
    with pytest.raises(ArchiveError, match=r"^layer test: entry vol: unsupported entry type"):
        apply(root, [e])
