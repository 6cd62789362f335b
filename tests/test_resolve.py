"""Resolve against the real registry, directly and through registry quirks."""

from __future__ import annotations

import pytest

from ocidist.descriptor import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from ocidist.errors import DigestMismatch, InvalidReference, NotFound
from ocidist.remotes.docker.resolver import DockerResolver
from tests.dist_cli import json_doc, one_error_line, run_dist
from tests.harness import (
    FaultProxy,
    Registry,
    docker_image,
    multiplatform_index,
    push_image,
    simple_image,
)


def test_resolve_tag_oci(registry: Registry, repo_name: str) -> None:
    img = simple_image()
    push_image(registry, repo_name, "v1", img)
    name, desc = DockerResolver().resolve(f"{registry.host}/{repo_name}:v1")
    assert name == f"{registry.host}/{repo_name}:v1"
    assert str(desc.digest) == img.digest
    assert desc.size == img.size
    assert desc.media_type == OCI_MANIFEST


def test_resolve_docker_schema2_and_index(registry: Registry, repo_name: str) -> None:
    d = docker_image()
    idx = multiplatform_index()
    push_image(registry, repo_name, "docker", d)
    push_image(registry, repo_name, "multi", idx)
    r = DockerResolver()
    _, desc = r.resolve(f"{registry.host}/{repo_name}:docker")
    assert (desc.media_type, str(desc.digest)) == (DOCKER_MANIFEST, d.digest)
    _, desc = r.resolve(f"{registry.host}/{repo_name}:multi")
    assert (desc.media_type, str(desc.digest), desc.size) == (OCI_INDEX, idx.digest, idx.size)


def test_resolve_by_digest_and_tag_plus_digest(registry: Registry, repo_name: str) -> None:
    img = simple_image()
    push_image(registry, repo_name, "v1", img)
    r = DockerResolver()
    name, desc = r.resolve(f"{registry.host}/{repo_name}@{img.digest}")
    assert name.endswith(f"@{img.digest}") and str(desc.digest) == img.digest
    name, desc = r.resolve(f"{registry.host}/{repo_name}:v1@{img.digest}")
    assert str(desc.digest) == img.digest


def test_digest_reference_falls_back_to_blobs_on_404(registry: Registry, repo_name: str) -> None:
    img = simple_image()
    push_image(registry, repo_name, "v1", img)
    config = img.manifest["config"]
    # Distribution answers manifests/<config digest> with 500, so go through a
    # proxy that turns it into the 404 the spec expects, and check the fallback.
    with FaultProxy(registry) as proxy:
        proxy.respond(404, f"/manifests/{config['digest']}", method="HEAD")
        _, desc = DockerResolver().resolve(f"{proxy.host}/{repo_name}@{config['digest']}")
        assert desc.size == config["size"]
        assert proxy.count("HEAD", f"/blobs/{config['digest']}") == 1


def test_not_found_and_invalid(registry: Registry, repo_name: str) -> None:
    with pytest.raises(NotFound, match="not found"):
        DockerResolver().resolve(f"{registry.host}/{repo_name}:nope")
    with pytest.raises(InvalidReference):
        DockerResolver().resolve("library/UPPER")


def test_head_405_falls_back_to_get(
    fault_proxy: FaultProxy, registry: Registry, repo_name: str
) -> None:
    img = simple_image()
    push_image(registry, repo_name, "v1", img)
    fault_proxy.head_405()
    _, desc = DockerResolver().resolve(f"{fault_proxy.host}/{repo_name}:v1")
    assert str(desc.digest) == img.digest
    assert fault_proxy.count("GET", "/manifests/v1") == 1


def test_missing_digest_header_is_computed(
    fault_proxy: FaultProxy, registry: Registry, repo_name: str
) -> None:
    img = simple_image()
    push_image(registry, repo_name, "v1", img)
    fault_proxy.strip_header("/manifests/")
    r = DockerResolver()
    _, desc = r.resolve(f"{fault_proxy.host}/{repo_name}:v1")
    assert str(desc.digest) == img.digest and desc.size == img.size
    # resolve_manifest hands back the body it hashed: one GET, nothing to fetch after.
    before = fault_proxy.count("GET", "/manifests/")
    _, again, data = r.resolve_manifest(f"{fault_proxy.host}/{repo_name}:v1")
    assert again == desc and data == img.raw
    assert fault_proxy.count("GET", "/manifests/") == before + 1


def test_digest_reference_body_must_match(
    fault_proxy: FaultProxy, registry: Registry, repo_name: str
) -> None:
    img = simple_image()
    push_image(registry, repo_name, "v1", img)
    fault_proxy.head_405()
    fault_proxy.flip_byte(10, "/manifests/")
    with pytest.raises(DigestMismatch, match="digest mismatch"):
        DockerResolver().resolve(f"{fault_proxy.host}/{repo_name}@{img.digest}")


def test_cli_resolve_human_and_json(registry: Registry, repo_name: str) -> None:
    img = simple_image()
    push_image(registry, repo_name, "v1", img)
    ref = f"{registry.host}/{repo_name}:v1"
    out = run_dist("resolve", ref)
    assert out.returncode == 0, out.stderr
    assert img.digest in out.stdout.decode()
    # Global options go before or after the command.
    for args in (("--json", "resolve", ref), ("resolve", "--json", ref)):
        out = run_dist(*args)
        assert out.returncode == 0, out.stderr
        doc = json_doc(out.stdout)
        assert doc == {
            "name": ref,
            "mediaType": OCI_MANIFEST,
            "digest": img.digest,
            "size": img.size,
        }


def test_cli_resolve_errors(registry: Registry, repo_name: str) -> None:
    out = run_dist("resolve", f"{registry.host}/{repo_name}:missing")
    assert out.returncode == 1
    assert "not found" in one_error_line(out)
    out = run_dist("resolve", "Bad/Ref")
    assert out.returncode == 2
    assert "lowercase" in one_error_line(out)
    out = run_dist("--timeout", "bogus", "resolve", "x")
    assert out.returncode == 2


def test_cli_connection_refused_says_so() -> None:
    from tests.harness.net import refused_port

    with refused_port() as port:
        out = run_dist("--timeout", "20s", "resolve", f"127.0.0.1:{port}/a/b:c")
    assert out.returncode == 1
    line = one_error_line(out)
    assert "connection refused" in line and "gave up after" in line


def test_usage_errors_are_one_line_exit_2() -> None:
    for args in (("--bogus",), ("frob",), ("fetch",), ("unpack", "--concurrency", "-1", "a", "b")):
        out = run_dist(*args)
        assert out.returncode == 2, args
        line = one_error_line(out)
        assert "--help" in line, line
