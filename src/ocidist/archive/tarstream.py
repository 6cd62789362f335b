"""Read a tar stream once, forward only, hashing every uncompressed byte.

``tarfile``'s own ``next()`` treats a malformed or truncated header after the
first one as the end of the archive; a layer cut short would then apply
"successfully". We iterate with ``TarInfo.fromtarfile`` ourselves so that only
a zero block (or a clean end of stream at a header boundary, which Go's
archive/tar accepts too) ends the archive.
"""

from __future__ import annotations

import contextlib
import hashlib
import tarfile
from collections.abc import Iterator
from typing import Any

from ocidist.errors import Malformed, SizeLimitExceeded, Truncated

# tarfile's stream buffer copies its remainder on every read, so a large buffer
# costs more than it saves with small entries; 64 KiB measured best here.
TAR_BUFSIZE = 1 << 16


# The header error subclasses are real tarfile names but missing from typeshed.
_tar: Any = tarfile

# tarfile reads a PAX header or a GNU long name whole into memory, whatever
# size its header claims: a 9 MB gzip'd tar whose PAX header claims 2 GiB
# took 4.9 GB of memory here. Go's archive/tar refuses such headers over
# 1 MiB (maxSpecialFileSize); so do we.
MAX_SPECIAL_SIZE = 1 << 20
_SPECIAL_TYPES = frozenset(
    {
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
    }
)


class BoundedTarInfo(tarfile.TarInfo):
    """A ``TarInfo`` that refuses a PAX header or GNU long name over
    ``MAX_SPECIAL_SIZE`` before tarfile reads it; pass it as
    ``tarfile.open(..., tarinfo=BoundedTarInfo)``."""

    def _proc_member(self, tf: Any) -> Any:
        if self.type in _SPECIAL_TYPES and self.size > MAX_SPECIAL_SIZE:
            # SubsequentHeaderError: tarfile turns it into ReadError wherever it
            # reads, never into a silent end of the archive.
            raise _tar.SubsequentHeaderError(
                f"extended header of {self.size} bytes (at most {MAX_SPECIAL_SIZE})"
            )
        return _tar.TarInfo._proc_member(self, tf)

    # A GNU sparse map is read block after block for as long as the header
    # says there is more, each block adding entries: unbounded memory from a
    # small compressed stream. Its reads get the same kind of budget, and the
    # malformed maps tarfile fails on with IndexError or ValueError (an
    # extension block cut short) become header errors.
    def _proc_sparse(self, tf: Any) -> Any:
        with _read_budget(tf, MAX_SPARSE_MAP):
            return _tar.TarInfo._proc_sparse(self, tf)

    def _proc_gnusparse_10(self, next: Any, pax_headers: Any, tf: Any) -> Any:
        with _read_budget(tf, MAX_SPARSE_MAP):
            return _tar.TarInfo._proc_gnusparse_10(self, next, pax_headers, tf)


# A sparse map of 8 MiB holds ~350,000 segments in the old GNU format.
MAX_SPARSE_MAP = 8 << 20


class _Budgeted:
    """``fileobj`` whose reads raise once more than ``budget`` bytes were read."""

    def __init__(self, inner: Any, budget: int) -> None:
        self._inner = inner
        self._left = budget

    def read(self, n: int = -1) -> bytes:
        data: bytes = self._inner.read(n)
        self._left -= len(data)
        if self._left < 0:
            raise _tar.SubsequentHeaderError("sparse map larger than the limit")
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@contextlib.contextmanager
def _read_budget(tf: Any, budget: int) -> Iterator[None]:
    inner = tf.fileobj
    tf.fileobj = _Budgeted(inner, budget)
    try:
        yield
    except (IndexError, ValueError):
        raise _tar.SubsequentHeaderError("malformed GNU sparse map") from None
    finally:
        tf.fileobj = inner


class HashingReader:
    """A ``read(n)`` view of an iterator of chunks that hashes (sha256) and counts
    every byte as it is produced, including bytes after the end-of-archive."""

    def __init__(self, chunks: Iterator[bytes], *, limit: int) -> None:
        self._chunks = chunks
        self._limit = limit
        self._hasher = hashlib.sha256()
        self._buf = b""
        self._pos = 0
        self.size = 0

    def _more(self) -> bool:
        for chunk in self._chunks:
            if not chunk:
                continue
            self.size += len(chunk)
            if self.size > self._limit:
                raise SizeLimitExceeded(f"uncompressed size exceeds the limit of {self._limit}")
            self._hasher.update(chunk)
            self._buf, self._pos = chunk, 0
            return True
        return False

    def read(self, n: int = -1) -> bytes:
        if self._pos >= len(self._buf) and not self._more():
            return b""
        if n < 0:
            n = len(self._buf) - self._pos
        # At most one chunk per call: tarfile loops until it has what it wants.
        out = self._buf[self._pos : self._pos + n]
        self._pos += len(out)
        return out

    def drain(self) -> None:
        """Consume (and hash) everything left, which also makes the decompressor
        check the stream's trailer."""
        self._buf, self._pos = b"", 0
        while self._more():
            self._buf, self._pos = b"", 0

    def hexdigest(self) -> str:
        return self._hasher.hexdigest()


def members(tf: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The members of a ``r|`` TarFile, strictly: a bad header raises.

    The caller reads (or not) each member's data before asking for the next."""
    stream: Any = tf  # firstmember is undeclared in typeshed
    first = stream.firstmember  # read by tarfile.open; errors at offset 0 raise there
    stream.firstmember = None
    if first is None:
        return
    yield first
    while True:
        # Skip whatever the caller did not read of the previous member.
        stream.fileobj.seek(tf.offset)
        if stream.fileobj.tell() != tf.offset:
            raise Truncated("truncated tar stream: ends inside an entry's data")
        try:
            info = tf.tarinfo.fromtarfile(tf)
        except _tar.EOFHeaderError:
            return  # a zero block: end of archive
        except _tar.EmptyHeaderError:
            return  # end of stream exactly between entries
        except _tar.TruncatedHeaderError:
            raise Truncated("truncated tar stream: ends inside a header") from None
        except tarfile.HeaderError as e:
            raise Malformed(f"malformed tar header at offset {tf.offset}: {e}") from None
        yield info
