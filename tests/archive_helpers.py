"""Build small layer tars in tests: entries as TarInfo, compressed as asked."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

import zstandard

MTIME = 1_600_000_000


@dataclass
class Entry:
    info: tarfile.TarInfo
    data: bytes = b""


def _info(name: str, kind: bytes, mode: int, **kw: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = MTIME
    info.uid = 0
    info.gid = 0
    for key, value in kw.items():
        setattr(info, key, value)
    return info


def reg(name: str, data: bytes = b"", mode: int = 0o644, **kw: object) -> Entry:
    info = _info(name, tarfile.REGTYPE, mode, **kw)
    info.size = len(data)
    return Entry(info, data)


def dir_(name: str, mode: int = 0o755, **kw: object) -> Entry:
    return Entry(_info(name, tarfile.DIRTYPE, mode, **kw))


def sym(name: str, target: str, **kw: object) -> Entry:
    return Entry(_info(name, tarfile.SYMTYPE, 0o777, linkname=target, **kw))


def hard(name: str, target: str, **kw: object) -> Entry:
    return Entry(_info(name, tarfile.LNKTYPE, 0o644, linkname=target, **kw))


def fifo(name: str, mode: int = 0o644) -> Entry:
    return Entry(_info(name, tarfile.FIFOTYPE, mode))


def chrdev(name: str, major: int, minor: int, mode: int = 0o666) -> Entry:
    return Entry(_info(name, tarfile.CHRTYPE, mode, devmajor=major, devminor=minor))


def tar_bytes(entries: list[Entry], *, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for e in entries:
            tf.addfile(e.info, io.BytesIO(e.data) if e.info.isreg() else None)
    return buf.getvalue()


def compress(raw: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(raw, mtime=0)
    if how == "zstd":
        return zstandard.ZstdCompressor().compress(raw)
    assert how == "tar"
    return raw


def layer(entries: list[Entry], how: str = "gzip") -> bytes:
    return compress(tar_bytes(entries), how)


def snapshot(top: Path, *, exclude: Path) -> dict[str, tuple[object, ...]]:
    """Everything under ``top`` except ``exclude``: type, mode, size, mtime,
    link target and content — to prove nothing outside a root changed."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d != exclude]
        for name in [*dirnames, *filenames]:
            p = here / name
            st = p.lstat()
            content: object = None
            if stat.S_ISLNK(st.st_mode):
                content = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                content = p.read_bytes()
            out[str(p.relative_to(top))] = (st.st_mode, st.st_size, st.st_mtime_ns, content)
        out[str(here.relative_to(top)) + "/"] = (here.lstat().st_mode, here.lstat().st_mtime_ns)
    return out
