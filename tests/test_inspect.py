"""`dist inspect`: one step from a reference (or a layout, an archive, a stored
name) to what the image is, checked against skopeo's view of the same bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.dist_cli import one_error_line
from tests.harness import (
    FaultProxy,
    Registry,
    build_image,
    inspect_raw,
    multiplatform_index,
    push_image,
    run_skopeo,
    simple_image,
    write_layout,
)
from tests.test_layout import dist, ok

CONFIG = {
    "config": {
        "Env": ["A=1", "EVIL=\x1b[31mred"],
        "Entrypoint": ["/bin/sh"],
        "Cmd": ["-c", "true"],
        "Labels": {"org.example.team": "infra", "x\x07": "bell"},
        "WorkingDir": "/srv",
    }
}


def test_index_lists_platforms_with_digests_and_sizes(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    idx = multiplatform_index(tag=repo_name)
    push_image(registry, repo_name, "v1", idx)
    ref = f"{registry.host}/{repo_name}:v1"
    doc = json.loads(ok(dist(tmp_path, "--json", "inspect", ref)).stdout)
    assert (doc["name"], doc["digest"], doc["size"]) == (ref, idx.digest, idx.size)
    got = {m["digest"]: m for m in doc["manifests"]}
    for child in idx.children:
        m = got[child.digest]
        assert m["size"] == child.size and m["platform"] == child.platform
        blobs = sum(b.size for b in child.blobs().values())
        assert m["imageSize"] == child.size + blobs
    human = ok(dist(tmp_path, "inspect", ref)).stdout.decode()
    for child in idx.children:
        assert child.digest in human
    assert "linux/arm/v7" in human and "PLATFORM" in human


def test_image_facts_raw_and_config_bytes(
    tmp_path: Path, registry: Registry, repo_name: str, skopeo: str
) -> None:
    image = build_image([{"a": b"1"}, {"b": b"22"}], config=CONFIG)
    push_image(registry, repo_name, "v1", image)
    ref = f"{registry.host}/{repo_name}:v1"
    doc = json.loads(ok(dist(tmp_path, "--json", "inspect", ref)).stdout)
    assert doc["digest"] == image.digest and doc["mediaType"] == image.media_type
    assert doc["platform"] == {"architecture": "amd64", "os": "linux"}
    assert doc["created"] == "2020-01-01T00:00:00Z"
    assert doc["entrypoint"] == ["/bin/sh"] and doc["cmd"] == ["-c", "true"]
    assert doc["env"] == CONFIG["config"]["Env"] and doc["labels"] == CONFIG["config"]["Labels"]
    assert doc["workingDir"] == "/srv"
    assert [layer["digest"] for layer in doc["layers"]] == [x.blob.digest for x in image.layers]
    assert doc["layersSize"] == sum(x.blob.size for x in image.layers)
    # --raw and --config are the exact bytes, as skopeo sees them.
    raw = ok(dist(tmp_path, "inspect", "--raw", ref)).stdout
    assert raw == image.raw == inspect_raw(registry, f"{repo_name}:v1")
    config = ok(dist(tmp_path, "inspect", "--config", ref)).stdout
    skopeo_config = run_skopeo(
        "inspect", "--tls-verify=false", "--config", "--raw", f"docker://{ref}"
    ).stdout
    assert image.config is not None and config == image.config.data == skopeo_config
    # People see escaped control characters, never raw terminal escapes.
    human = ok(dist(tmp_path, "inspect", ref)).stdout.decode()
    assert "\x1b" not in human and "\x07" not in human
    assert "EVIL=\\x1b[31mred" in human and "org.example.team=infra" in human
    assert '["/bin/sh"]' in human and "total: 2 layers" in human


def test_platform_of_an_index(tmp_path: Path, registry: Registry, repo_name: str) -> None:
    idx = multiplatform_index(tag=repo_name)
    push_image(registry, repo_name, "v1", idx)
    ref = f"{registry.host}/{repo_name}:v1"
    arm = idx.child("linux/arm64/v8")
    doc = json.loads(
        ok(dist(tmp_path, "--json", "inspect", "--platform", "linux/arm64", ref)).stdout
    )
    assert doc["digest"] == arm.digest and doc["index"]["digest"] == idx.digest
    assert doc["platform"]["architecture"] == "arm64"
    raw = ok(dist(tmp_path, "inspect", "--raw", "--platform", "linux/arm64", ref)).stdout
    assert raw == arm.raw
    assert ok(dist(tmp_path, "inspect", "--raw", ref)).stdout == idx.raw
    proc = dist(tmp_path, "inspect", "--platform", "windows/s390x", ref)
    assert proc.returncode == 1 and "no manifest for" in one_error_line(proc)


@pytest.mark.slow
def test_every_transport_gives_the_same_answer(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    image = build_image([{"a": b"1"}], config=CONFIG)
    push_image(registry, repo_name, "v1", image)
    ref = f"{registry.host}/{repo_name}:v1"
    root = tmp_path / "root"
    ok(dist(root, "pull", ref))
    ok(dist(root, "export", ref, str(tmp_path / "oci.tar")))
    ok(dist(root, "export", "--format", "docker", ref, str(tmp_path / "docker.tar")))
    layout = write_layout(tmp_path / "layout", image, "v1")
    sources = {
        "registry": ref,
        "docker://": f"docker://{ref}",
        "store": f"store:{ref}",
        "oci": f"oci:{layout}:v1",
        "oci-untagged": f"oci:{layout}",
        "oci-archive": f"oci-archive:{tmp_path / 'oci.tar'}:v1",
        "docker-archive": f"docker-archive:{tmp_path / 'docker.tar'}",
        "docker-archive-by-name": f"docker-archive:{tmp_path / 'docker.tar'}:{ref}",
        "docker-archive-by-index": f"docker-archive:{tmp_path / 'docker.tar'}:@0",
    }
    assert image.config is not None
    for what, source in sources.items():
        doc = json.loads(ok(dist(root, "--json", "inspect", source)).stdout)
        assert doc["config"]["digest"] == image.config.digest, what
        assert doc["entrypoint"] == ["/bin/sh"] and doc["labels"], what
        config = ok(dist(root, "inspect", "--config", source)).stdout
        assert config == image.config.data, what
        if not what.startswith("docker-archive"):  # the one format without a manifest
            assert ok(dist(root, "inspect", "--raw", source)).stdout == image.raw, what


def test_bad_sources_are_one_line(tmp_path: Path, registry: Registry, repo_name: str) -> None:
    (tmp_path / "notar").write_bytes(b"\x01" * 2048)
    for source, words in (
        (f"oci:{tmp_path / 'missing'}", "not found"),
        (f"oci-archive:{tmp_path / 'notar'}", "not a tar"),
        (f"docker-archive:{tmp_path / 'notar'}", "not a tar"),
        ("store:example.com/none:1", "not found"),
        (f"{registry.host}/{repo_name}:nope", "not found"),
    ):
        proc = dist(tmp_path / "root", "inspect", source)
        assert proc.returncode != 0 and words in one_error_line(proc), (source, proc.stderr)


def test_an_index_repeating_one_manifest_reads_it_once(
    tmp_path: Path, registry: Registry, fault_proxy: FaultProxy, repo_name: str
) -> None:
    """An index may list the same manifest many times (up to the walker's
    10,000 entries of a 4 MiB index): its size is read once, not once per entry."""
    image = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", image)
    entry = {"mediaType": image.media_type, "digest": image.digest, "size": image.size,
             "platform": {"os": "linux", "architecture": "amd64"}}  # fmt: skip
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [entry] * 300}  # fmt: skip
    path = tmp_path / "index.json"
    path.write_text(json.dumps(index))
    ok(dist(tmp_path / "root", "push-object", f"{registry.host}/{repo_name}:many", str(path),
            "--media-type", "application/vnd.oci.image.index.v1+json"))  # fmt: skip
    doc = json.loads(
        ok(dist(tmp_path, "--json", "inspect", f"{fault_proxy.host}/{repo_name}:many")).stdout
    )
    assert len(doc["manifests"]) == 300
    assert {m["imageSize"] for m in doc["manifests"]} == {
        image.size + sum(b.size for b in image.blobs().values())
    }
    reads = [e for e in fault_proxy.log if e.method == "GET" and image.digest in e.path]
    assert len(reads) == 1, len(reads)
