"""Mirrors from hosts.toml against real registries: a Distribution registry
in proxy mode (pull-through cache) in front of the session registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import RegistryFactory
from tests.dist_cli import one_error_line, run_dist
from tests.harness import Registry, push_image, simple_image
from tests.harness.authfixtures import docker_config
from tests.harness.net import refused_port

__all__ = ["docker_config"]


def hosts_dir(tmp: Path, upstream: Registry, *mirrors: tuple[str, list[str]]) -> str:
    d = tmp / "certs.d"
    (d / upstream.host).mkdir(parents=True)
    text = f'server = "http://{upstream.host}"\n'
    for host, caps in mirrors:
        text += f'\n[host."http://{host}"]\n  capabilities = {json.dumps(caps)}\n'
    (d / upstream.host / "hosts.toml").write_text(text)
    return str(d)


def manifest_requests(reg: Registry, repo: str, method: str | None = None) -> list[str]:
    return [
        f"{e.method} {e.path}"
        for e in reg.access_log()
        if f"/v2/{repo}/" in e.path and (method is None or e.method == method)
    ]


@pytest.fixture
def pushed(registry: Registry, repo_name: str, docker_config: Path) -> str:
    img = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", img)
    return img.digest


def test_pull_through_cache_mirror_used_first_then_upstream_when_down(
    registry: Registry,
    fresh_registry: RegistryFactory,
    repo_name: str,
    pushed: str,
    tmp_path: Path,
) -> None:
    mirror = fresh_registry(proxy_remote_url=registry.url)
    d = hosts_dir(tmp_path, registry, (mirror.host, ["pull", "resolve"]))
    ref = f"{registry.host}/{repo_name}:v1"
    upstream_before = len(manifest_requests(registry, repo_name))

    proc = run_dist("--hosts-dir", d, "resolve", "--json", ref)
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout)["digest"] == pushed
    proc = run_dist("--hosts-dir", d, "fetch-object", ref, pushed)
    assert proc.returncode == 0, proc.stderr.decode()
    assert manifest_requests(mirror, repo_name, "HEAD")
    assert manifest_requests(mirror, repo_name, "GET")
    # The upstream saw only what the proxy asked to fill its cache: no more
    # requests for this repository than the mirror itself served.
    upstream_during = manifest_requests(registry, repo_name)[upstream_before:]
    assert len(upstream_during) <= len(manifest_requests(mirror, repo_name))

    mirror.stop()
    upstream_before = len(manifest_requests(registry, repo_name))
    proc = run_dist("--hosts-dir", d, "--timeout", "60s", "resolve", "--json", ref)
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout)["digest"] == pushed
    assert len(manifest_requests(registry, repo_name)) > upstream_before


def test_mirror_without_the_image_falls_through_to_upstream(
    registry: Registry, fresh_registry: RegistryFactory, repo_name: str, pushed: str, tmp_path: Path
) -> None:
    empty = fresh_registry()  # a plain registry: 404 for everything
    d = hosts_dir(tmp_path, registry, (empty.host, ["pull", "resolve"]))
    ref = f"{registry.host}/{repo_name}:v1"
    proc = run_dist("--hosts-dir", d, "fetch-object", ref, pushed)
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout)["schemaVersion"] == 2
    assert manifest_requests(empty, repo_name)  # asked first
    assert manifest_requests(registry, repo_name, "GET")


def test_error_names_every_host_tried_and_why(
    registry: Registry, fresh_registry: RegistryFactory, repo_name: str, pushed: str, tmp_path: Path
) -> None:
    empty = fresh_registry()
    with refused_port() as port:
        down_host = f"127.0.0.1:{port}"
        d = hosts_dir(
            tmp_path, registry, (down_host, ["pull", "resolve"]), (empty.host, ["pull", "resolve"])
        )
        proc = run_dist("--hosts-dir", d, "resolve", f"{registry.host}/{repo_name}:no-such-tag")
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "tried 3 hosts" in line, line
    assert f"{down_host}: connection refused" in line, line
    assert f"{empty.host}: not found" in line, line
    assert f"{registry.host}: not found" in line, line


def test_fetch_honours_capabilities(
    registry: Registry, fresh_registry: RegistryFactory, repo_name: str, pushed: str, tmp_path: Path
) -> None:
    resolve_only = fresh_registry(proxy_remote_url=registry.url)
    d = hosts_dir(tmp_path, registry, (resolve_only.host, ["resolve"]))
    ref = f"{registry.host}/{repo_name}:v1"
    proc = run_dist("--hosts-dir", d, "resolve", ref)
    assert proc.returncode == 0, proc.stderr.decode()
    assert manifest_requests(resolve_only, repo_name, "HEAD")
    proc = run_dist("--hosts-dir", d, "fetch-object", ref, pushed)
    assert proc.returncode == 0, proc.stderr.decode()
    assert not manifest_requests(resolve_only, repo_name, "GET")
    assert manifest_requests(registry, repo_name, "GET")
