"""Parity with umoci: the same layers, applied by us and by `umoci unpack` from an
OCI layout, give the same paths, types, modes, owners, link targets and contents."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ocidist.archive import apply_layer
from tests.archive_helpers import Entry, dir_, fifo, hard, reg, sym, tar_bytes
from tests.harness.fstree import tree

UMOCI = shutil.which("umoci")
pytestmark = pytest.mark.skipif(UMOCI is None, reason="umoci not installed")

LAYERS: list[list[Entry]] = [
    [
        dir_("etc"),
        reg("etc/passwd", b"root:x:0:0::/root:/bin/sh\n", mode=0o644),
        reg("etc/shadow", b"root:*:1::::::\n", mode=0o600, gid=42),
        dir_("usr/bin"),
        reg("usr/bin/tool", b"#!/bin/sh\necho hi\n", mode=0o755),
        hard("usr/bin/tool2", "usr/bin/tool"),
        sym("bin", "usr/bin"),
        reg("opt/app/lower", b"lower"),
        reg("opt/app/sub/lower2", b"lower2"),
        reg("var/old/file", b"old"),
        reg("replace-me", b"file"),
        dir_("becomes-file"),
        reg("becomes-file/child", b"c"),
        fifo("run/ctl", mode=0o600),
        dir_("tmp", mode=0o1777),
    ],
    [
        reg("opt/app/own", b"own"),
        reg("opt/app/.wh..wh..opq"),  # after this layer's own entry
        reg("var/.wh.old"),
        dir_("replace-me", mode=0o750),
        reg("replace-me/inside", b"i"),
        reg("becomes-file", b"now a file"),
        reg("etc/passwd", b"root:x:0:0::/root:/bin/bash\n", mode=0o644),
    ],
    [
        reg("usr/.wh..wh..opq"),  # before this layer's own entries
        reg("usr/bin/new", b"new", mode=0o700, uid=1000, gid=1000),
        sym("etc/alt", "/etc/passwd"),
        reg("bin/via-link", b"through the bin symlink"),
    ],
]


def _blob(layout: Path, data: bytes) -> dict[str, object]:
    dgst = hashlib.sha256(data).hexdigest()
    (layout / "blobs/sha256" / dgst).write_bytes(data)
    return {"digest": f"sha256:{dgst}", "size": len(data)}


def _layout(path: Path, layers: list[bytes]) -> None:
    (path / "blobs/sha256").mkdir(parents=True)
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    diff_ids = ["sha256:" + hashlib.sha256(raw).hexdigest() for raw in layers]
    layer_descs = [
        {
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            **_blob(path, gzip.compress(raw)),
        }
        for raw in layers
    ]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_desc = {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        **_blob(path, json.dumps(config).encode()),
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": layer_descs,
    }
    man_desc = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        **_blob(path, json.dumps(manifest).encode()),
        "annotations": {"org.opencontainers.image.ref.name": "t"},
    }
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [man_desc]}))


def test_layers_match_umoci_unpack(tmp_path: Path) -> None:
    raws = [tar_bytes(entries) for entries in LAYERS]
    layout = tmp_path / "layout"
    _layout(layout, raws)
    bundle = tmp_path / "bundle"
    cmd = [str(UMOCI), "unpack", "--image", f"{layout}:t", str(bundle)]
    if os.geteuid() != 0:
        cmd.insert(2, "--rootless")
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    ours = tmp_path / "ours"
    ours.mkdir()
    for raw in raws:
        apply_layer(str(ours), io.BytesIO(raw))

    theirs = tree(bundle / "rootfs")
    mine = tree(ours)
    assert sorted(mine) == sorted(theirs)
    for path in theirs:
        assert mine[path] == theirs[path], path
    # Spot checks that the fixture exercises what it claims to.
    assert not (ours / "opt/app/lower").exists() and (ours / "opt/app/own").exists()
    assert (ours / "usr/bin/via-link").read_bytes() == b"through the bin symlink"
    assert not (ours / "usr/bin/tool").exists()
