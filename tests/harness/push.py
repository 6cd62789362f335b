"""Put built images into a registry with skopeo, byte-exactly.

skopeo 1.9's ``oci:`` transport only finds OCI-typed entries in index.json,
so Docker schema2 manifests and manifest lists go through its ``dir:``
transport instead (``manifest.json`` + ``<hex>.manifest.json`` per instance),
which with ``--preserve-digests`` copies them unchanged (verified by the
harness tests). ``http_push`` is a plain-HTTP alternative for cases skopeo
cannot do (zero-time setup in benches, pushing through the fault proxy).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal, Protocol

import urllib3

from tests.harness.images import OCI_INDEX, OCI_MANIFEST, BuiltImage
from tests.harness.layout import write_layout

SKOPEO = "skopeo"


class Endpoint(Protocol):
    """Anything with an address: a ``Registry`` or a ``FaultProxy``."""

    @property
    def host(self) -> str: ...

    @property
    def url(self) -> str: ...


def _host(target: Endpoint | str) -> str:
    return target if isinstance(target, str) else target.host


def _base_url(target: Endpoint | str) -> str:
    return f"http://{target}" if isinstance(target, str) else target.url


def write_dir(path: Path, image: BuiltImage) -> Path:
    """Write ``image`` in skopeo's ``dir:`` format (version 1.1)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "version").write_text("Directory Transport Version: 1.1\n")
    for blob in image.blobs().values():
        dest = path / blob.digest.split(":", 1)[1]
        if not dest.exists():
            blob.copy_to(dest)
    (path / "manifest.json").write_bytes(image.raw)
    for child in image.manifests()[:-1]:
        (path / f"{child.digest.split(':', 1)[1]}.manifest.json").write_bytes(child.raw)
    return path


def run_skopeo(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run([SKOPEO, *args], capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(
            f"skopeo {' '.join(args)} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}"
        )
    return proc


def _is_oci(image: BuiltImage) -> bool:
    return image.media_type in (OCI_MANIFEST, OCI_INDEX)


def push_image(
    target: Endpoint | str,
    repo: str,
    tag: str,
    image: BuiltImage,
    *,
    method: Literal["skopeo", "http"] = "skopeo",
    creds: str | None = None,
    workdir: Path | None = None,
    extra_args: Sequence[str] = (),
) -> str:
    """Push ``image`` as ``repo:tag`` and return its manifest digest.

    ``creds`` is ``user:password`` (skopeo) — for ``method="http"`` pass
    ``http_push`` an Authorization header instead.
    """
    if method == "http":
        return http_push(target, repo, tag, image)
    tmp = Path(tempfile.mkdtemp(prefix="push-", dir=workdir))
    try:
        if _is_oci(image):
            src = f"oci:{write_layout(tmp / 'layout', image, tag)}:{tag}"
        else:
            src = f"dir:{write_dir(tmp / 'dir', image)}"
        args = ["copy", "--all", "--preserve-digests", "--dest-tls-verify=false"]
        if creds is not None:
            args += ["--dest-creds", creds]
        args += extra_args
        run_skopeo(*args, src, f"docker://{_host(target)}/{repo}:{tag}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return image.digest


def inspect_raw(target: Endpoint | str, ref: str, creds: str | None = None) -> bytes:
    """The manifest bytes the registry serves for ``repo:tag`` / ``repo@digest``."""
    args = ["inspect", "--raw", "--tls-verify=false"]
    if creds is not None:
        args += ["--creds", creds]
    return run_skopeo(*args, f"docker://{_host(target)}/{ref}").stdout


def inspect_digest(target: Endpoint | str, ref: str, creds: str | None = None) -> str:
    return "sha256:" + hashlib.sha256(inspect_raw(target, ref, creds)).hexdigest()


def http_push(
    target: Endpoint | str,
    repo: str,
    tag: str,
    image: BuiltImage,
    *,
    headers: Mapping[str, str] | None = None,
) -> str:
    """Push with plain monolithic uploads (POST then PUT ?digest=), skipping
    blobs the registry already has. Harness code: no retries, no auth dance."""
    base = _base_url(target)
    hdrs = dict(headers or {})
    http = urllib3.PoolManager(cert_reqs="CERT_NONE", retries=False)
    try:
        for blob in image.blobs().values():
            url = f"{base}/v2/{repo}/blobs/{blob.digest}"
            if http.request("HEAD", url, headers=hdrs).status == 200:
                continue
            r = http.request("POST", f"{base}/v2/{repo}/blobs/uploads/", headers=hdrs)
            _expect(r, 202, "start upload")
            loc = r.headers["Location"]
            if loc.startswith("/"):
                loc = base + loc
            sep = "&" if "?" in loc else "?"
            with blob.open() as body:
                put_headers = {**hdrs, "Content-Type": "application/octet-stream"}
                put_headers["Content-Length"] = str(blob.size)
                r = http.request("PUT", f"{loc}{sep}digest={blob.digest}", body=body,
                                 headers=put_headers)  # fmt: skip
            _expect(r, 201, f"upload {blob.digest}")
        for img in image.manifests():
            ref = tag if img is image else img.digest
            r = http.request(
                "PUT",
                f"{base}/v2/{repo}/manifests/{ref}",
                body=img.raw,
                headers={**hdrs, "Content-Type": img.media_type},
            )
            _expect(r, 201, f"put manifest {ref}")
    finally:
        http.clear()
    return image.digest


def _expect(resp: urllib3.BaseHTTPResponse, status: int, what: str) -> None:
    if resp.status != status:
        body = resp.data[:500]
        raise RuntimeError(f"{what}: HTTP {resp.status}: {body!r}")
