"""Extract a tar of plain files literally: an artifact's directory, as oras packs one.

This is not a container layer. ``.wh.`` names are ordinary files; owners,
device nodes, FIFOs, setuid/setgid/sticky bits and xattrs are not kept (an
artifact carries files, and pulling one as root must not plant a setuid
binary or a device); and, as oras-go's file store requires, every entry
lies under the directory the layer is titled (``PREFIX/…``), links point
inside that directory, and nothing is written through a link — neither one
from the tar nor one already in the destination.

The stream is read twice (``open_stream`` gives it from the start each
time): the first pass checks every header, and the uncompressed digest
when one is expected, writing nothing; the second writes. A hostile or
corrupt tar therefore leaves the destination as it was (a clash with what
the destination already holds, such as a link where the tar has a
directory, is found while writing). Existing files are replaced and
existing directories merged into, as oras does.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, cast

from ocidist.archive.compression import decompressed_chunks
from ocidist.archive.entries import times_ns
from ocidist.archive.tarstream import TAR_BUFSIZE, BoundedTarInfo, HashingReader, members
from ocidist.digest import Digest
from ocidist.errors import ArchiveError, CompressionError, DigestMismatch, NoSpace
from ocidist.stream import write_all
from ocidist.text import quote

Parts = tuple[str, ...]

MAX_ENTRIES = 1_000_000
MAX_DEPTH = 256
MAX_TOTAL_SIZE = 1 << 40
_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _Refused(ArchiveError):
    pass


def extract_files(
    dest_fd: int,
    prefix: Parts,
    open_stream: Callable[[], BinaryIO],
    *,
    expected: Digest | None = None,
    warn: Callable[[str], None] = lambda _: None,
) -> int:
    """Extract the (gzip, zstd or plain) tar ``open_stream`` reads into the
    directory ``dest_fd``; returns the number of entries written."""
    what = f"directory {quote('/'.join(prefix))}"
    _read(open_stream, prefix, expected, None, warn=lambda _: None)
    try:
        writer = _Writer(dest_fd)
        return _read(open_stream, prefix, None, writer, warn=warn)
    except OSError as e:
        why = os.strerror(e.errno).lower() if e.errno else str(e)
        cls = NoSpace if e.errno == errno.ENOSPC else ArchiveError
        raise cls(f"{what}: {why}") from None


def _read(
    open_stream: Callable[[], BinaryIO],
    prefix: Parts,
    expected: Digest | None,
    writer: _Writer | None,
    *,
    warn: Callable[[str], None],
) -> int:
    what = f"directory {quote('/'.join(prefix))}"
    stream = open_stream()
    try:
        try:
            _, chunks = decompressed_chunks(stream, threaded=False)
        except CompressionError as e:
            raise ArchiveError(f"{what}: {e}") from None
        reader = HashingReader(chunks, limit=MAX_TOTAL_SIZE)
        try:
            count = _entries(reader, prefix, writer, warn)
            reader.drain()
        except _Refused as e:
            raise ArchiveError(f"{what}: {e}") from None
        except (ArchiveError, CompressionError, tarfile.TarError) as e:
            raise ArchiveError(f"{what}: {e}") from None
    finally:
        stream.close()
    got = Digest("sha256", reader.hexdigest())
    if expected is not None and got != expected:
        raise DigestMismatch(f"{what}: digest mismatch: the tar is {got}, expected {expected}")
    return count


def _entries(
    reader: HashingReader, prefix: Parts, writer: _Writer | None, warn: Callable[[str], None]
) -> int:
    try:
        tf = tarfile.open(  # noqa: SIM115 - closed by "with tf" below
            fileobj=cast(Any, reader), mode="r|", bufsize=TAR_BUFSIZE, tarinfo=BoundedTarInfo
        )
    except tarfile.ReadError as e:
        raise ArchiveError(f"not a tar archive: {e}") from None
    count = 0
    kinds: dict[Parts, str] = {}  # what each path is so far: "d", "f" or "l"
    expanded = 0
    with tf:
        for info in members(tf):
            count += 1
            if count > MAX_ENTRIES:
                raise _Refused(f"more than {MAX_ENTRIES} entries")
            parts = _check(info, prefix, kinds)
            if parts is None:
                warn(
                    f"{quote(info.name)}: {_kind(info)} skipped: an artifact directory holds files"
                )
                continue
            if info.isreg():
                expanded += info.size
                if expanded > MAX_TOTAL_SIZE:
                    raise _Refused(f"more than {MAX_TOTAL_SIZE} bytes")
            if writer is not None:
                writer.entry(tf, info, parts)
    if writer is not None:
        writer.finish()
    return count


def _kind(info: tarfile.TarInfo) -> str:
    return "device node" if info.ischr() or info.isblk() else "FIFO" if info.isfifo() else "entry"


def _clean(name: str, what: str) -> Parts:
    if name.startswith("/"):
        raise _Refused(f"{what} {quote(name)} is an absolute path")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise _Refused(f"{what} {quote(name)} has '..'")
    return parts


def _check(info: tarfile.TarInfo, prefix: Parts, kinds: dict[Parts, str]) -> Parts | None:
    """The entry's path, or None for a kind we skip; _Refused when writing it
    could leave the titled directory or go through a link. ``kinds`` records
    what the entries so far made of each path."""
    parts = _clean(info.name, "entry")
    name = quote(info.name)
    if parts[: len(prefix)] != prefix:
        raise _Refused(f"entry {name} is outside the directory")
    if len(parts) > MAX_DEPTH:
        raise _Refused(f"entry {name} is deeper than {MAX_DEPTH}")
    if parts == prefix and not info.isdir():
        raise _Refused(f"entry {name} is not a directory")
    for i in range(len(prefix), len(parts)):
        if kinds.get(parts[:i], "d") != "d":
            raise _Refused(f"entry {name} is under a link or a file")
    if info.issym():
        if info.linkname.startswith("/"):
            raise _Refused(f"symlink {name} points to an absolute path")
        target = list(parts[:-1])
        for p in info.linkname.split("/"):
            if p == "..":
                if len(target) <= len(prefix):
                    raise _Refused(f"symlink {name} points outside the directory")
                target.pop()
            elif p not in ("", "."):
                target.append(p)
        kind = "l"
    elif info.islnk():
        target_parts = _clean(info.linkname, "hardlink target")
        if target_parts[: len(prefix)] != prefix or kinds.get(target_parts) != "f":
            raise _Refused(
                f"hardlink {name} names {quote(info.linkname)}, "
                "not a file before it in the directory"
            )
        kind = "f"
    elif info.isreg():
        kind = "f"
    elif info.isdir():
        kind = "d"
    else:
        return None
    before = kinds.get(parts)
    if before is not None and (before == "d") != (kind == "d"):
        raise _Refused(f"entry {name} replaces a {'directory' if before == 'd' else 'file'}")
    kinds[parts] = kind
    return parts


class _Writer:
    """Writes checked entries under ``dest_fd``, walking each path with
    ``O_NOFOLLOW``: an existing link on the way is an error, never followed."""

    def __init__(self, dest_fd: int) -> None:
        self._dest = dest_fd
        self._dirs: dict[Parts, int] = {}  # modes to set once the children are in

    def entry(self, tf: tarfile.TarFile, info: tarfile.TarInfo, parts: Parts) -> None:
        with self._parent(parts) as parent:
            name = parts[-1]
            st = _lstat(parent, name)
            if info.isdir():
                if st is None:
                    os.mkdir(name, 0o700, dir_fd=parent)
                elif not stat.S_ISDIR(st.st_mode):
                    raise _Refused(f"{quote('/'.join(parts))} exists and is not a directory")
                # Owner-writable whatever the tar says, so pulling again works.
                self._dirs[parts] = (info.mode & 0o777) | 0o700
                return
            if st is not None:
                if stat.S_ISDIR(st.st_mode):
                    raise _Refused(f"{quote('/'.join(parts))} exists and is a directory")
                os.unlink(name, dir_fd=parent)
            if info.issym():
                os.symlink(info.linkname, name, dir_fd=parent)
            elif info.islnk():
                target = _clean(info.linkname, "hardlink target")
                with self._parent(target) as tdir:
                    os.link(target[-1], name, src_dir_fd=tdir, dst_dir_fd=parent,
                            follow_symlinks=False)  # fmt: skip
                return
            else:
                self._file(tf, info, parent, name)
            os.utime(name, ns=times_ns(info), dir_fd=parent, follow_symlinks=False)

    def _file(self, tf: tarfile.TarFile, info: tarfile.TarInfo, parent: int, name: str) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, 0o600, dir_fd=parent)
        try:
            data = tf.extractfile(info)
            if data is not None:
                while chunk := data.read(_CHUNK):
                    write_all(fd, chunk)
            os.fchmod(fd, info.mode & 0o777)  # never setuid, setgid or sticky
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _parent(self, parts: Parts) -> Iterator[int]:
        fd = os.dup(self._dest)
        try:
            for i, part in enumerate(parts[:-1]):
                try:
                    nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    os.mkdir(part, 0o755, dir_fd=fd)
                    nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as e:
                    if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    where = quote("/".join(parts[: i + 1]))
                    raise _Refused(f"{where} is a link or a file, not a directory") from None
                os.close(fd)
                fd = nfd
            yield fd
        finally:
            os.close(fd)

    def finish(self) -> None:
        for parts in sorted(self._dirs, key=len, reverse=True):
            with self._parent((*parts, ".")) as fd:
                os.fchmod(fd, self._dirs[parts])


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
