"""`dist artifact pull` of a directory layer (``io.deis.oras.content.unpack``):
extracted literally and confined to the directory it is titled, as oras-go's
file store does it — an artifact directory is files, not a container layer.

Hostile tars are built here by hand and pushed with dist push-object; each
must leave the destination exactly as it was.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from tests.dist_cli import one_error_line
from tests.harness import Registry
from tests.harness.fstree import tree
from tests.test_artifact import TITLE, _push_manifest, sha
from tests.test_layout import dist, ok

UNPACK = "io.deis.oras.content.unpack"
CONTENT_DIGEST = "io.deis.oras.content.digest"
REG, DIR, SYM, LNK, CHR = (
    tarfile.REGTYPE,
    tarfile.DIRTYPE,
    tarfile.SYMTYPE,
    tarfile.LNKTYPE,
    tarfile.CHRTYPE,
)


def make_tar(entries: list[tuple[str, bytes, str, int]]) -> bytes:
    """(name, type, data or link target, mode) each, as a plain tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, payload, mode in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = mode
            data = payload.encode()
            if kind == REG:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                if kind in (SYM, LNK):
                    info.linkname = payload
                if kind == CHR:
                    info.devmajor, info.devminor = 1, 3  # /dev/null
                tf.addfile(info)
    return buf.getvalue()


def push_dir(tmp_path: Path, registry: Registry, repo: str, tar: bytes,
             *, title: str = "assets", content_digest: str | None = None) -> str:  # fmt: skip
    blob = gzip.compress(tar, mtime=0)
    annotations = {TITLE: title, UNPACK: "true",
                   CONTENT_DIGEST: content_digest or sha(tar)}  # fmt: skip
    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
             "digest": sha(blob), "size": len(blob), "annotations": annotations}  # fmt: skip
    return _push_manifest(tmp_path / "root", registry, repo, [layer], blob)


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    """A destination with files of its own, and a link that points outside."""
    d = tmp_path / "dest"
    (d / "assets").mkdir(parents=True)
    (d / "keep.txt").write_text("mine\n")
    (d / "assets" / "old.txt").write_text("old\n")
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", d / "elsewhere")
    return d


def test_whiteout_names_are_ordinary_files(
    tmp_path: Path, registry: Registry, repo_name: str, dest: Path
) -> None:
    tar = make_tar([
        ("assets", DIR, "", 0o755),
        ("assets/.wh.old.txt", REG, "not a whiteout\n", 0o644),
        ("assets/.wh..wh..opq", REG, "not opaque\n", 0o644),
        ("assets/sub", DIR, "", 0o755),
        ("assets/sub/.wh..wh..opq", REG, "x\n", 0o644),
    ])  # fmt: skip
    ref = push_dir(tmp_path, registry, repo_name, tar)
    ok(dist(tmp_path / "root", "artifact", "pull", ref, str(dest)))
    assert (dest / "assets" / "old.txt").read_text() == "old\n"  # not whited out
    assert (dest / "keep.txt").read_text() == "mine\n"
    assert (dest / "assets" / ".wh.old.txt").read_text() == "not a whiteout\n"
    assert (dest / "assets" / ".wh..wh..opq").read_text() == "not opaque\n"
    assert (dest / "assets" / "sub" / ".wh..wh..opq").read_text() == "x\n"


def test_modes_are_kept_without_setuid_and_devices_are_skipped(
    tmp_path: Path, registry: Registry, repo_name: str, dest: Path
) -> None:
    tar = make_tar([
        ("assets", DIR, "", 0o755),
        ("assets/run.sh", REG, "#!/bin/sh\n", 0o4755),
        ("assets/ro.txt", REG, "r\n", 0o444),
        ("assets/null", CHR, "", 0o666),
    ])  # fmt: skip
    ref = push_dir(tmp_path, registry, repo_name, tar)
    proc = ok(dist(tmp_path / "root", "artifact", "pull", ref, str(dest)))
    assert "dist: warning: assets/null: device node skipped" in proc.stderr.decode()
    assert stat.S_IMODE((dest / "assets" / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "assets" / "ro.txt").stat().st_mode) == 0o444
    assert not (dest / "assets" / "null").exists()  # even as root: files, not devices


HOSTILE = {
    "outside-the-title": [("assets", DIR, "", 0o755), ("keep.txt", REG, "owned\n", 0o644)],
    "opaque-at-the-top": [("assets", DIR, "", 0o755), (".wh..wh..opq", REG, "", 0o644)],
    "dotdot": [("assets", DIR, "", 0o755), ("assets/../keep.txt", REG, "owned\n", 0o644)],
    "absolute": [("assets", DIR, "", 0o755), ("/keep.txt", REG, "owned\n", 0o644)],
    "absolute-symlink": [("assets", DIR, "", 0o755), ("assets/l", SYM, "/etc", 0o777)],
    "escaping-symlink": [("assets", DIR, "", 0o755), ("assets/l", SYM, "../keep.txt", 0o777)],
    "write-through-symlink": [
        ("assets", DIR, "", 0o755), ("assets/sub", DIR, "", 0o755),
        ("assets/l", SYM, "sub", 0o777), ("assets/l/x", REG, "x\n", 0o644),
    ],
    "hardlink-outside": [("assets", DIR, "", 0o755), ("assets/h", LNK, "keep.txt", 0o644)],
    "top-is-a-file": [("assets", REG, "file\n", 0o644)],
    "through-existing-link": [("elsewhere", DIR, "", 0o755), ("elsewhere/x", REG, "x\n", 0o644)],
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_directory_tars_change_nothing(
    tmp_path: Path, registry: Registry, repo_name: str, dest: Path, case: str
) -> None:
    title = "elsewhere" if case == "through-existing-link" else "assets"
    # A valid file first: nothing at all may be written before the bad entry is seen.
    entries = HOSTILE[case]
    entries = [entries[0], (f"{title}/first.txt", REG, "1\n", 0o644), *entries[1:]]
    ref = push_dir(tmp_path, registry, repo_name, make_tar(entries), title=title)
    before = tree(dest)
    proc = dist(tmp_path / "root", "artifact", "pull", ref, str(dest))
    assert proc.returncode == 1, proc.stderr
    line = one_error_line(proc)
    assert title in line, line
    assert tree(dest) == before
    assert list((tmp_path / "outside").iterdir()) == []


def test_tar_digest_annotation_is_checked_before_anything_is_written(
    tmp_path: Path, registry: Registry, repo_name: str, dest: Path
) -> None:
    tar = make_tar([("assets", DIR, "", 0o755), ("assets/new.txt", REG, "n\n", 0o644)])
    wrong = "sha256:" + hashlib.sha256(b"something else").hexdigest()
    ref = push_dir(tmp_path, registry, repo_name, tar, content_digest=wrong)
    before = tree(dest)
    proc = dist(tmp_path / "root", "artifact", "pull", ref, str(dest))
    assert proc.returncode == 1 and "digest mismatch" in one_error_line(proc)
    assert tree(dest) == before
    assert not [p for p in dest.iterdir() if p.name.startswith(".dist-partial")]


def test_pulling_twice_replaces_files_and_keeps_links_inside(
    tmp_path: Path, registry: Registry, repo_name: str, dest: Path
) -> None:
    tar = make_tar([
        ("assets", DIR, "", 0o755),
        ("assets/a.txt", REG, "a\n", 0o644),
        ("assets/sub", DIR, "", 0o755),
        ("assets/sub/to-a", SYM, "../a.txt", 0o777),
        ("assets/hard", LNK, "assets/a.txt", 0o644),
    ])  # fmt: skip
    ref = push_dir(tmp_path, registry, repo_name, tar)
    root = tmp_path / "root"
    ok(dist(root, "artifact", "pull", ref, str(dest)))
    (dest / "assets" / "a.txt").write_text("changed\n")  # the hardlink sees it too
    ok(dist(root, "artifact", "pull", ref, str(dest)))
    assert (dest / "assets" / "a.txt").read_text() == "a\n"
    assert os.readlink(dest / "assets" / "sub" / "to-a") == "../a.txt"
    assert (dest / "assets" / "hard").read_text() == "a\n"
    assert (dest / "assets" / "old.txt").read_text() == "old\n"  # merged, as oras does
    doc = json.loads(ok(dist(root, "--json", "artifact", "pull", ref, str(dest))).stdout
                     .decode().splitlines()[-1])  # fmt: skip
    assert doc["digest"].startswith("sha256:")


def test_a_directory_oras_py_pushed_is_its_tar_gz_as_the_oras_cli_saves_it(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    """oras-py marks a directory by its media type alone (no unpack
    annotation); oras-go, behind the oras CLI, unpacks only layers annotated
    ``io.deis.oras.content.unpack: "true"`` and saves others as they are,
    under their title. dist does what the oras CLI does."""
    oras_client = pytest.importorskip("oras.client")
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "a.txt").write_text("a\n")
    ref = f"{registry.host}/{repo_name}:v1"
    client = oras_client.OrasClient(hostname=registry.host, insecure=True)
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        client.push(target=ref, files=["assets"])
    finally:
        os.chdir(old)
    out = tmp_path / "out"
    ok(dist(tmp_path / "root", "artifact", "pull", ref, str(out)))
    assert (out / "assets").is_file()
    with tarfile.open(out / "assets", "r:gz") as tf:
        assert sorted(tf.getnames()) == ["assets", "assets/a.txt"]
