"""Fuzz targets shared by the hypothesis tests and the atheris harness.

Each target takes bytes a fuzzer made up and feeds them to one parser of
untrusted input; the only exception allowed out is that parser's documented
error (``InvalidReference``, ``InvalidDigest``, ``InvalidContent``,
``InvalidArgument``). Anything else (KeyError, RecursionError, …) is a bug.
"""

from __future__ import annotations

from collections.abc import Callable

from ocidist import manifest, reference
from ocidist.descriptor import OCI_INDEX, OCI_MANIFEST, Platform
from ocidist.digest import Digest, InvalidDigest
from ocidist.errors import InvalidArgument, InvalidContent, InvalidReference
from tests.fuzz import httpdiff

MEDIA_TYPES = (
    OCI_MANIFEST,
    OCI_INDEX,
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "",
    "application/json",
    "text/plain",
    "application/vnd.oci.image.layer.v1.tar",
)


def reference_target(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    for parse in (reference.parse, reference.parse_strict):
        try:
            ref = parse(text)
        except InvalidReference:
            continue
        # What is accepted is a fixed point of its canonical form.
        again = parse(ref.name)
        assert again == ref, (text, ref, again)


def digest_target(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    try:
        dgst = Digest.parse(text)
    except InvalidDigest:
        return
    assert Digest.parse(str(dgst)) == dgst


def manifest_target(data: bytes) -> None:
    media_type = MEDIA_TYPES[data[0] % len(MEDIA_TYPES)] if data else ""
    try:
        decoded = manifest.decode(data[1:], media_type)
    except InvalidContent:
        return
    assert isinstance(decoded, manifest.Manifest | manifest.Index)


def platform_target(data: bytes) -> None:
    try:
        Platform.parse(data.decode("utf-8", errors="replace"))
    except InvalidArgument:
        return


def http_target(data: bytes) -> None:
    """Differential, not only "no surprise exception": h11 is the oracle
    (tests/fuzz/httpdiff.py); the first two bytes pick the method and where
    the answer is cut."""
    method, cuts, raw = httpdiff.split_plan(data)
    httpdiff.agree(raw, method, cuts)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "reference": reference_target,
    "digest": digest_target,
    "manifest": manifest_target,
    "platform": platform_target,
    "http": http_target,
}

# Starting inputs (run.py writes them to a scratch corpus): random bytes
# rarely spell a status line, let alone a chunked body.
SEEDS: dict[str, list[bytes]] = {
    "http": [
        b"\x00\x00HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"\x06\x03HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2;x=y\r\nok\r\n0\r\nT: t\r\n\r\n",
        b"\x02\x01HTTP/1.0 200 OK\r\nX-A: a\r\n b\r\n\r\nbody",
        b"\x01\x00HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n"
        b"Connection: close\r\n\r\n",
        b"\x00\x02HTTP/1.1 304 x\r\nContent-Length: 2, 2\r\n\r\n",
    ],
}
