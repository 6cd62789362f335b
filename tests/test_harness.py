"""The harness itself, checked against the real programs it drives."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import socket
import ssl
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import urllib3
import zstandard

from tests.conftest import RegistryFactory
from tests.harness import (
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    BuiltImage,
    Drop,
    FaultProxy,
    Opaque,
    Registry,
    TokenAuth,
    Whiteout,
    build_image,
    docker_image,
    http_push,
    inspect_digest,
    large_image,
    many_small_layers,
    multiplatform_index,
    push_image,
    repo_name_for,
    sha256,
    simple_image,
    write_layout,
)
from tests.harness.authfixtures import bcrypt_hash
from tests.harness.certs import CA
from tests.harness.registry import build_config

# -- registry ---------------------------------------------------------------


def _get(host: str, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(host, timeout=10)
    conn.request("GET", path, headers=headers or {})
    return conn.getresponse()


def test_registry_answers_v2_and_logs_access(registry: Registry) -> None:
    resp = _get(registry.host, "/v2/")
    assert resp.status == 200
    assert resp.getheader("Docker-Distribution-Api-Version") == "registry/2.0"
    resp.read()
    assert registry.host.startswith("127.0.0.1:") and registry.url == f"http://{registry.host}"
    assert any(e.method == "GET" and e.path == "/v2/" for e in registry.access_log())


def test_config_carries_optional_modes(tmp_path: Path) -> None:
    token = TokenAuth("https://127.0.0.1:1/token", "svc", "iss", tmp_path / "ca.pem")
    cfg = build_config(
        root=tmp_path,
        addr="127.0.0.1:1",
        secret="s",
        tls_cert=tmp_path / "c.pem",
        tls_key=tmp_path / "k.pem",
        token=token,
        proxy_remote_url="http://127.0.0.1:2",
        extra={"http": {"headers": {"X-Test": ["1"]}}},
    )
    assert cfg["http"]["tls"] == {
        "certificate": str(tmp_path / "c.pem"),
        "key": str(tmp_path / "k.pem"),
    }
    assert cfg["auth"]["token"]["service"] == "svc"
    assert cfg["proxy"] == {"remoteurl": "http://127.0.0.1:2"}
    assert cfg["http"]["headers"] == {"X-Test": ["1"]} and cfg["http"]["addr"] == "127.0.0.1:1"
    assert cfg["storage"]["delete"] == {"enabled": True}
    with pytest.raises(ValueError):
        build_config(root=tmp_path, addr="a", secret="s", token=token, htpasswd=tmp_path)


def test_restart_keeps_port_and_content(fresh_registry: RegistryFactory, repo_name: str) -> None:
    reg = fresh_registry()
    image = simple_image(tag="restart")
    push_image(reg, repo_name, "v1", image, method="http")
    host, pid = reg.host, reg.pid
    reg.restart()
    assert reg.host == host and reg.pid != pid
    assert inspect_digest(reg, f"{repo_name}:v1") == image.digest
    reg.stop()
    assert not reg.running()
    with pytest.raises(OSError):
        _get(host, "/v2/")


def test_htpasswd_tls_mode(fresh_registry: RegistryFactory, tmp_path: Path, repo_name: str) -> None:
    ca = CA(tmp_path / "pki")
    server = ca.server("registry")
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"alice:{bcrypt_hash('s3cret')}\n")
    reg = fresh_registry(htpasswd=htpasswd, tls_cert=server.cert_path, tls_key=server.key_path)
    assert reg.url.startswith("https://")
    ctx = ssl.create_default_context(cafile=str(ca.cert_path))
    conn = http.client.HTTPSConnection(reg.host, context=ctx, timeout=10)
    conn.request("GET", "/v2/")
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 401 and "Basic" in (resp.getheader("WWW-Authenticate") or "")
    image = simple_image(tag="auth")
    push_image(reg, repo_name, "v1", image, creds="alice:s3cret")
    assert inspect_digest(reg, f"{repo_name}:v1", creds="alice:s3cret") == image.digest
    with pytest.raises(RuntimeError, match=r"unauthorized|authentication required"):
        inspect_digest(reg, f"{repo_name}:v1", creds="alice:wrong")


def test_pull_through_proxy_mode(
    registry: Registry, fresh_registry: RegistryFactory, repo_name: str
) -> None:
    image = simple_image(tag="mirror")
    push_image(registry, repo_name, "v1", image)
    mirror = fresh_registry(proxy_remote_url=registry.url)
    assert inspect_digest(mirror, f"{repo_name}:v1") == image.digest


# -- images -----------------------------------------------------------------


def test_images_are_deterministic_and_consistent() -> None:
    a, b = simple_image(), simple_image()
    assert a.raw == b.raw and a.digest == b.digest
    assert simple_image(tag="other").digest != a.digest
    assert a.config is not None
    cfg = json.loads(a.config.read())
    assert cfg["architecture"] == "amd64" and cfg["os"] == "linux"
    for layer, diff_id in zip(a.layers, cfg["rootfs"]["diff_ids"], strict=True):
        data = layer.blob.read()
        assert data[4:8] == b"\0\0\0\0", "gzip mtime must be 0 for reproducible bytes"
        assert sha256(gzip.decompress(data)) == diff_id == layer.diff_id
        assert sha256(data) == layer.blob.digest
    descs = a.manifest["layers"]
    assert [d["digest"] for d in descs] == [x.blob.digest for x in a.layers]


def test_tar_entries_and_markers() -> None:
    image = build_image([[("d/new", b"x"), ("d", Opaque()), ("gone", Whiteout())]])
    tar_data = image.layers[0].tar
    assert tar_data is not None
    with tarfile.open(fileobj=io.BytesIO(tar_data)) as tar:
        names = [m.name for m in tar.getmembers()]
        # Sequence specs keep their order: the opaque marker after the entry.
        assert names == ["d/new", "d/.wh..wh..opq", ".wh.gone"]
        assert all(m.mtime == 1577836800 and m.uid == 0 for m in tar.getmembers())


def test_zstd_uncompressed_and_docker_layer_types() -> None:
    z = build_image([{"a": b"zz" * 1000}], compression="zstd")
    plain = build_image([{"a": b"zz" * 1000}], compression="none")
    assert z.layers[0].blob.media_type.endswith("tar+zstd")
    assert plain.layers[0].blob.media_type == "application/vnd.oci.image.layer.v1.tar"
    assert zstandard.ZstdDecompressor().decompress(z.layers[0].blob.read()) == plain.layers[0].tar
    assert z.layers[0].diff_id == plain.layers[0].diff_id == plain.layers[0].blob.digest
    d = docker_image()
    assert (
        d.manifest["layers"][0]["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar.gzip"
    )
    with pytest.raises(ValueError):
        build_image([{"a": b"1"}], fmt="docker", compression="zstd")


def test_index_shares_one_layer() -> None:
    idx = multiplatform_index()
    assert idx.media_type == OCI_INDEX and len(idx.children) == 3
    firsts = {c.layers[0].blob.digest for c in idx.children}
    seconds = {c.layers[1].blob.digest for c in idx.children}
    assert len(firsts) == 1 and len(seconds) == 3
    plats = [m["platform"] for m in idx.manifest["manifests"]]
    assert {"architecture": "arm64", "os": "linux", "variant": "v8"} in plats
    assert idx.child("linux/arm/v7").platform == {
        "architecture": "arm",
        "os": "linux",
        "variant": "v7",
    }
    assert len(idx.blobs()) == 1 + 3 + 3  # shared, own layers, configs


@pytest.mark.parametrize(
    "make",
    [simple_image, docker_image, multiplatform_index, lambda: multiplatform_index(fmt="docker")],
    ids=["oci", "docker", "oci-index", "docker-list"],
)
def test_skopeo_push_is_byte_exact(
    registry: Registry, repo_name: str, make: Callable[[], BuiltImage]
) -> None:
    image = make()
    assert push_image(registry, repo_name, "v1", image) == image.digest
    assert inspect_digest(registry, f"{repo_name}:v1") == image.digest
    for child in image.children:
        assert inspect_digest(registry, f"{repo_name}@{child.digest}") == child.digest
    if image.media_type == DOCKER_MANIFEST_LIST:
        resp = _get(
            registry.host, f"/v2/{repo_name}/manifests/v1", {"Accept": DOCKER_MANIFEST_LIST}
        )
        assert resp.getheader("Content-Type") == DOCKER_MANIFEST_LIST
        resp.read()


def test_http_push_zstd_and_many_layers(registry: Registry, repo_name: str) -> None:
    z = build_image([{"z": b"zstd layer\n" * 100}], compression="zstd")
    http_push(registry, repo_name, "zstd", z)
    assert inspect_digest(registry, f"{repo_name}:zstd") == z.digest
    many = many_small_layers(count=12, file_size=2048)
    http_push(registry, repo_name, "many", many)
    assert inspect_digest(registry, f"{repo_name}:many") == many.digest


def test_layout_is_read_by_umoci_and_skopeo(tmp_path: Path, umoci: str, skopeo: str) -> None:
    image = simple_image()
    layout = write_layout(tmp_path / "layout", image, "v1")
    write_layout(layout, multiplatform_index(), "multi")
    ls = subprocess.run([umoci, "ls", "--layout", str(layout)], capture_output=True, text=True)
    assert ls.returncode == 0, ls.stderr
    assert sorted(ls.stdout.split()) == ["multi", "v1"]
    raw = subprocess.run([skopeo, "inspect", "--raw", f"oci:{layout}:v1"], capture_output=True)
    assert raw.returncode == 0 and sha256(raw.stdout) == image.digest
    bundle = tmp_path / "bundle"
    unpack = subprocess.run(
        [umoci, "unpack", "--rootless", "--image", f"{layout}:v1", str(bundle)],
        capture_output=True,
        text=True,
    )
    assert unpack.returncode == 0, unpack.stderr
    rootfs = bundle / "rootfs"
    assert (rootfs / "app/main.py").read_text() == "print('simple')\n"
    assert (rootfs / "app/current").readlink() == Path("main.py")
    assert (rootfs / "app/same-as-main.py").stat().st_ino == (rootfs / "app/main.py").stat().st_ino
    assert not (rootfs / "etc/motd").exists(), "the whiteout layer must delete /etc/motd"


def test_repo_names_are_valid_and_distinct() -> None:
    a = repo_name_for("tests/test_x.py::test_y[A/B C]")
    assert a == "t/test-x/test-y-a-b-c"
    long_a = repo_name_for("tests/t.py::" + "x" * 300 + "a")
    long_b = repo_name_for("tests/t.py::" + "x" * 300 + "b")
    assert long_a != long_b and len(long_a) <= 200


# -- fault proxy ------------------------------------------------------------


@pytest.fixture
def pushed(registry: Registry, repo_name: str) -> Iterator[tuple[str, BuiltImage]]:
    image = simple_image(tag="proxy")
    push_image(registry, repo_name, "v1", image, method="http")
    yield repo_name, image


def _layer(image: BuiltImage) -> tuple[str, bytes]:
    blob = image.layers[0].blob
    return blob.digest, blob.read()


def _blob_get(
    proxy: FaultProxy, repo: str, dgst: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    resp = _get(proxy.host, f"/v2/{repo}/blobs/{dgst}", headers)
    return resp.status, dict(resp.getheaders()), resp.read()


def test_proxy_passes_through_and_counts(
    fault_proxy: FaultProxy, pushed: tuple[str, BuiltImage]
) -> None:
    repo, image = pushed
    dgst, data = _layer(image)
    conn = http.client.HTTPConnection(fault_proxy.host, timeout=10)
    for _ in range(2):  # keep-alive: both requests on one connection
        conn.request("GET", f"/v2/{repo}/blobs/{dgst}")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == data
    conn.close()
    path = f"/v2/{repo}/blobs/{dgst}"
    assert fault_proxy.requests[("GET", path)] == 2
    assert fault_proxy.count("GET", r"/blobs/sha256:") == 2
    assert fault_proxy.bytes_sent[path] == 2 * len(data)
    assert fault_proxy.log[0].method == "GET" and fault_proxy.log[0].path == path


def test_proxy_drop_after_bytes(fault_proxy: FaultProxy, pushed: tuple[str, BuiltImage]) -> None:
    repo, image = pushed
    dgst, data = _layer(image)
    rule = fault_proxy.drop(r"/blobs/sha256:", after_bytes=100)
    resp = _get(fault_proxy.host, f"/v2/{repo}/blobs/{dgst}")
    assert resp.status == 200
    with pytest.raises(http.client.IncompleteRead) as exc:
        resp.read()
    assert len(exc.value.partial) == 100 and exc.value.partial == data[:100]
    assert rule.hits == 1
    assert _blob_get(fault_proxy, repo, dgst)[2] == data, "times=1: the next request passes"


def test_proxy_drop_before_headers_and_reset(
    fault_proxy: FaultProxy, pushed: tuple[str, BuiltImage]
) -> None:
    repo, image = pushed
    dgst, _ = _layer(image)
    fault_proxy.add(Drop(before_headers=True), method="GET", path="/blobs/")
    with pytest.raises(http.client.RemoteDisconnected):
        _get(fault_proxy.host, f"/v2/{repo}/blobs/{dgst}")
    fault_proxy.drop("/blobs/", after_bytes=10, reset=True)
    resp = _get(fault_proxy.host, f"/v2/{repo}/blobs/{dgst}")
    with pytest.raises((ConnectionResetError, http.client.IncompleteRead)):
        resp.read()


def test_proxy_stalls(fault_proxy: FaultProxy, pushed: tuple[str, BuiltImage]) -> None:
    repo, image = pushed
    dgst, data = _layer(image)
    fault_proxy.stall(0.4, "/blobs/")
    start = time.monotonic()
    assert _blob_get(fault_proxy, repo, dgst)[2] == data
    assert time.monotonic() - start >= 0.4
    fault_proxy.stall(5, "/blobs/", after_bytes=50)
    conn = http.client.HTTPConnection(fault_proxy.host, timeout=0.5)
    conn.request("GET", f"/v2/{repo}/blobs/{dgst}")
    resp = conn.getresponse()
    assert resp.read(50) == data[:50]
    with pytest.raises(socket.timeout):
        resp.read(1)
    conn.close()


def test_proxy_made_up_statuses(fault_proxy: FaultProxy, pushed: tuple[str, BuiltImage]) -> None:
    repo, image = pushed
    dgst, data = _layer(image)
    fault_proxy.respond(429, "/blobs/", retry_after="2")
    status, headers, body = _blob_get(fault_proxy, repo, dgst)
    assert status == 429 and headers["Retry-After"] == "2" and b"errors" in body
    for code in (500, 502, 503, 504):
        fault_proxy.respond(code, "/blobs/")
        assert _blob_get(fault_proxy, repo, dgst)[0] == code
    assert _blob_get(fault_proxy, repo, dgst)[2] == data


def test_proxy_flips_one_byte(fault_proxy: FaultProxy, pushed: tuple[str, BuiltImage]) -> None:
    repo, image = pushed
    dgst, data = _layer(image)
    fault_proxy.flip_byte(70, "/blobs/")
    got = _blob_get(fault_proxy, repo, dgst)[2]
    assert len(got) == len(data) and got != data
    assert [i for i in range(len(data)) if got[i] != data[i]] == [70]


def test_proxy_strips_digest_and_refuses_head(
    registry: Registry, fault_proxy: FaultProxy, pushed: tuple[str, BuiltImage]
) -> None:
    repo, image = pushed
    path = f"/v2/{repo}/manifests/v1"
    accept = {"Accept": image.media_type}

    def head(host: str) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection(host, timeout=10)
        conn.request("HEAD", path, headers=accept)
        resp = conn.getresponse()
        resp.read()
        return resp

    assert head(registry.host).getheader("Docker-Content-Digest") == image.digest
    fault_proxy.strip_header("/manifests/")
    stripped = head(fault_proxy.host)
    assert stripped.status == 200 and stripped.getheader("Docker-Content-Digest") is None
    fault_proxy.head_405()
    assert head(fault_proxy.host).status == 405
    resp = _get(fault_proxy.host, path, accept)
    assert resp.status == 200 and sha256(resp.read()) == image.digest


def test_proxy_ignores_range(fault_proxy: FaultProxy, pushed: tuple[str, BuiltImage]) -> None:
    repo, image = pushed
    dgst, data = _layer(image)
    status, _, body = _blob_get(fault_proxy, repo, dgst, {"Range": "bytes=10-"})
    assert status == 206 and body == data[10:], "the registry itself honours Range"
    fault_proxy.ignore_range()
    status, _, body = _blob_get(fault_proxy, repo, dgst, {"Range": "bytes=10-"})
    assert status == 200 and body == data


def test_proxy_redirects_to_another_host(
    fault_proxy: FaultProxy, pushed: tuple[str, BuiltImage]
) -> None:
    repo, image = pushed
    dgst, data = _layer(image)
    fault_proxy.redirect()
    assert fault_proxy.redirect_host.split(":")[0] != fault_proxy.host.split(":")[0]
    http = urllib3.PoolManager(retries=urllib3.Retry(total=3, redirect=3))
    url = f"{fault_proxy.url}/v2/{repo}/blobs/{dgst}"
    resp = http.request("GET", url, headers={"Authorization": "Bearer secret"})
    assert resp.status == 200 and resp.data == data
    assert fault_proxy.log[-1].header("Authorization") == "Bearer secret"
    assert len(fault_proxy.redirect_log) == 1
    assert fault_proxy.redirect_log[0].header("Authorization") is None
    # A client that does forward the header is caught: the target records it.
    raw = _get(fault_proxy.host, f"/v2/{repo}/blobs/{dgst}")
    assert raw.status == 307
    raw.read()
    location = raw.getheader("Location") or ""
    target = location.split("/")[2]
    assert target == fault_proxy.redirect_host
    leak = _get(target, location.split(target, 1)[1], {"Authorization": "Bearer leaked"})
    assert leak.read() == data
    assert fault_proxy.redirect_log[-1].header("Authorization") == "Bearer leaked"


def test_proxy_uploads_stay_on_the_proxy(
    fault_proxy: FaultProxy, repo_name: str, registry: Registry
) -> None:
    conn = http.client.HTTPConnection(fault_proxy.host, timeout=10)
    conn.request("POST", f"/v2/{repo_name}/blobs/uploads/")
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 202
    assert (resp.getheader("Location") or "").startswith(fault_proxy.url + "/v2/")
    image = build_image([{"up": hashlib.sha256(b"u").digest() * 4000}])
    http_push(fault_proxy, repo_name, "v1", image)
    assert inspect_digest(registry, f"{repo_name}:v1") == image.digest
    assert fault_proxy.count("PUT", "/blobs/uploads/") == 2  # layer and config


def test_proxy_stop_cuts_a_stall_short(registry: Registry, pushed: tuple[str, BuiltImage]) -> None:
    repo, image = pushed
    dgst, _ = _layer(image)
    proxy = FaultProxy(registry).start()
    proxy.stall(30, "/blobs/", after_bytes=10)
    resp = _get(proxy.host, f"/v2/{repo}/blobs/{dgst}")
    start = time.monotonic()
    proxy.stop()
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        resp.read()
    assert time.monotonic() - start < 5


def test_large_layer_is_valid_and_cached(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    image = large_image(tmp_path / "big", total_compressed=2_000_000, layers=2)
    first = image.layers[0]
    assert first.blob.path is not None and first.blob.size >= 1_000_000
    raw = gzip.decompress(first.blob.path.read_bytes())
    assert (
        sha256(raw) == first.diff_id and sha256(first.blob.path.read_bytes()) == first.blob.digest
    )
    assert len(raw) > 2 * first.blob.size, "text-like content compresses"
    again = large_image(tmp_path / "big", total_compressed=2_000_000, layers=2)
    assert again.digest == image.digest
    push_image(registry, repo_name, "big", image)
    assert inspect_digest(registry, f"{repo_name}:big") == image.digest


def test_proxy_forwards_chunked_uploads(
    fault_proxy: FaultProxy, registry: Registry, repo_name: str
) -> None:
    data = b"chunked upload body\n" * 5000
    conn = http.client.HTTPConnection(fault_proxy.host, timeout=10)
    conn.request("POST", f"/v2/{repo_name}/blobs/uploads/")
    resp = conn.getresponse()
    resp.read()
    location = (resp.getheader("Location") or "").removeprefix(fault_proxy.url)
    pieces = iter([data[:40000], data[40000:]])
    conn.request("PATCH", location, body=pieces, encode_chunked=True,
                 headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 202, resp.status
    location = (resp.getheader("Location") or "").removeprefix(fault_proxy.url)
    conn.request("PUT", f"{location}&digest={sha256(data)}", headers={"Content-Length": "0"})
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 201
    blob = _get(registry.host, f"/v2/{repo_name}/blobs/{sha256(data)}")
    assert blob.read() == data
