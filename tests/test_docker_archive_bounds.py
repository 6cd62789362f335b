"""A hostile `docker save` archive cannot make dist hold it in memory.

A gzip'd archive is small on the wire and big once inflated: configs (up to
8 MiB each), member names (up to 1 MiB each in a PAX header) and layer lists
are what a reader might keep. dist keeps none of them whole: configs are
read again from the archive when wanted, names longer than any path are not
indexed, and the layers of all images together are capped.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from tests.dist_cli import one_error_line, run_dist_peak
from tests.test_layout import dist, ok

MiB = 1 << 20
# Peak-RSS bounds: with the other bounded tests on one xdist worker.
pytestmark = pytest.mark.xdist_group("timing")


def run_rss(root: Path, *args: str) -> tuple[int, str, int]:
    """Run dist; (exit code, stderr, its own peak RSS in bytes)."""
    return run_dist_peak("--root", str(root), *args, env={"TMPDIR": str(root.parent)})


def add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))
    # A writing TarFile keeps every header too: with 1 MiB names this
    # process would grow by hundreds of MiB.
    tf.members.clear()  # type: ignore[attr-defined]


def config(n: int, pad: int, diff_ids: list[str]) -> bytes:
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"n": str(n), "pad": "a" * pad}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    return json.dumps(doc).encode()


def test_big_configs_are_not_held_in_memory(tmp_path: Path) -> None:
    archive = tmp_path / "configs.tar.gz"
    entries = []
    with tarfile.open(archive, "w:gz", compresslevel=1) as tf:
        for n in range(40):  # 40 distinct configs of 7 MiB: 280 MiB in all
            data = config(n, 7 * MiB, [])
            name = hashlib.sha256(data).hexdigest() + ".json"
            add(tf, name, data)
            entries.append({"Config": name, "RepoTags": [f"ex.io/c:{n}"], "Layers": []})
        add(tf, "manifest.json", json.dumps(entries).encode())
    code, err, rss = run_rss(tmp_path / "root", "inspect", f"docker-archive:{archive}:@39")
    assert code == 0, err
    assert rss < 150 * MiB, f"peak RSS {rss >> 20} MiB"


def test_long_member_names_are_not_indexed(tmp_path: Path) -> None:
    archive = tmp_path / "names.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1, format=tarfile.PAX_FORMAT) as tf:
        for n in range(150):  # 150 names of 1 MiB (less a little): 150 MiB of names
            add(tf, f"{n}/" + "n" * (MiB - 8192), b"")
        add(tf, "manifest.json", b"[]")
    code, err, rss = run_rss(tmp_path / "root", "inspect", f"docker-archive:{archive}")
    assert code == 1 and "not a list of images" in err, err
    assert rss < 100 * MiB, f"peak RSS {rss >> 20} MiB"


def test_the_layers_of_all_images_are_capped(tmp_path: Path) -> None:
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as ltf:
        add(ltf, "f", b"f")
    diff_id = "sha256:" + hashlib.sha256(layer.getvalue()).hexdigest()
    cfg = config(0, 0, [diff_id] * 600)
    cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
    archive = tmp_path / "layers.tar"
    with tarfile.open(archive, "w") as tf:
        add(tf, "l.tar", layer.getvalue())
        add(tf, cfg_name, cfg)
        # 200 images of 600 layers each, all the same member.
        entry = {"Config": cfg_name, "RepoTags": [], "Layers": ["l.tar"] * 600}
        add(tf, "manifest.json", json.dumps([entry] * 200).encode())
    proc = dist(tmp_path / "root", "inspect", f"docker-archive:{archive}:@0")
    assert proc.returncode == 1
    assert "layers in all" in one_error_line(proc)
    # A real archive, far below the cap, still reads.
    with tarfile.open(tmp_path / "ok.tar", "w") as tf:
        add(tf, "l.tar", layer.getvalue())
        add(tf, cfg_name, cfg)
        add(tf, "manifest.json", json.dumps([entry] * 3).encode())
    ok(dist(tmp_path / "root", "inspect", f"docker-archive:{tmp_path / 'ok.tar'}:@2"))


def test_the_names_an_archive_index_keeps_are_capped(tmp_path: Path) -> None:
    from ocidist.errors import InvalidContent
    from ocidist.tarindex import MAX_NAME_BYTES, TarIndex

    archive = tmp_path / "many.tar.gz"
    count = MAX_NAME_BYTES // 4000 + 100
    with tarfile.open(archive, "w:gz", compresslevel=1, format=tarfile.PAX_FORMAT) as tf:
        for n in range(count):  # names of 4000 bytes, each under the per-name limit
            add(tf, f"{n:08d}" + "n" * 3992, b"")
    try:
        TarIndex(str(archive)).close()
    except InvalidContent as e:
        assert "names" in str(e)
    else:
        raise AssertionError("an index of more than MAX_NAME_BYTES of names was built")
