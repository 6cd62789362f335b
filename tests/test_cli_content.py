"""`dist content …` and `dist images …` run as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ocidist.content.local import LocalStore
from ocidist.descriptor import OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST, Descriptor
from ocidist.digest import Digest
from ocidist.metadata import MetadataStore
from tests import dist_cli
from tests.dist_cli import json_doc, json_list, run_dist


def dist(
    root: Path, *args: str, stdin: bytes = b"", check: int | None = 0
) -> subprocess.CompletedProcess[bytes]:
    r = run_dist("--root", str(root), *args, input=stdin, timeout=60)
    if check is not None:
        assert r.returncode == check, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    return r


def one_error_line(r: subprocess.CompletedProcess[bytes], *words: str) -> None:
    """The error line and nothing else on stderr, saying each of ``words``."""
    line = dist_cli.one_error_line(r)
    assert r.stderr.decode().count("\n") == 1, r.stderr
    for w in words:
        assert w in line, line


def put(store: LocalStore, data: bytes, labels: dict[str, str] | None = None) -> Digest:
    dgst = Digest.from_bytes(data)
    w = store.writer(f"t-{dgst}")
    w.write(data)
    w.commit(len(data), dgst, labels)
    return dgst


def make_image(root: Path, name: str, tag: bytes = b"") -> dict[str, Digest]:
    """An index with one linux/amd64 manifest (config + layer), all in the store."""
    store = LocalStore(str(root))
    layer = b"layer-bytes" + tag
    config = json.dumps({"os": "linux", "architecture": "amd64", "tag": tag.decode()}).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": str(Digest.from_bytes(config)),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": OCI_LAYER_GZIP,
                    "digest": str(Digest.from_bytes(layer)),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": str(Digest.from_bytes(manifest)),
                    "size": len(manifest),
                    "platform": {"os": "linux", "architecture": "amd64"},
                }
            ],
        }
    ).encode()
    out = {
        k: put(store, v)
        for k, v in (("layer", layer), ("config", config), ("manifest", manifest), ("index", index))
    }
    with MetadataStore(str(root / "metadata.db")) as md:
        md.put_image(name, Descriptor(OCI_INDEX, out["index"], len(index)))
    return out


def test_ingest_get_ls(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    dgst = Digest.from_bytes(data)
    r = dist(
        tmp_path,
        "content",
        "ingest",
        "k",
        "--expected-digest",
        str(dgst),
        "--expected-size",
        str(len(data)),
        stdin=data,
    )
    assert r.stdout.decode().strip() == str(dgst)
    assert dist(tmp_path, "content", "get", str(dgst)).stdout == data
    rows = json_list(dist(tmp_path, "content", "ls", "--json").stdout)
    assert [(x["digest"], x["size"], x["labels"]) for x in rows] == [(str(dgst), len(data), {})]
    assert rows[0]["createdAt"].endswith("Z")
    human = dist(tmp_path, "content", "ls").stdout.decode()
    assert str(dgst) in human and "3.15 MB" in human
    # Again: already there, still prints the digest and succeeds.
    again = dist(tmp_path, "content", "ingest", "k2", "--expected-digest", str(dgst), stdin=data)
    assert again.stdout.decode().strip() == str(dgst)


def test_ingest_without_expected_prints_digest(tmp_path: Path) -> None:
    r = dist(tmp_path, "content", "ingest", "free", stdin=b"some bytes")
    assert r.stdout.decode().strip() == str(Digest.from_bytes(b"some bytes"))


def test_ingest_resumes_after_short_input(tmp_path: Path) -> None:
    data = os.urandom(2_000_000)
    dgst = Digest.from_bytes(data)
    args = (
        "content",
        "ingest",
        "res",
        "--expected-digest",
        str(dgst),
        "--expected-size",
        str(len(data)),
    )
    r = dist(tmp_path, *args, stdin=data[:1_500_000], check=1)
    one_error_line(r, "stream ended after 1500000 of 2000000 bytes")
    active = json_list(dist(tmp_path, "content", "active", "--json").stdout)
    assert [(a["key"], a["offset"], a["total"]) for a in active] == [("res", 1_500_000, len(data))]
    assert "res" in dist(tmp_path, "content", "active").stdout.decode()
    # Rerun with the whole stream: the held prefix is skipped, the rest appended.
    assert dist(tmp_path, *args, stdin=data).stdout.decode().strip() == str(dgst)
    assert json_list(dist(tmp_path, "content", "active", "--json").stdout) == []
    assert LocalStore(str(tmp_path)).verify(dgst)


def test_ingest_wrong_digest(tmp_path: Path) -> None:
    wrong = Digest.from_bytes(b"other")
    r = dist(
        tmp_path,
        "content",
        "ingest",
        "w",
        "--expected-digest",
        str(wrong),
        stdin=b"payload",
        check=1,
    )
    one_error_line(r, "digest mismatch")
    assert json_list(dist(tmp_path, "content", "ls", "--json").stdout) == []


def test_bad_and_unknown_digest(tmp_path: Path) -> None:
    for sub in (("get",), ("rm",), ("label",)):
        extra = ("a=b",) if sub == ("label",) else ()
        one_error_line(
            dist(tmp_path, "content", *sub, "sha256:xyz", *extra, check=2), "invalid digest"
        )
        unknown = str(Digest.from_bytes(b"nobody"))
        one_error_line(dist(tmp_path, "content", *sub, unknown, *extra, check=1), "not found")


def test_get_detects_corrupt_blob(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path))
    dgst = put(store, b"pristine")
    path = store.blob_path(dgst)
    os.chmod(path, 0o644)
    Path(path).write_bytes(b"tainted!")
    one_error_line(dist(tmp_path, "content", "get", str(dgst), check=1), "digest mismatch")
    r = dist(tmp_path, "content", "verify", check=1)
    assert r.stdout.decode().strip() == f"bad {dgst}"
    assert Path(path).exists()
    dist(tmp_path, "content", "verify", "--remove", check=1)
    assert not Path(path).exists()
    dist(tmp_path, "content", "verify")


def test_rm_and_label(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path))
    a, b = put(store, b"a"), put(store, b"b")
    r = dist(tmp_path, "content", "label", str(a), "x=1", "y=2")
    assert r.stdout.decode().split() == ["x=1", "y=2"]
    dist(tmp_path, "content", "label", str(a), "x=")
    assert dict(store.info(a).labels) == {"y": "2"}
    one_error_line(dist(tmp_path, "content", "label", str(a), "novalue", check=2), "KEY=VALUE")
    assert dist(tmp_path, "content", "rm", str(a), str(b)).stdout.decode().split() == [
        str(a),
        str(b),
    ]
    assert list(store.walk()) == []


def test_prune(tmp_path: Path) -> None:
    image = make_image(tmp_path, "example.com/app:1")
    store = LocalStore(str(tmp_path))
    loose = put(store, b"unreferenced")
    kept_by_label = put(store, b"held by a label")
    holder = put(store, b"holder", {"containerd.io/gc.ref.content.x": str(kept_by_label)})
    with MetadataStore(str(tmp_path / "metadata.db")) as md:
        md.put_image("example.com/holder:1", Descriptor("application/octet-stream", holder, 6))
    # An ingest in progress is not touched by a blob prune.
    w = store.writer("in-progress")
    w.write(b"partial")
    w.close()
    dry = dist(tmp_path, "content", "prune")
    assert dry.stdout.decode().split("\n")[0].startswith(f"would remove {loose}")
    assert "--force" in dry.stderr.decode()
    assert store.exists(loose)
    r = json_doc(dist(tmp_path, "content", "prune", "-f", "--json").stdout)
    assert [b["digest"] for b in r["blobs"]] == [str(loose)] and r["dryRun"] is False
    assert not store.exists(loose)
    for dgst in (*image.values(), kept_by_label, holder):
        assert store.exists(dgst)
    assert store.status("in-progress").offset == 7
    # Without the name, the whole image goes; --ingests clears the stale ingest.
    dist(tmp_path, "images", "rm", "example.com/app:1")
    dist(tmp_path, "content", "prune", "--force", "--ingests")
    assert not any(store.exists(d) for d in image.values())
    assert store.list_statuses() == []


def test_prune_min_age(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path))
    fresh = put(store, b"fresh")
    dist(tmp_path, "content", "prune", "-f", "--min-age", "1h")
    assert store.exists(fresh)


def test_images_ls_inspect_rm(tmp_path: Path) -> None:
    image = make_image(tmp_path, "example.com/app:1")
    make_image(tmp_path, "example.com/app:2", tag=b"2")
    rows = json_list(dist(tmp_path, "images", "ls", "--json").stdout)
    assert [r["name"] for r in rows] == ["example.com/app:1", "example.com/app:2"]
    assert rows[0]["digest"] == str(image["index"]) and rows[0]["platforms"] == ["linux/amd64"]
    assert rows[0]["mediaType"] == OCI_INDEX
    human = dist(tmp_path, "images", "ls").stdout.decode()
    assert str(image["index"]) in human and "linux/amd64" in human
    tree = json_doc(dist(tmp_path, "images", "inspect", "example.com/app:1", "--json").stdout)
    m = tree["tree"]["children"][0]
    assert m["digest"] == str(image["manifest"])
    assert [c["digest"] for c in m["children"]] == [str(image["config"]), str(image["layer"])]
    LocalStore(str(tmp_path)).delete(image["layer"])
    text = dist(tmp_path, "images", "inspect", "example.com/app:1").stdout.decode()
    assert "└── " in text and "(not in store)" in text and str(image["layer"]) in text
    one_error_line(dist(tmp_path, "images", "inspect", "nope", check=1), "not found")
    # Several names: a listing unless --force.
    listing = dist(tmp_path, "images", "rm", "example.com/app:1", "example.com/app:2")
    assert "would remove example.com/app:1" in listing.stdout.decode()
    assert len(json_list(dist(tmp_path, "images", "ls", "--json").stdout)) == 2
    dist(tmp_path, "images", "rm", "-f", "example.com/app:1", "example.com/app:2")
    assert json_list(dist(tmp_path, "images", "ls", "--json").stdout) == []
    one_error_line(dist(tmp_path, "images", "rm", "example.com/app:1", check=1), "not found")


def test_two_cli_ingests_same_key(tmp_path: Path) -> None:
    """Two `dist content ingest` processes on one key: one writes, the other
    waits for the lock and then finds the content committed."""
    data = os.urandom(1 << 20)
    dgst = Digest.from_bytes(data)
    cmd = [
        sys.executable,
        "-m",
        "ocidist",
        "--root",
        str(tmp_path),
        "content",
        "ingest",
        "shared",
        "--expected-digest",
        str(dgst),
        "--expected-size",
        str(len(data)),
    ]
    # The first one gets half its input, then stalls holding the lock.
    first = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert first.stdin is not None
    first.stdin.write(data[: len(data) // 2])
    first.stdin.flush()
    deadline = time.monotonic() + 20
    while not LocalStore(str(tmp_path)).list_statuses():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    second = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    time.sleep(0.5)
    assert second.poll() is None  # waiting for the lock
    first.stdin.write(data[len(data) // 2 :])
    first.stdin.close()
    assert first.wait(30) == 0
    out, err = second.communicate(data, timeout=30)
    assert second.returncode == 0, err
    assert out.decode().strip() == str(dgst) and b"already exists" in err
    assert LocalStore(str(tmp_path)).verify(dgst)


@pytest.mark.parametrize("cmd", [["content", "ls"], ["images", "ls"], ["content", "active"]])
def test_empty_root_lists(tmp_path: Path, cmd: list[str]) -> None:
    assert json_list(dist(tmp_path / "fresh", *cmd, "--json").stdout) == []
