"""Random access to the members of a tar file: OCI archives and `docker save` tarballs.

Readers of those formats need members in an order the file does not follow
(``docker save`` writes ``manifest.json`` last, and a layer is wanted again
when a copy resumes), so the file is indexed once — header by header, data
skipped with a seek — and members are then read with ``os.pread`` at their
offsets: any number of threads can stream different members of one file.

A compressed file (``docker save | gzip``, which ``docker load`` accepts) or
a pipe cannot be read at offsets; it is first copied, decompressed, into an
unlinked temporary file (what containers/image does for the same formats).

Member names are cleaned (``./`` and leading ``/`` dropped); symlinks and
hardlinks between members are followed inside the archive, a bounded number
of hops, and never outside it.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import sys
import tarfile
import tempfile
from typing import BinaryIO

from ocidist.archive.tarstream import BoundedTarInfo
from ocidist.errors import InvalidArgument, InvalidContent, NotFound
from ocidist.stream import BUF
from ocidist.text import quote
from ocidist.value import Value

# A docker save of a big image has a few hundred members; this only stops an
# archive built to exhaust memory with headers.
MAX_MEMBERS = 200_000
MAX_LINK_HOPS = 16
# Nothing these formats look up has a long name (manifest.json, <hex>.json,
# <id>/layer.tar, blobs/sha256/<hex>); a PAX name can be 1 MiB, and an index
# of 200,000 of them would hold 200 GB. Longer names are not indexed.
MAX_NAME = 4096
# And all names together: 200,000 names of 4096 bytes would still be 800 MB.
MAX_NAME_BYTES = 64 << 20


def clean_name(name: str) -> str:
    """``./a//b/`` -> ``a/b``; what a member is looked up by."""
    name = name.replace("\\", "/")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/".join(parts)


def _read_head(src: BinaryIO, n: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < n and (data := src.read(n - got)):
        parts.append(data)
        got += len(data)
    return b"".join(parts)


class _Prefixed:
    """``head`` (already read to sniff the compression), then the rest of ``src``."""

    def __init__(self, head: bytes, src: BinaryIO) -> None:
        self._head = head
        self._src = src

    def read(self, n: int = -1, /) -> bytes:
        if self._head:
            data = self._head if n < 0 else self._head[:n]
            self._head = self._head[len(data) :]
            return data
        return self._src.read(n)

    def close(self) -> None:
        if self._src is not sys.stdin.buffer:
            self._src.close()


class Member(Value):
    """Where one regular member's bytes are in the (uncompressed) file."""

    __slots__ = ("name", "offset", "size")
    name: str
    offset: int
    size: int

    def __init__(self, name: str, offset: int, size: int) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "size", size)


class MemberReader:
    """A stream of one member (from ``start``), read with ``os.pread``: no
    shared file position, so threads can read members of one file at once."""

    def __init__(self, fd: int, member: Member, start: int = 0) -> None:
        self._fd = fd
        self._pos = member.offset + start
        self._end = member.offset + member.size

    def read(self, n: int = -1, /) -> bytes:
        left = self._end - self._pos
        if n < 0 or n > left:
            n = left
        if n <= 0:
            return b""
        data = os.pread(self._fd, n, self._pos)
        if not data:
            raise InvalidContent("archive ends inside a member")
        self._pos += len(data)
        return data

    def readinto(self, buf: bytearray | memoryview, /) -> int:
        data = self.read(min(len(buf), BUF))
        memoryview(buf)[: len(data)] = data
        return len(data)

    def close(self) -> None:
        pass  # the index owns the descriptor


class TarIndex:
    """A tar file (``-``: stdin), indexed for random access. Close it when done."""

    def __init__(self, path: str, *, what: str = "") -> None:
        self.path = path
        self.what = what or path
        self._file: BinaryIO = self._open(path)
        try:
            self.members: dict[str, Member] = {}
            self._links: dict[str, str] = {}  # cleaned name -> cleaned target
            self._dirs: set[str] = set()
            self._scan()
        except BaseException:
            self._file.close()
            raise

    # -- opening --

    def _open(self, path: str) -> BinaryIO:
        from ocidist.archive.compression import Compression, detect
        from ocidist.errors import CompressionError

        if path == "-":
            src: BinaryIO = sys.stdin.buffer
            seekable = False
        else:
            try:
                src = open(path, "rb")  # noqa: SIM115 - closed below or kept as the index
            except FileNotFoundError:
                raise NotFound(f"{self.what}: not found") from None
            except IsADirectoryError:
                raise InvalidArgument(f"{self.what}: is a directory, not an archive") from None
            seekable = src.seekable()
        try:
            head = _read_head(src, 512)
            try:
                kind = detect(head)
            except CompressionError as e:
                raise InvalidContent(f"{self.what}: not a tar archive: {e}") from None
            if kind is Compression.NONE and seekable:
                src.seek(0)
                return src
            return self._spool(_Prefixed(head, src))
        except BaseException:
            if src is not sys.stdin.buffer:
                src.close()
            raise

    def _spool(self, src: _Prefixed) -> BinaryIO:
        """The uncompressed archive in an unlinked temporary file."""
        from ocidist.archive.compression import decompressed_chunks
        from ocidist.errors import CompressionError
        from ocidist.paths import big_temp_dir

        # Never a name on disk (O_TMPFILE, or unlinked at once): nothing is
        # left behind however the process ends.
        out = tempfile.TemporaryFile(prefix="ocidist-archive-", dir=big_temp_dir())  # noqa: SIM115
        try:
            _, chunks = decompressed_chunks(src, threaded=True)  # type: ignore[arg-type]
            try:
                for chunk in chunks:
                    out.write(chunk)
            except CompressionError as e:
                raise InvalidContent(f"{self.what}: {e}") from None
            out.flush()
            out.seek(0)
        except BaseException:
            out.close()
            raise
        finally:
            src.close()
        return out

    def _scan(self) -> None:
        try:
            tf = tarfile.open(fileobj=self._file, mode="r:", tarinfo=BoundedTarInfo)  # noqa: SIM115
        except tarfile.TarError as e:
            raise InvalidContent(f"{self.what}: not a readable tar: {e}") from None
        count = kept = 0
        try:
            while True:
                try:
                    info = tf.next()
                except tarfile.TarError as e:
                    raise InvalidContent(f"{self.what}: not a readable tar: {e}") from None
                if info is None:
                    break
                # tarfile keeps every header it reads; the index has what it needs.
                tf.members = []  # type: ignore[attr-defined]
                count += 1
                if count > MAX_MEMBERS:
                    raise InvalidContent(f"{self.what}: more than {MAX_MEMBERS} members")
                name = clean_name(info.name)
                if not name or len(name) > MAX_NAME or ".." in name.split("/"):
                    continue  # nothing a reader of these formats looks up
                if len(info.linkname) > MAX_NAME:
                    continue
                kept += len(name) + len(info.linkname)
                if kept > MAX_NAME_BYTES:
                    raise InvalidContent(
                        f"{self.what}: member names of more than {MAX_NAME_BYTES} bytes in all"
                    )
                if info.isreg():
                    self.members[name] = Member(name, info.offset_data, info.size)
                elif info.issym():
                    target = posixpath.join(posixpath.dirname(name), info.linkname)
                    self._links[name] = clean_name(posixpath.normpath(target))
                elif info.islnk():
                    self._links[name] = clean_name(info.linkname)
                elif info.isdir():
                    self._dirs.add(name)
        finally:
            # Closes nothing of ours: the file object was passed in.
            with contextlib.suppress(Exception):
                tf.close()

    # -- lookup --

    def find(self, name: str) -> Member | None:
        """The regular member ``name`` names, links followed; None if absent."""
        name = clean_name(name)
        for _ in range(MAX_LINK_HOPS):
            member = self.members.get(name)
            if member is not None:
                return member
            target = self._links.get(name)
            if target is None or target.startswith("../") or target == "..":
                return None
            name = target
        return None

    def has(self, name: str) -> bool:
        return self.find(name) is not None

    def names(self) -> list[str]:
        return [*self.members, *self._links]

    def open(self, member: Member, start: int = 0) -> MemberReader:
        return MemberReader(self._file.fileno(), member, start)

    def read(self, name: str, cap: int) -> bytes:
        """A small member whole (manifest.json, index.json, a config)."""
        member = self.find(name)
        if member is None:
            raise InvalidContent(f"{self.what}: no {quote(name)}")
        if member.size > cap:
            raise InvalidContent(
                f"{self.what}: {quote(name)} is {member.size} bytes (at most {cap})"
            )
        return self.open(member).read(member.size)

    def rewound(self) -> BinaryIO:
        """The (uncompressed) archive as a file, from its start, for a
        reader that streams it whole; it stays the index's to close."""
        self._file.seek(0)
        return self._file

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> TarIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
