"""What a push costs in requests, and the single-request upload with its fallbacks.

Counted at the fault proxy in front of the real registry: a cold push asks
once whether the image is there (the root, by tag), then sends every small
blob without a HEAD (POST + PUT on Distribution 2.8, which ignores a body on
the POST) and every manifest with one PUT; a push of an image the registry
has costs that one HEAD. The single POST (``?digest=`` with the body) is
exercised against a seam that gives the registry that feature, and the
fallbacks against the proxy refusing it (405/400/404/501, a 202 without a
session). Every pushed blob is read back from the registry itself.
"""

from __future__ import annotations

import http.client
import http.server
import io
import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import parse_qs, urlsplit

import pytest

from ocidist.descriptor import Descriptor
from ocidist.digest import Digest
from ocidist.push import upload_blob
from ocidist.remotes.docker.pusher import PushOptions
from ocidist.remotes.docker.resolver import DockerResolver
from ocidist.remotes.docker.singlepost import PROBE_MAX
from tests.dist_cli import one_error_line, run_dist
from tests.harness import (
    FaultProxy,
    LoggedRequest,
    Registry,
    Respond,
    StripHeader,
    inspect_raw,
    multiplatform_index,
    push_image,
    run_skopeo,
    simple_image,
)

KiB = 1024


def _blob(size: int, seed: int) -> tuple[bytes, Descriptor]:
    data = random.Random(seed).randbytes(size)
    return data, Descriptor("application/octet-stream", Digest.from_bytes(data), size)


def _registry_bytes(resolver: DockerResolver, ref: str, desc: Descriptor) -> bytes:
    stream = resolver.fetcher(ref).fetch(desc)
    try:
        return stream.read()
    finally:
        stream.close()


def _kind(e: LoggedRequest) -> str:
    """``METHOD what`` with what one of manifests, blobs, uploads/, uploads/<id>."""
    if "/manifests/" in e.path:
        what = "manifests"
    elif e.path.endswith("/blobs/uploads/"):
        what = "uploads/"
    elif "/blobs/uploads/" in e.path:
        what = "uploads/<id>"
    else:
        what = "blobs"
    return f"{e.method} {what}"


def _kinds(log: list[LoggedRequest]) -> list[str]:
    return [_kind(e) for e in log]


def skopeo_reads(tmp: Path, registry: Registry, ref: str) -> None:
    """skopeo copies the pushed image out of the registry, verifying every blob."""
    src = f"docker://{registry.host}/{ref}"
    run_skopeo("copy", "--all", "--src-tls-verify=false", src, f"oci:{tmp / 'oci'}:x")


def _opener(data: bytes) -> Callable[[int], BinaryIO]:
    return lambda off: io.BytesIO(data[off:])


def _body_len(e: LoggedRequest) -> int:
    return int(e.header("Content-Length") or 0)


@pytest.fixture
def multi_store(tmp_path: Path, registry: Registry, repo_name: str) -> tuple[Path, str]:
    """A store holding a 3-platform index, fetched from the session registry."""
    idx = multiplatform_index()
    push_image(registry, repo_name, "multi", idx)
    root = tmp_path / "root"
    ref = f"{registry.host}/{repo_name}:multi"
    out = run_dist("--root", str(root), "pull", ref, "--all-platforms")
    assert out.returncode == 0, out.stderr.decode()
    return root, ref


def test_cold_push_requests_and_repush(
    tmp_path: Path,
    registry: Registry,
    fault_proxy: FaultProxy,
    repo_name: str,
    multi_store: tuple[Path, str],
) -> None:
    root, src = multi_store
    idx = multiplatform_index()
    blobs = {d for c in idx.children for d in c.blobs()}
    manifests = 1 + len(idx.children)
    # Through the proxy the registry has another host name: no mounts, all uploaded.
    dst = f"{fault_proxy.host}/{repo_name}/copy:v1"
    out = run_dist("--root", str(root), "push", src, dst)
    assert out.returncode == 0, out.stderr.decode()
    kinds = _kinds(fault_proxy.log)
    assert kinds.count("HEAD manifests") == 1  # the root, by tag, and nothing else asked
    assert kinds.count("HEAD blobs") == 0
    assert kinds.count("POST uploads/") == len(blobs)
    assert kinds.count("PUT uploads/<id>") == len(blobs)
    assert kinds.count("PUT manifests") == manifests
    # One request per blob and per manifest fewer than HEAD-first (3 per blob, 2 per manifest).
    assert len(kinds) == 1 + 2 * len(blobs) + manifests < 3 * len(blobs) + 2 * manifests
    # Distribution 2.8 ignores a body on the POST: only the first (the probe) carried one.
    posts = [e for e in fault_proxy.log if _kind(e) == "POST uploads/"]
    assert [bool(_body_len(e)) for e in posts].count(True) == 1
    # Children before parents: each platform manifest after its own blobs
    # (not necessarily after another platform's), the index last.
    log = fault_proxy.log
    blob_put = {
        parse_qs(e.query)["digest"][0]: i
        for i, e in enumerate(log)
        if _kind(e) == "PUT uploads/<id>"
    }
    for child in idx.children:
        put = next(i for i, e in enumerate(log) if e.path.endswith(f"/manifests/{child.digest}"))
        assert all(blob_put[d] < put for d in child.blobs()), child.digest
    assert _kind(log[-1]) == "PUT manifests" and log[-1].path.endswith("/manifests/v1")
    assert inspect_raw(registry, f"{repo_name}/copy:v1") == idx.raw
    skopeo_reads(tmp_path, registry, f"{repo_name}/copy:v1")

    # Again: the registry has the image; one HEAD says so and nothing is sent.
    fault_proxy.clear()
    out = run_dist("--root", str(root), "--json", "push", src, dst)
    assert out.returncode == 0, out.stderr.decode()
    assert _kinds(fault_proxy.log) == ["HEAD manifests"]
    assert '"pushed":0' in out.stdout.decode()


def test_copy_again_only_asks(registry: Registry, fault_proxy: FaultProxy, repo_name: str) -> None:
    """`dist copy` asks before every object (it has no root check): copying an
    image the destination has already sends nothing."""
    idx = multiplatform_index()
    push_image(registry, repo_name, "multi", idx)
    src = f"{registry.host}/{repo_name}:multi"
    dst = f"{fault_proxy.host}/{repo_name}/copy:v1"
    out = run_dist("copy", src, dst)
    assert out.returncode == 0, out.stderr.decode()
    assert inspect_raw(registry, f"{repo_name}/copy:v1") == idx.raw
    fault_proxy.clear()
    out = run_dist("copy", src, dst)
    assert out.returncode == 0, out.stderr.decode()
    assert {e.method for e in fault_proxy.log} == {"HEAD"}


def test_large_blobs_are_looked_up_first(fault_proxy: FaultProxy, repo_name: str) -> None:
    data, desc = _blob(8 * KiB, seed=11)
    resolver = DockerResolver()
    ref = f"{fault_proxy.host}/{repo_name}"
    pusher = resolver.pusher(ref, PushOptions(lookup_min=4 * KiB))
    open_at = _opener(data)
    assert upload_blob(pusher, desc, open_at) == "pushed"
    # Above lookup_min: HEAD, then a session opened at once (no single-POST probe).
    assert _kinds(fault_proxy.log) == ["HEAD blobs", "POST uploads/", "PUT uploads/<id>"]
    assert _body_len(fault_proxy.log[1]) == 0
    fault_proxy.clear()
    assert upload_blob(pusher, desc, open_at) == "exists"
    assert _kinds(fault_proxy.log) == ["HEAD blobs"]
    assert _registry_bytes(resolver, ref, desc) == data
    resolver.close()


def test_registry_ignoring_single_post_is_learnt(fault_proxy: FaultProxy, repo_name: str) -> None:
    """Distribution 2.8 answers the probe with 202 and a session: the body goes
    again in the PUT to that session, and later blobs skip the probe."""
    resolver = DockerResolver()
    ref = f"{fault_proxy.host}/{repo_name}"
    pusher = resolver.pusher(ref)
    pushed = [_blob(3000 + i, seed=20 + i) for i in range(3)]
    for data, desc in pushed:
        assert upload_blob(pusher, desc, _opener(data)) == "pushed"
    log = fault_proxy.log
    assert _kinds(log) == ["POST uploads/", "PUT uploads/<id>"] * 3
    assert parse_qs(log[0].query)["digest"] == [str(pushed[0][1].digest)]
    assert _body_len(log[0]) == _body_len(log[1]) == 3000
    assert all(_body_len(e) == 0 and not e.query for e in log[2::2])
    assert pusher.single_post.supported is False
    for data, desc in pushed:
        assert _registry_bytes(resolver, ref, desc) == data
    resolver.close()


@pytest.mark.parametrize("status", [400, 404, 405, 501])
def test_single_post_refused_falls_back(
    fault_proxy: FaultProxy, repo_name: str, status: int
) -> None:
    fault_proxy.add(Respond(status), method="POST", path="/blobs/uploads/$", times=1)
    resolver = DockerResolver()
    ref = f"{fault_proxy.host}/{repo_name}"
    pusher = resolver.pusher(ref)
    first, second = _blob(2000, seed=30), _blob(2100, seed=31)
    for data, desc in (first, second):
        assert upload_blob(pusher, desc, _opener(data)) == "pushed"
    # The refused probe, then the two-request path; the second blob goes that way at once.
    assert _kinds(fault_proxy.log) == ["POST uploads/", *["POST uploads/", "PUT uploads/<id>"] * 2]
    assert "digest=" in fault_proxy.log[0].query and not fault_proxy.log[1].query
    assert pusher.single_post.supported is False
    for data, desc in (first, second):
        assert _registry_bytes(resolver, ref, desc) == data
    resolver.close()


def test_single_post_202_without_location_opens_a_session(
    fault_proxy: FaultProxy, repo_name: str
) -> None:
    fault_proxy.add(StripHeader("Location"), method="POST", path="/blobs/uploads/$", times=1)
    resolver = DockerResolver()
    ref = f"{fault_proxy.host}/{repo_name}"
    data, desc = _blob(1500, seed=40)
    assert upload_blob(resolver.pusher(ref), desc, _opener(data)) == "pushed"
    assert _kinds(fault_proxy.log) == ["POST uploads/", "POST uploads/", "PUT uploads/<id>"]
    assert _registry_bytes(resolver, ref, desc) == data
    resolver.close()


def test_probe_only_with_a_small_blob(fault_proxy: FaultProxy, repo_name: str) -> None:
    """A registry that ignores the POST body may leave it unread: the first
    try carries at most PROBE_MAX bytes."""
    resolver = DockerResolver()
    ref = f"{fault_proxy.host}/{repo_name}"
    pusher = resolver.pusher(ref)
    data, desc = _blob(PROBE_MAX + 1, seed=50)
    assert upload_blob(pusher, desc, _opener(data)) == "pushed"
    assert _kinds(fault_proxy.log) == ["POST uploads/", "PUT uploads/<id>"]
    assert _body_len(fault_proxy.log[0]) == 0 and pusher.single_post.supported is None
    assert _registry_bytes(resolver, ref, desc) == data
    resolver.close()


# -- a registry that takes the single POST --------------------------------------------


class SinglePostSeam:
    """A seam in front of the real registry that takes ``POST
    /v2/<name>/blobs/uploads/?digest=<d>`` with the body (201), as the OCI
    spec allows and Distribution 2.8 does not: it runs the two-request upload
    against the registry itself and answers with the registry's verdict.
    Everything else is passed through. ``seen`` lists (method, path, query)."""

    def __init__(self, upstream: Registry) -> None:
        self.upstream = upstream
        self.seen: list[tuple[str, str, str]] = []
        seam = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _any(self) -> None:
                parts = urlsplit(self.path)
                seam.seen.append((self.command, parts.path, parts.query))
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                digest = parse_qs(parts.query).get("digest")
                up = http.client.HTTPConnection(seam.upstream.host, timeout=30)
                try:
                    if self.command == "POST" and digest and body is not None:
                        status, headers, data = seam._single_post(up, parts.path, digest[0], body)
                    else:
                        hdrs = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                        up.request(self.command, self.path, body=body, headers=hdrs)
                        resp = up.getresponse()
                        status, headers, data = resp.status, resp.getheaders(), resp.read()
                finally:
                    up.close()
                self.send_response_only(status)
                for k, v in headers:
                    if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def _single_post(
        self, up: http.client.HTTPConnection, path: str, digest: str, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        up.request("POST", path)
        resp = up.getresponse()
        resp.read()
        location = resp.getheader("Location") or ""
        sep = "&" if "?" in location else "?"
        put = urlsplit(location)._replace(scheme="", netloc="").geturl()
        up.request("PUT", f"{put}{sep}digest={digest}", body=body,
                   headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        resp = up.getresponse()
        return resp.status, resp.getheaders(), resp.read()

    def __enter__(self) -> SinglePostSeam:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def single_post_seam(registry: Registry) -> Iterator[SinglePostSeam]:
    with SinglePostSeam(registry) as seam:
        yield seam


def test_single_post_upload(
    single_post_seam: SinglePostSeam, registry: Registry, repo_name: str
) -> None:
    resolver = DockerResolver()
    ref = f"{single_post_seam.host}/{repo_name}"
    pusher = resolver.pusher(ref)
    pushed = [_blob(PROBE_MAX - 1, seed=60), _blob(300 * KiB, seed=61), _blob(10, seed=62)]
    for data, desc in pushed:
        assert upload_blob(pusher, desc, _opener(data)) == "pushed"
    # One request per blob: after the probe, even blobs above PROBE_MAX go in one POST.
    assert [(m, q.split("=")[0]) for m, _, q in single_post_seam.seen] == [("POST", "digest")] * 3
    assert pusher.single_post.supported is True
    direct = DockerResolver()
    for data, desc in pushed:
        assert _registry_bytes(direct, f"{registry.host}/{repo_name}", desc) == data
    resolver.close()
    direct.close()


def test_push_image_with_single_post(
    tmp_path: Path,
    single_post_seam: SinglePostSeam,
    registry: Registry,
    repo_name: str,
    multi_store: tuple[Path, str],
) -> None:
    root, src = multi_store
    idx = multiplatform_index()
    out = run_dist("--root", str(root), "push", src, f"{single_post_seam.host}/{repo_name}/sp:v1")
    assert out.returncode == 0, out.stderr.decode()
    blob_requests = [(m, q) for m, p, q in single_post_seam.seen if "/blobs/" in p]
    singles = [q for m, q in blob_requests if m == "POST" and q.startswith("digest=")]
    # Uploads that started while the probe was out take the two-request path
    # (their PUTs go to the registry's own Location); the rest went in one POST.
    assert singles and len(blob_requests) <= len({d for c in idx.children for d in c.blobs()}) + 3
    assert inspect_raw(registry, f"{repo_name}/sp:v1") == idx.raw
    skopeo_reads(tmp_path, registry, f"{repo_name}/sp:v1")


# -- the registry verifies what it received ------------------------------------------


@pytest.mark.parametrize("chunks", [(), ("--chunk-size", "256", "--monolithic-max", "256")],
                         ids=["whole", "chunked"])  # fmt: skip
def test_corrupt_store_blob_is_refused(
    tmp_path: Path,
    registry: Registry,
    fault_proxy: FaultProxy,
    repo_name: str,
    chunks: tuple[str, ...],
) -> None:
    """The pusher does not hash (the registry does): a blob that rotted in the
    store after it was verified fails the push with a digest mismatch, and the
    registry keeps nothing under that digest, nor the manifest."""
    img = simple_image(tag="rot")
    push_image(registry, repo_name, "v1", img)
    root = tmp_path / "root"
    src = f"{registry.host}/{repo_name}:v1"
    out = run_dist("--root", str(root), "pull", src)
    assert out.returncode == 0, out.stderr.decode()
    dgst = max(img.blobs().items(), key=lambda kv: kv[1].size)[0]
    path = root / "blobs" / "sha256" / dgst.split(":")[1]
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    out = run_dist(
        "--root", str(root), "push", *chunks, src, f"{fault_proxy.host}/{repo_name}/rot:v1"
    )
    assert out.returncode == 1
    line = one_error_line(out)
    assert "digest mismatch" in line and dgst in line, line
    # Refused for good: the final PUT naming that digest is not retried.
    puts = [e for e in fault_proxy.log if e.method == "PUT" and dgst in e.query.replace("%3A", ":")]
    assert len(puts) <= 1
    conn = http.client.HTTPConnection(registry.host, timeout=10)
    for what in (f"blobs/{dgst}", "manifests/v1"):
        conn.request("HEAD", f"/v2/{repo_name}/rot/{what}")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 404, what
    conn.close()
