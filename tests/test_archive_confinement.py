"""No layer entry may create, change or remove anything outside the root.

Each case applies a hostile layer to ``<tmp>/sentinel/root`` and then compares
everything under ``<tmp>`` outside the root (plus /etc/passwd) with a snapshot
taken before: the filesystem, not our code, is the witness.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocidist.archive import ApplyOptions, apply_layer
from ocidist.errors import ArchiveError
from tests.archive_helpers import Entry, chrdev, dir_, fifo, hard, layer, reg, snapshot, sym


class Jail:
    def __init__(self, top: Path) -> None:
        self.top = top
        self.sentinel = top / "sentinel"
        self.root = self.sentinel / "root"
        self.root.mkdir(parents=True)
        (self.sentinel / "victim").write_bytes(b"do not touch")
        (self.sentinel / "dir").mkdir()
        (self.sentinel / "dir" / "child").write_bytes(b"child")
        (top / "x").write_bytes(b"top-level x")

    def apply(self, entries: list[Entry]) -> None:
        opts = ApplyOptions(layer_name="evil")
        apply_layer(str(self.root), io.BytesIO(layer(entries)), options=opts)


def _passwd_hash() -> str:
    return hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest()


@pytest.fixture
def jail(tmp_path: Path) -> Iterator[Jail]:
    j = Jail(tmp_path)
    before = snapshot(tmp_path, exclude=j.root)
    passwd = _passwd_hash()
    yield j
    assert snapshot(tmp_path, exclude=j.root) == before, "something outside the root changed"
    assert _passwd_hash() == passwd


def test_dotdot_name_is_cleaned_into_root(jail: Jail) -> None:
    jail.apply([reg("../x", b"in"), reg("../../victim", b"in2")])
    assert (jail.root / "x").read_bytes() == b"in"
    assert (jail.root / "victim").read_bytes() == b"in2"


def test_absolute_name_is_rerooted(jail: Jail) -> None:
    abs_victim = str(jail.sentinel / "victim")
    jail.apply([reg(abs_victim, b"in"), reg("/x", b"in2")])
    assert (jail.root / abs_victim.lstrip("/")).read_bytes() == b"in"
    assert (jail.root / "x").read_bytes() == b"in2"


def test_inner_dotdot_cannot_climb(jail: Jail) -> None:
    jail.apply([reg("a/../../x", b"in"), reg("a/b/../../../victim", b"in2")])
    assert (jail.root / "x").read_bytes() == b"in"
    assert (jail.root / "victim").read_bytes() == b"in2"


def test_relative_symlink_out_then_write_through(jail: Jail) -> None:
    jail.apply([sym("esc", "../.."), reg("esc/victim", b"in"), reg("esc/dir/child", b"in2")])
    assert os.readlink(jail.root / "esc") == "../.."
    assert (jail.root / "victim").read_bytes() == b"in"
    assert (jail.root / "dir/child").read_bytes() == b"in2"


def test_absolute_symlink_out_then_write_through(jail: Jail) -> None:
    jail.apply([sym("esc", str(jail.sentinel)), reg("esc/victim", b"in")])
    inside = jail.root / str(jail.sentinel).lstrip("/") / "victim"
    assert inside.read_bytes() == b"in"


def test_symlink_dotdot_chain(jail: Jail) -> None:
    jail.apply(
        [
            sym("up", ".."),
            dir_("d"),
            sym("d/up2", "../up/up/up"),
            reg("up/up/up/x", b"a"),
            reg("d/up2/victim", b"b"),
        ]
    )
    assert (jail.root / "x").read_bytes() == b"a"
    assert (jail.root / "victim").read_bytes() == b"b"


def test_symlink_loop_is_an_error_not_a_hang(jail: Jail) -> None:
    with pytest.raises(ArchiveError, match=r"layer evil: entry a/f: .*symbolic links"):
        jail.apply([sym("a", "b"), sym("b", "a"), reg("a/f", b"x")])


def test_file_over_planted_symlink_replaces_the_link(jail: Jail) -> None:
    jail.apply([sym("v", str(jail.sentinel / "victim")), reg("v", b"replaced")])
    assert not (jail.root / "v").is_symlink()
    assert (jail.root / "v").read_bytes() == b"replaced"


def test_dir_over_planted_symlink_does_not_chmod_outside(jail: Jail) -> None:
    jail.apply([sym("d", "../dir"), dir_("d", mode=0o700), reg("d/child", b"in")])
    assert (jail.root / "d").is_dir() and not (jail.root / "d").is_symlink()
    assert (jail.root / "d/child").read_bytes() == b"in"


def test_hardlink_to_etc_passwd_is_confined(jail: Jail) -> None:
    with pytest.raises(ArchiveError, match=r"^layer evil: entry p: hardlink target"):
        jail.apply([hard("p", "/etc/passwd")])
    assert not (jail.root / "p").exists()


def test_hardlink_to_etc_passwd_links_the_roots_copy(jail: Jail) -> None:
    jail.apply([reg("etc/passwd", b"root:x:0:0::/:/bin/sh\n"), hard("p", "/etc/passwd")])
    assert (jail.root / "p").stat().st_ino == (jail.root / "etc/passwd").stat().st_ino


def test_hardlink_outside_via_dotdot_and_symlink(jail: Jail) -> None:
    with pytest.raises(ArchiveError, match="hardlink target"):
        jail.apply([hard("h", "../victim")])
    with pytest.raises(ArchiveError, match="hardlink target"):
        jail.apply([sym("esc", str(jail.sentinel)), hard("h2", "esc/victim")])
    assert not (jail.root / "h").exists() and not (jail.root / "h2").exists()


def test_hardlink_name_over_planted_symlink(jail: Jail) -> None:
    jail.apply([reg("t", b"t"), sym("h", str(jail.sentinel / "victim")), hard("h", "t")])
    assert (jail.root / "h").stat().st_ino == (jail.root / "t").stat().st_ino


def test_whiteout_escapes_are_confined(jail: Jail) -> None:
    (jail.root / "victim").write_bytes(b"inside")
    (jail.root / "x").write_bytes(b"inside")
    jail.apply([reg("../.wh.victim"), reg("a/../../.wh.x"), reg("/../.wh.dir")])
    assert not (jail.root / "victim").exists()
    assert not (jail.root / "x").exists()


def test_whiteout_and_opaque_through_symlink_are_confined(jail: Jail) -> None:
    jail.apply([sym("esc", str(jail.sentinel)), reg("esc/.wh.victim"), reg("esc/.wh.dir")])
    jail.apply([sym("esc2", "../../dir"), reg("esc2/.wh..wh..opq")])
    jail.apply([sym("esc3", str(jail.sentinel / "dir")), reg("esc3/.wh..wh..opq")])


def test_invalid_whiteout_names(jail: Jail) -> None:
    with pytest.raises(ArchiveError, match="invalid whiteout"):
        jail.apply([reg("a/.wh...")])
    jail.apply([reg("a/keep"), reg("a/.wh..wh.plnk")])  # aufs bookkeeping: ignored
    assert [p.name for p in (jail.root / "a").iterdir()] == ["keep"]


@pytest.mark.parametrize(
    ("make", "entry"),
    [("mkfifo", fifo("node", mode=0o666)), ("mknod", chrdev("node", 1, 3, mode=0o666))],
)
def test_a_special_file_swapped_for_a_symlink_is_not_chmod_outside(
    jail: Jail, monkeypatch: pytest.MonkeyPatch, make: str, entry: Entry
) -> None:
    """Someone who can write in the tree (an image's 1777 /tmp, say) swaps a
    FIFO or device node for a symlink between its creation and its chmod:
    the chmod must not follow the link to a file outside the root."""
    if make == "mknod" and os.geteuid() != 0:
        pytest.skip("device nodes need root")
    victim = jail.sentinel / "victim"
    mode = stat.S_IMODE(victim.stat().st_mode)  # 0644, not the node's 0666
    real = getattr(os, make)

    def racing(name: str, *args: object, dir_fd: int | None = None) -> None:
        real(name, *args, dir_fd=dir_fd)
        # The race, won: what the layer made is now a link to the victim.
        os.unlink(name, dir_fd=dir_fd)
        os.symlink(str(victim), name, dir_fd=dir_fd)

    monkeypatch.setattr(os, make, racing)
    with pytest.raises(ArchiveError, match="replaced while"):
        jail.apply([entry])
    monkeypatch.undo()
    assert stat.S_IMODE(victim.stat().st_mode) == mode  # (and the jail compares all)
