"""`dist artifact push|pull`: OCI 1.1 artifacts against the real registry, skopeo
and oras-py (both directions), with hostile titles, resumes and corruption."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.dist_cli import one_error_line
from tests.harness import FaultProxy, Registry, inspect_raw
from tests.harness.fstree import tree
from tests.test_layout import dist, ok

TITLE = "org.opencontainers.image.title"
EMPTY = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """Files to push: a small model, a directory with a link, a config."""
    (tmp_path / "model.bin").write_bytes(os.urandom(200_000))
    d = tmp_path / "assets"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text("a\n")
    (d / "sub" / "b.txt").write_text("b\n")
    os.symlink("a.txt", d / "link")
    return tmp_path


def dist_in(cwd: Path, root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return dist(root, *args)
    finally:
        os.chdir(old)


def test_push_manifest_shape_and_pull_back(
    work: Path, registry: Registry, repo_name: str, skopeo: str
) -> None:
    ref = f"{registry.host}/{repo_name}:v1"
    root = work / "root"
    proc = dist_in(
        work, root, "--json", "artifact", "push", ref, "model.bin:application/x-model", "assets",
        "--artifact-type", "application/vnd.example.model.v1", "-a", "org.example=1",
    )  # fmt: skip
    done = json.loads(ok(proc).stdout.decode().splitlines()[-1])
    raw = inspect_raw(registry, f"{repo_name}:v1")
    assert sha(raw) == done["digest"]  # skopeo sees exactly what was pushed
    m = json.loads(raw)
    assert m["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert m["artifactType"] == "application/vnd.example.model.v1"
    assert m["config"] == {
        "mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY, "size": 2
    }  # fmt: skip
    assert m["annotations"] == {"org.example": "1"}
    model, assets = m["layers"]
    assert model["mediaType"] == "application/x-model"
    assert model["digest"] == sha((work / "model.bin").read_bytes())
    assert model["annotations"] == {TITLE: "model.bin"}
    assert assets["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert assets["annotations"][TITLE] == "assets"
    assert assets["annotations"]["io.deis.oras.content.unpack"] == "true"
    # `dist inspect --raw` gives the same bytes.
    assert ok(dist(root, "inspect", "--raw", ref)).stdout == raw
    out = work / "out"
    ok(dist(root, "artifact", "pull", ref, str(out)))
    assert (out / "model.bin").read_bytes() == (work / "model.bin").read_bytes()
    assert tree(out / "assets") == tree(work / "assets")
    assert not [p for p in out.iterdir() if p.name.startswith(".dist-partial")]
    # Only one media type: the directory is left out.
    only = work / "only"
    ok(dist(root, "artifact", "pull", "--media-type", "application/x-model", ref, str(only)))
    assert sorted(p.name for p in only.iterdir()) == ["model.bin"]


def test_oras_py_pulls_what_dist_pushed(work: Path, registry: Registry, repo_name: str) -> None:
    oras_client = pytest.importorskip("oras.client")
    ref = f"{registry.host}/{repo_name}:v1"
    ok(dist_in(work, work / "root", "artifact", "push", ref, "model.bin", "assets"))
    client = oras_client.OrasClient(hostname=registry.host, insecure=True)
    out = work / "oras-out"
    client.pull(target=ref, outdir=str(out))
    assert (out / "model.bin").read_bytes() == (work / "model.bin").read_bytes()
    assert tree(out / "assets") == tree(work / "assets")


def test_dist_pulls_what_oras_py_pushed(work: Path, registry: Registry, repo_name: str) -> None:
    oras_client = pytest.importorskip("oras.client")
    ref = f"{registry.host}/{repo_name}:v1"
    (work / "notes.txt").write_text("hello\n")
    client = oras_client.OrasClient(hostname=registry.host, insecure=True)
    old = os.getcwd()
    os.chdir(work)
    try:
        client.push(target=ref, files=["model.bin", "notes.txt:text/plain"])
    finally:
        os.chdir(old)
    out = work / "out"
    ok(dist(work / "root", "artifact", "pull", ref, str(out)))
    assert (out / "model.bin").read_bytes() == (work / "model.bin").read_bytes()
    assert (out / "notes.txt").read_text() == "hello\n"


def _push_manifest(root: Path, registry: Registry, repo: str, layers: list[dict[str, object]],
                   blob: bytes) -> str:  # fmt: skip
    """A hand-made artifact whose every layer is ``blob``, pushed with dist push-object."""
    path = root.parent / "blob"
    path.write_bytes(blob)
    ok(dist(root, "push-object", f"{registry.host}/{repo}", str(path)))
    empty = root.parent / "empty"
    empty.write_bytes(b"{}")
    ok(dist(root, "push-object", f"{registry.host}/{repo}", str(empty)))
    doc = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/x-test",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY, "size": 2},
        "layers": layers,
    }
    mpath = root.parent / "manifest.json"
    mpath.write_bytes(json.dumps(doc).encode())
    ref = f"{registry.host}/{repo}:evil"
    ok(dist(root, "push-object", ref, str(mpath),
            "--media-type", "application/vnd.oci.image.manifest.v1+json"))  # fmt: skip
    return ref


@pytest.mark.parametrize(
    "title",
    ["../escape.txt", "/etc/evil", "a/../../escape.txt", "", "bad\x1b[2Jname", "link/x"],
    ids=["dotdot", "absolute", "nested-dotdot", "empty", "control", "through-link"],
)
def test_hostile_titles_are_refused(
    tmp_path: Path, registry: Registry, repo_name: str, title: str
) -> None:
    blob = b"payload\n"
    layer = {"mediaType": "text/plain", "digest": sha(blob), "size": len(blob),
             "annotations": {TITLE: title}}  # fmt: skip
    root = tmp_path / "root"
    ref = _push_manifest(root, registry, repo_name, [layer], blob)
    dest = tmp_path / "dest"
    dest.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, dest / "link")
    proc = dist(root, "artifact", "pull", ref, str(dest))
    if title == "":
        ok(proc)  # untitled layers are skipped, as oras does
    else:
        assert proc.returncode == 1, proc.stderr
        assert "layer title" in one_error_line(proc)
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "escape.txt").exists()
    assert sorted(p.name for p in dest.iterdir()) == ["link"]


def test_corrupt_blob_is_refused_and_never_named(
    tmp_path: Path, registry: Registry, fault_proxy: FaultProxy, repo_name: str
) -> None:
    data = os.urandom(300_000)
    (tmp_path / "f.bin").write_bytes(data)
    root = tmp_path / "root"
    ok(dist_in(tmp_path, root, "artifact", "push", f"{registry.host}/{repo_name}:v1", "f.bin"))
    fault_proxy.flip_byte(1000, path=f"/blobs/{sha(data)}", times=None)
    out = tmp_path / "out"
    proc = dist(root, "artifact", "pull", f"{fault_proxy.host}/{repo_name}:v1", str(out))
    assert proc.returncode == 1 and "digest mismatch" in one_error_line(proc)
    assert not (out / "f.bin").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".dist-partial")]


def test_pull_resumes_from_what_an_earlier_pull_left(
    tmp_path: Path, registry: Registry, fault_proxy: FaultProxy, repo_name: str
) -> None:
    data = os.urandom(2_000_000)
    (tmp_path / "f.bin").write_bytes(data)
    root = tmp_path / "root"
    ok(dist_in(tmp_path, root, "artifact", "push", f"{registry.host}/{repo_name}:v1", "f.bin"))
    out = tmp_path / "out"
    out.mkdir()
    # What a killed pull leaves: the first 1.5 MB under the partial name.
    (out / f".dist-partial-{sha(data)[7:]}").write_bytes(data[:1_500_000])
    ok(dist(root, "artifact", "pull", f"{fault_proxy.host}/{repo_name}:v1", str(out)))
    assert (out / "f.bin").read_bytes() == data
    sent = sum(n for p, n in fault_proxy.bytes_sent.items() if "/blobs/" in p)
    assert sent <= 600_000, sent  # only the rest came over the wire


def test_pull_survives_a_dropped_connection(
    tmp_path: Path, registry: Registry, fault_proxy: FaultProxy, repo_name: str
) -> None:
    data = os.urandom(3_000_000)
    (tmp_path / "f.bin").write_bytes(data)
    root = tmp_path / "root"
    ok(dist_in(tmp_path, root, "artifact", "push", f"{registry.host}/{repo_name}:v1", "f.bin"))
    fault_proxy.drop(path=f"/blobs/{sha(data)}", after_bytes=1_000_000)
    out = tmp_path / "out"
    ok(dist(root, "artifact", "pull", f"{fault_proxy.host}/{repo_name}:v1", str(out)))
    assert (out / "f.bin").read_bytes() == data
    ranges = [e.header("Range") for e in fault_proxy.log if "/blobs/" in e.path]
    assert any(r and r.startswith("bytes=1000000-") for r in ranges), ranges
