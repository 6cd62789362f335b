"""Single objects by reference: describe from hints, copy verified bytes out.

Shared by `dist fetch-object` (stdout) and its multi-fetch mode (a
directory laid out as ``<dir>/<algorithm>/<hex>``, each file published by
rename only after its bytes verified).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ocidist import reference
from ocidist.descriptor import Descriptor
from ocidist.digest import Digest, InvalidDigest
from ocidist.errors import InvalidArgument
from ocidist.stream import copy_stream

if TYPE_CHECKING:
    from ocidist.remotes import Registry


def parse_hints(hints: Sequence[str]) -> tuple[str, int]:
    """``mediatype:T`` and ``size:N`` hints -> (media type, size or -1)."""
    media_type, size = "", -1
    for h in hints:
        key, sep, value = h.partition(":")
        if not sep or not value:
            raise InvalidArgument(f"invalid hint {h!r}: expected mediatype:TYPE or size:N")
        if key == "mediatype":
            media_type = value.split(";", 1)[0].strip()
        elif key == "size":
            if not value.isdigit():
                raise InvalidArgument(f"invalid hint {h!r}: size must be a whole number")
            size = int(value)
        else:
            raise InvalidArgument(f"unknown hint {key!r} (known: mediatype, size)")
    return media_type, size


def parse_object_line(line: str) -> tuple[str, list[str]]:
    fields = line.split()
    if not fields:
        raise InvalidArgument("empty object line")
    return fields[0], fields[1:]


def describe(
    resolver: Registry, ref: str, obj: str | None, hints: Sequence[str]
) -> tuple[str, Descriptor]:
    """(name, descriptor) of OBJECT in REF's repository, or of REF itself."""
    media_type, size = parse_hints(hints)
    if obj is None:
        return resolver.resolve(ref)
    if ":" in obj and not obj.startswith(":"):
        try:
            dgst = Digest.parse(obj)
        except InvalidDigest:
            if obj.split(":", 1)[0] in ("sha256", "sha512") or "/" in obj:
                raise
            dgst = None
    else:
        dgst = None
    base = reference.parse(ref)
    if dgst is None:
        # A tag of the same repository.
        return resolver.resolve(str(base.with_tag(obj).replace(digest=None)))
    name = str(base.with_digest(dgst))
    if media_type and size >= 0:
        return name, Descriptor(media_type=media_type, digest=dgst, size=size)
    desc = resolver.describe(name, dgst, media_type)
    if size >= 0 and size != desc.size:
        from ocidist.errors import DigestMismatch

        raise DigestMismatch(f"{name}: size mismatch: registry says {desc.size}, hint {size}")
    return name, desc


def fetch_to_dir(
    resolver: Registry, ref: str, obj: str, hints: Sequence[str], out_dir: str
) -> tuple[Descriptor, str]:
    name, desc = describe(resolver, ref, obj, hints)
    dest_dir = os.path.join(out_dir, desc.digest.algorithm)
    os.makedirs(dest_dir, exist_ok=True)
    dest = os.path.join(dest_dir, desc.digest.encoded)
    src = resolver.fetcher(name).fetch(desc)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            copy_stream(src, f)
        os.replace(tmp, dest)
    except BaseException:
        os.unlink(tmp)
        raise
    finally:
        src.close()
    return desc, dest
