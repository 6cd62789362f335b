"""`dist push` and the pusher against the real registry, read back by skopeo.

Uploads go through the fault proxy where the test counts or breaks requests:
chunk counts, a chunk lost on the wire (resumed from the registry's offset,
found with a status GET), a lost upload session (restarted from byte 0),
and cross-repository mounts (no blob bytes sent at all).
"""

from __future__ import annotations

import hashlib
import io
import random
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from ocidist.descriptor import Descriptor
from ocidist.digest import Digest
from ocidist.progress import NullProgress
from ocidist.push import upload_blob
from ocidist.remotes.docker.pusher import PushOptions
from ocidist.remotes.docker.resolver import DockerResolver
from tests.dist_cli import one_error_line, run_dist
from tests.harness import (
    BuiltImage,
    Drop,
    FaultProxy,
    LoggedRequest,
    Registry,
    Respond,
    docker_image,
    inspect_raw,
    large_image,
    multiplatform_index,
    push_image,
    run_skopeo,
    simple_image,
)

KiB = 1024


def pull(root: Path, ref: str, *args: str) -> None:
    out = run_dist("--root", str(root), "pull", ref, *args)
    assert out.returncode == 0, out.stderr.decode()


def skopeo_copy_ok(tmp: Path, host: str, ref: str) -> None:
    """skopeo reads the pushed image back, verifying every blob it copies."""
    run_skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{host}/{ref}", f"oci:{tmp}:x")


def upload_sessions(log: list[LoggedRequest]) -> dict[str, str]:
    """Upload URL path -> the digest its final PUT named."""
    out = {}
    for e in log:
        if e.method == "PUT" and "/blobs/uploads/" in e.path:
            out[e.path] = parse_qs(e.query)["digest"][0]
    return out


def patches(log: list[LoggedRequest], path: str | None = None) -> list[LoggedRequest]:
    return [e for e in log if e.method == "PATCH" and (path is None or e.path == path)]


def start_of(e: LoggedRequest) -> int:
    cr = e.header("Content-Range")
    assert cr is not None
    return int(cr.split("-")[0])


@pytest.mark.parametrize("make", [simple_image, docker_image], ids=["oci", "docker"])
def test_push_reads_back_byte_for_byte(
    tmp_path: Path, registry: Registry, fresh_registry: object, repo_name: str, make: object
) -> None:
    img: BuiltImage = make()  # type: ignore[operator]
    push_image(registry, repo_name, "v1", img)
    root = tmp_path / "root"
    pull(root, f"{registry.host}/{repo_name}:v1")
    dst = fresh_registry()  # type: ignore[operator]
    out = run_dist("--root", str(root), "push", f"{registry.host}/{repo_name}:v1",
                   f"{dst.host}/pushed/app:v2")  # fmt: skip
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().split() == [f"{dst.host}/pushed/app:v2", img.digest]
    assert inspect_raw(dst, "pushed/app:v2") == img.raw
    assert inspect_raw(dst, f"pushed/app@{img.digest}") == img.raw
    skopeo_copy_ok(tmp_path / "oci", dst.host, "pushed/app:v2")
    # Again: everything is there already, nothing is uploaded.
    out = run_dist("--root", str(root), "--json", "push", f"{registry.host}/{repo_name}:v1",
                   f"{dst.host}/pushed/app:v2")  # fmt: skip
    assert out.returncode == 0, out.stderr.decode()
    import json

    done = json.loads(out.stdout.decode().splitlines()[-1])
    assert done["pushed"] == 0 and done["digest"] == img.digest


def test_push_multiplatform_index_and_single_platform(
    tmp_path: Path, registry: Registry, fresh_registry: object, repo_name: str
) -> None:
    idx = multiplatform_index()
    push_image(registry, repo_name, "multi", idx)
    src = f"{registry.host}/{repo_name}:multi"
    dst = fresh_registry()  # type: ignore[operator]

    # Only one platform in the store: the index cannot go, and says why.
    partial = tmp_path / "partial"
    pull(partial, src, "--platform", "linux/arm64")
    out = run_dist("--root", str(partial), "push", src, f"{dst.host}/idx/app:v1")
    assert out.returncode == 1
    assert "--all-platforms" in one_error_line(out)
    # ... but that platform's manifest can, as the image itself.
    out = run_dist("--root", str(partial), "push", src, f"{dst.host}/idx/arm:v1",
                   "--platform", "linux/arm64")  # fmt: skip
    assert out.returncode == 0, out.stderr.decode()
    assert inspect_raw(dst, "idx/arm:v1") == idx.child("linux/arm64/v8").raw

    full = tmp_path / "full"
    pull(full, src, "--all-platforms")
    out = run_dist("--root", str(full), "push", src, f"{dst.host}/idx/app:v1")
    assert out.returncode == 0, out.stderr.decode()
    assert inspect_raw(dst, "idx/app:v1") == idx.raw
    for child in idx.children:
        assert inspect_raw(dst, f"idx/app@{child.digest}") == child.raw
    skopeo_copy_ok(tmp_path / "oci", dst.host, "idx/app:v1")


def test_push_default_ref_and_unknown_name(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    img = simple_image(tag="default-ref")
    push_image(registry, repo_name, "v1", img)
    ref = f"{registry.host}/{repo_name}:v1"
    root = tmp_path / "root"
    pull(root, ref)
    out = run_dist("--root", str(root), "push", ref)  # REF defaults to NAME
    assert out.returncode == 0, out.stderr.decode()
    out = run_dist("--root", str(root), "push", f"{registry.host}/{repo_name}:nope")
    assert out.returncode == 1 and "not found" in one_error_line(out)


def test_chunked_upload_patch_count(
    tmp_path: Path, registry: Registry, fault_proxy: FaultProxy, repo_name: str
) -> None:
    img = large_image(tmp_path / "img", total_compressed=2 << 20, layers=1)
    push_image(registry, repo_name, "big", img)
    root = tmp_path / "root"
    pull(root, f"{registry.host}/{repo_name}:big")
    chunk = 256 * KiB
    # Through the proxy the registry has another host name: no mount, a real upload.
    dst = f"{fault_proxy.host}/{repo_name}/copy:big"
    out = run_dist("--root", str(root), "push", f"{registry.host}/{repo_name}:big", dst,
                   "--chunk-size", "256KiB", "--monolithic-max", "256KiB")  # fmt: skip
    assert out.returncode == 0, out.stderr.decode()
    sessions = upload_sessions(fault_proxy.log)
    assert set(sessions.values()) == set(img.blobs())
    for path, dgst in sessions.items():
        size = img.blobs()[dgst].size
        got = patches(fault_proxy.log, path)
        if size <= chunk:
            assert got == [], dgst  # small blobs: one monolithic PUT
            continue
        assert len(got) == -(-size // chunk), dgst
        assert [start_of(e) for e in got] == list(range(0, size, chunk))
        assert all(e.header("Content-Type") == "application/octet-stream" for e in got)
    # (skopeo reads the registry directly: the proxy folds its repeated Accept headers)
    assert inspect_raw(registry, f"{repo_name}/copy:big") == img.raw
    skopeo_copy_ok(tmp_path / "oci", registry.host, f"{repo_name}/copy:big")


class ArmAfter(NullProgress):
    """Arms a fault once the upload holds ``after`` bytes (mid-upload, deterministically)."""

    def __init__(self, proxy: FaultProxy, after: int, *rules: tuple[object, str]) -> None:
        self.proxy, self.after, self.rules, self.armed = proxy, after, rules, False

    def update(self, desc: Descriptor, held: int) -> None:
        if held >= self.after and not self.armed:
            self.armed = True
            for action, method in self.rules:
                self.proxy.add(action, method=method, path="/blobs/uploads/", times=1)  # type: ignore[arg-type]


def _blob(size: int, seed: int) -> tuple[bytes, Descriptor]:
    data = random.Random(seed).randbytes(size)
    return data, Descriptor("application/octet-stream", Digest.from_bytes(data), size)


def _registry_bytes(resolver: DockerResolver, ref: str, desc: Descriptor) -> bytes:
    stream = resolver.fetcher(ref).fetch(desc)
    try:
        return stream.read()
    finally:
        stream.close()


def test_dropped_chunk_continues_from_registry_offset(
    fault_proxy: FaultProxy, repo_name: str
) -> None:
    chunk = 256 * KiB
    data, desc = _blob(10 * chunk, seed=1)
    resolver = DockerResolver()
    ref = f"{fault_proxy.host}/{repo_name}"
    pusher = resolver.pusher(ref, PushOptions(chunk_size=chunk, monolithic_max=chunk))
    # The fifth PATCH is cut off before the registry sees any of it. (Counted
    # in PATCHes, not in bytes the copy wrote: the copy runs ahead of the
    # PATCHes by what the upload stream buffers.)
    fault_proxy.add(
        Drop(before_headers=True), method="PATCH", path="/blobs/uploads/", skip=4, times=1
    )
    status = upload_blob(pusher, desc, lambda off: io.BytesIO(data[off:]))
    assert status == "pushed"
    log = [e for e in fault_proxy.log if "/blobs/uploads/" in e.path]
    sent = patches(log)
    starts = [start_of(e) for e in sent]
    assert starts == [
        0,
        chunk,
        2 * chunk,
        3 * chunk,
        4 * chunk,
        *range(4 * chunk, 10 * chunk, chunk),
    ]
    # Between the lost chunk and its resend: a status GET on the upload URL.
    lost = log.index(sent[4])
    assert [e.method for e in log[lost + 1 : log.index(sent[5])]] == ["GET"]
    # Only the lost chunk went twice; nothing was re-sent from byte 0.
    assert sum(int(e.header("Content-Length") or 0) for e in sent) == desc.size + chunk
    assert [e.method for e in fault_proxy.log].count("POST") == 1
    assert _registry_bytes(resolver, ref, desc) == data
    resolver.close()


def test_lost_session_restarts_upload(fault_proxy: FaultProxy, repo_name: str) -> None:
    chunk = 256 * KiB
    data, desc = _blob(6 * chunk, seed=2)
    resolver = DockerResolver()
    ref = f"{fault_proxy.host}/{repo_name}"
    pusher = resolver.pusher(ref, PushOptions(chunk_size=chunk, monolithic_max=chunk))
    # A chunk is lost and the registry no longer knows the session.
    hook = ArmAfter(
        fault_proxy, 1 << 20, (Drop(before_headers=True), "PATCH"), (Respond(404), "GET")
    )
    status = upload_blob(pusher, desc, lambda off: io.BytesIO(data[off:]), progress=hook)
    assert status == "pushed"
    methods = [e.method for e in fault_proxy.log]
    assert methods.count("POST") == 2  # a fresh session ...
    second = [e for e in patches(fault_proxy.log) if start_of(e) == 0]
    assert len(second) == 2  # ... fed again from byte 0
    assert _registry_bytes(resolver, ref, desc) == data
    resolver.close()


def test_push_mounts_between_repositories(
    tmp_path: Path, registry: Registry, fault_proxy: FaultProxy, repo_name: str
) -> None:
    img = simple_image(tag="mount")
    push_image(registry, f"{repo_name}/a", "v1", img)
    root = tmp_path / "root"
    # Fetched through the proxy: the store labels name the proxy's host and repo a.
    pull(root, f"{fault_proxy.host}/{repo_name}/a:v1")
    fault_proxy.clear()
    out = run_dist("--root", str(root), "push", f"{fault_proxy.host}/{repo_name}/a:v1",
                   f"{fault_proxy.host}/{repo_name}/b:v1")  # fmt: skip
    assert out.returncode == 0, out.stderr.decode()
    posts = [e for e in fault_proxy.log if e.method == "POST"]
    mounted = {parse_qs(e.query)["mount"][0] for e in posts}
    assert mounted == set(img.blobs())
    assert all(parse_qs(e.query)["from"] == [f"{repo_name}/a"] for e in posts)
    assert not [e for e in fault_proxy.log if "/blobs/uploads/" in e.path and e.method != "POST"]
    assert inspect_raw(registry, f"{repo_name}/b:v1") == img.raw
    skopeo_copy_ok(tmp_path / "oci", registry.host, f"{repo_name}/b:v1")


def test_mount_refused_falls_back_to_upload_in_same_session(
    fault_proxy: FaultProxy, repo_name: str
) -> None:
    data, desc = _blob(4000, seed=3)
    resolver = DockerResolver()
    ref = f"{fault_proxy.host}/{repo_name}"
    pusher = resolver.pusher(ref)
    # The mount source travels as containerd carries it: a descriptor annotation.
    source = {f"containerd.io/distribution.source.{fault_proxy.host}": f"{repo_name}/nowhere"}
    annotated = desc.replace(annotations=source)
    status = upload_blob(pusher, annotated, lambda off: io.BytesIO(data[off:]))
    assert status == "pushed"
    posts = [e for e in fault_proxy.log if e.method == "POST"]
    assert len(posts) == 1 and "mount=" in posts[0].query  # 202: that answer's session is used
    assert [e.method for e in fault_proxy.log if "/blobs/uploads/" in e.path] == ["POST", "PUT"]
    assert _registry_bytes(resolver, ref, desc) == data
    resolver.close()


def test_push_object_round_trip(tmp_path: Path, registry: Registry, repo_name: str) -> None:
    img = simple_image(tag="object")
    ref = f"{registry.host}/{repo_name}"
    # Blobs from stdin and from files, then the manifest by tag.
    for i, blob in enumerate(img.blobs().values()):
        data = blob.read()
        if i % 2:
            out = run_dist("push-object", ref, "-", input=data)
        else:
            path = tmp_path / f"blob{i}"
            path.write_bytes(data)
            out = run_dist("push-object", ref, str(path))
        assert out.returncode == 0, out.stderr.decode()
        assert out.stdout.decode().strip() == blob.digest
        got = run_dist("fetch-object", ref, blob.digest)
        assert hashlib.sha256(got.stdout).hexdigest() == hashlib.sha256(data).hexdigest()
    out = run_dist("push-object", f"{ref}:v1", "--media-type", img.media_type, input=img.raw)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().strip() == img.digest
    assert inspect_raw(registry, f"{repo_name}:v1") == img.raw
    got = run_dist("fetch-object", f"{ref}:v1")
    assert hashlib.sha256(got.stdout).hexdigest() == img.digest.split(":")[1]


def test_push_object_bad_input(tmp_path: Path, registry: Registry, repo_name: str) -> None:
    ref = f"{registry.host}/{repo_name}"
    out = run_dist("push-object", f"{ref}:v1", input=b"a blob")
    assert out.returncode == 2 and "only manifests can be tagged" in one_error_line(out)
    wrong = "sha256:" + "0" * 64
    out = run_dist("push-object", f"{ref}@{wrong}", input=b"a blob")
    assert out.returncode == 1 and "digest mismatch" in one_error_line(out)
    out = run_dist("push-object", ref, str(tmp_path / "missing"))
    assert out.returncode == 2 and "no such file" in one_error_line(out)
    # A manifest naming blobs the registry lacks: the registry's own words.
    img = simple_image(tag="orphan")
    out = run_dist("push-object", f"{ref}:v1", "--media-type", img.media_type, input=img.raw)
    assert out.returncode == 1
    assert "blob unknown" in one_error_line(out).lower()


def test_size_options_parse() -> None:
    """--chunk-size / --monolithic-max take the units people type."""
    from ocidist.cli.push import parse_size

    assert parse_size("256KiB") == 256 * KiB
    assert parse_size("1m") == 1_000_000
    assert parse_size("4096") == 4096
    out = run_dist("push", "x/y", "--chunk-size", "lots")
    assert out.returncode == 2
