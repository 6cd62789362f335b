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


TARGETS: dict[str, Callable[[bytes], None]] = {
    "reference": reference_target,
    "digest": digest_target,
    "manifest": manifest_target,
    "platform": platform_target,
}
