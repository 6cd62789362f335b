"""Layer contents as data, rendered to byte-reproducible tar archives.

A layer spec is either a mapping ``path -> entry`` (rendered in sorted path
order) or a sequence of ``(path, entry)`` pairs (rendered exactly in the given
order — unpack tests need e.g. an opaque marker *after* the entries it must
not hide; a hard link must come after its target, so in a mapping the target
must sort first). An entry is ``bytes`` (a regular file) or one of the classes below.
Parent directories are not added implicitly: tests of unpackers need to
control exactly which headers exist.

Every header has fixed mtime/uid/gid/uname/gname and the PAX format, so the
same spec always produces the same bytes.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import BinaryIO

# 2020-01-01T00:00:00Z: fixed so archives (and their digests) never change.
EPOCH = 1577836800


@dataclass(frozen=True)
class File:
    data: bytes
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = EPOCH
    xattrs: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Dir:
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    mtime: int = EPOCH


@dataclass(frozen=True)
class Symlink:
    target: str


@dataclass(frozen=True)
class Hardlink:
    """A hard link to ``target``, a path *inside the archive* (no leading /)."""

    target: str


@dataclass(frozen=True)
class Fifo:
    mode: int = 0o644


@dataclass(frozen=True)
class Device:
    """A character (``block=False``) or block device node."""

    major: int
    minor: int
    block: bool = False
    mode: int = 0o666


@dataclass(frozen=True)
class Whiteout:
    """Deletes ``path`` from lower layers: rendered as ``dir/.wh.<name>``."""


@dataclass(frozen=True)
class Opaque:
    """Hides lower-layer children of directory ``path``: ``path/.wh..wh..opq``."""


@dataclass(frozen=True)
class Raw:
    """An escape hatch: a header name rendered verbatim (``../evil``, ``/abs``),
    for tests of path confinement. ``entry`` says what the member is."""

    entry: Entry


Entry = bytes | File | Dir | Symlink | Hardlink | Fifo | Device | Whiteout | Opaque | Raw
LayerSpec = Mapping[str, Entry] | Sequence[tuple[str, Entry]]

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"


def entries(spec: LayerSpec) -> list[tuple[str, Entry]]:
    """The spec in render order."""
    if isinstance(spec, Mapping):
        return sorted(spec.items())
    return list(spec)


def _clean(path: str) -> str:
    # Tar member names are relative; a trailing slash on dirs is cosmetic.
    norm = posixpath.normpath(path.strip("/"))
    if norm in ("", "."):
        raise ValueError(f"empty path in layer spec: {path!r}")
    return norm


def _header_name(path: str, entry: Entry) -> str:
    if isinstance(entry, Raw):
        return path
    clean = _clean(path)
    if isinstance(entry, Whiteout):
        parent, base = posixpath.split(clean)
        return posixpath.join(parent, WHITEOUT_PREFIX + base)
    if isinstance(entry, Opaque):
        return posixpath.join(clean, OPAQUE_MARKER)
    return clean


def _info(name: str, entry: Entry) -> tuple[tarfile.TarInfo, bytes | None]:
    if isinstance(entry, Raw):
        raw_info, raw_data = _info(name, entry.entry)
        raw_info.name = name
        return raw_info, raw_data
    info = tarfile.TarInfo(name)
    info.mtime = EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o644
    data: bytes | None = None
    if isinstance(entry, bytes | bytearray):
        entry = File(bytes(entry))
    if isinstance(entry, File):
        info.type = tarfile.REGTYPE
        info.size = len(entry.data)
        info.mode, info.uid, info.gid, info.mtime = entry.mode, entry.uid, entry.gid, entry.mtime
        if entry.xattrs:
            info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in sorted(entry.xattrs.items())}
        data = entry.data
    elif isinstance(entry, Dir):
        info.type = tarfile.DIRTYPE
        info.mode, info.uid, info.gid, info.mtime = entry.mode, entry.uid, entry.gid, entry.mtime
    elif isinstance(entry, Symlink):
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target
        info.mode = 0o777
    elif isinstance(entry, Hardlink):
        info.type = tarfile.LNKTYPE
        info.linkname = entry.target
    elif isinstance(entry, Fifo):
        info.type = tarfile.FIFOTYPE
        info.mode = entry.mode
    elif isinstance(entry, Device):
        info.type = tarfile.BLKTYPE if entry.block else tarfile.CHRTYPE
        info.devmajor, info.devminor, info.mode = entry.major, entry.minor, entry.mode
    elif isinstance(entry, Whiteout | Opaque):
        # Whiteout markers are empty regular files (image-spec layer.md).
        info.type = tarfile.REGTYPE
        info.size = 0
        data = b""
    else:
        raise TypeError(f"unknown layer entry {entry!r}")
    return info, data


def write_tar(spec: LayerSpec, out: BinaryIO) -> None:
    """Render ``spec`` as an uncompressed tar stream into ``out``."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for path, entry in entries(spec):
            info, data = _info(_header_name(path, entry), entry)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


def tar_bytes(spec: LayerSpec) -> bytes:
    buf = io.BytesIO()
    write_tar(spec, buf)
    return buf.getvalue()


def members(tar_data: bytes) -> Iterable[tarfile.TarInfo]:
    """Header list of an uncompressed tar (for assertions)."""
    with tarfile.open(fileobj=io.BytesIO(tar_data), mode="r:") as tar:
        return tar.getmembers()
