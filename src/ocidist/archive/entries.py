"""Create one tar entry in an already-resolved parent directory, with its metadata.

Every call works on ``(parent_fd, name)``: the parent was resolved inside the
root by ``rootpath.Root`` and ``name`` is a single component that we never
follow, so none of these operations can be redirected by a symlink.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections.abc import Callable

from ocidist.archive.compression import CHUNK_SIZE
from ocidist.archive.rootpath import Parts
from ocidist.errors import ArchiveError, Truncated
from ocidist.stream import write_all
from ocidist.value import Value

_XATTR_PREFIX = "SCHILY.xattr."
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Errors that mean "this filesystem or this user cannot keep that attribute";
# the content is still right, so they are warnings, not failures.
_ATTR_SOFT_ERRNOS = {errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM, errno.EACCES, errno.EINVAL}


class Policy(Value):
    __slots__ = ("same_owner", "privileged", "warn")
    same_owner: bool
    privileged: bool  # may mknod and set setuid/setgid bits
    warn: Callable[[str], None]

    def __init__(self, same_owner: bool, privileged: bool, warn: Callable[[str], None]) -> None:
        object.__setattr__(self, "same_owner", same_owner)
        object.__setattr__(self, "privileged", privileged)
        object.__setattr__(self, "warn", warn)


class DirMeta:
    __slots__ = ("mode", "atime_ns", "mtime_ns")

    def __init__(self, mode: int, atime_ns: int, mtime_ns: int) -> None:
        self.mode = mode
        self.atime_ns = atime_ns
        self.mtime_ns = mtime_ns


class DeferredDirs:
    """Directory modes and times, applied after the last entry: adding children
    changes a directory's mtime, and a read-only mode would block them."""

    __slots__ = ("by_path",)

    def __init__(self) -> None:
        self.by_path: dict[Parts, DirMeta] = {}


def mode_bits(info: tarfile.TarInfo, policy: Policy) -> int:
    # Without privileges setuid/setgid are refused or silently dropped by the
    # kernel; dropping them ourselves keeps the result predictable.
    mask = 0o7777 if policy.privileged else 0o1777
    return info.mode & mask


def times_ns(info: tarfile.TarInfo) -> tuple[int, int]:
    mtime_ns = int(float(info.mtime) * 1e9)
    atime = info.pax_headers.get("atime")
    try:
        atime_ns = int(float(atime) * 1e9) if atime is not None else mtime_ns
    except ValueError:
        atime_ns = mtime_ns
    return atime_ns, mtime_ns


def _soft(policy: Policy, what: str, e: OSError) -> None:
    if e.errno not in _ATTR_SOFT_ERRNOS:
        raise e
    policy.warn(f"{what}: {os.strerror(e.errno or 0).lower()} (ignored)")


def chown(policy: Policy, info: tarfile.TarInfo, parent_fd: int, name: str, fd: int = -1) -> None:
    if not policy.same_owner:
        return
    try:
        if fd >= 0:
            os.fchown(fd, info.uid, info.gid)
        else:
            os.chown(name, info.uid, info.gid, dir_fd=parent_fd, follow_symlinks=False)
    except OSError as e:
        # EINVAL: the id is not mapped in this user namespace.
        _soft(policy, f"{info.name}: chown {info.uid}:{info.gid}", e)


def set_xattrs(policy: Policy, info: tarfile.TarInfo, target: int | str) -> None:
    for key, value in info.pax_headers.items():
        if not key.startswith(_XATTR_PREFIX):
            continue
        attr = key[len(_XATTR_PREFIX) :]
        # tarfile decodes PAX values with surrogateescape: this restores the
        # original bytes of binary values such as security.capability.
        data = value.encode("utf-8", "surrogateescape")
        try:
            if isinstance(target, int):
                os.setxattr(target, attr, data)
            else:
                os.setxattr(target, attr, data, follow_symlinks=False)
        except OSError as e:
            _soft(policy, f"{info.name}: xattr {attr}", e)


def _fd_path(parent_fd: int, name: str) -> str:
    # The xattr calls take no dir_fd; /proc/self/fd/N is the parent itself,
    # and with follow_symlinks=False the final name is not followed.
    return f"/proc/self/fd/{parent_fd}/{name}"


def write_file(
    policy: Policy, info: tarfile.TarInfo, read: Callable[[int], bytes], parent_fd: int, name: str
) -> None:
    """Create a regular file from ``read(n)``, which returns the entry's data in
    pieces (fewer bytes than asked only at the end of the stream)."""
    fd = os.open(name, _FILE_FLAGS, 0o600, dir_fd=parent_fd)
    try:
        _copy(read, info.size, fd)
        chown(policy, info, parent_fd, name, fd)
        # After chown: chown clears setuid/setgid.
        os.fchmod(fd, mode_bits(info, policy))
        set_xattrs(policy, info, fd)
        atime_ns, mtime_ns = times_ns(info)
        os.utime(fd, ns=(atime_ns, mtime_ns))
    finally:
        os.close(fd)


def _copy(read: Callable[[int], bytes], size: int, fd: int) -> None:
    remaining = size
    while remaining > 0:
        chunk = read(min(remaining, CHUNK_SIZE))
        if not chunk:
            raise Truncated("truncated tar stream: ends inside the entry's data")
        remaining -= len(chunk)
        write_all(fd, chunk)


def make_dir(
    policy: Policy,
    info: tarfile.TarInfo,
    parent_fd: int,
    name: str,
    path: Parts,
    dirs: DeferredDirs,
    *,
    exists: bool,
) -> None:
    """Create the directory, or merge into the existing one (keep its contents,
    take this entry's owner, mode and times)."""
    if not exists:
        # Owner-writable until the end, whatever the final mode.
        os.mkdir(name, 0o700, dir_fd=parent_fd)
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent_fd)
    try:
        chown(policy, info, parent_fd, name, fd)
        set_xattrs(policy, info, fd)
    finally:
        os.close(fd)
    atime_ns, mtime_ns = times_ns(info)
    dirs.by_path[path] = DirMeta(mode_bits(info, policy), atime_ns, mtime_ns)


def make_symlink(policy: Policy, info: tarfile.TarInfo, parent_fd: int, name: str) -> None:
    # The target is stored as given: it is only ever followed through
    # rootpath.Root, which keeps it inside the root.
    os.symlink(info.linkname, name, dir_fd=parent_fd)
    chown(policy, info, parent_fd, name)
    set_xattrs(policy, info, _fd_path(parent_fd, name))
    os.utime(name, ns=times_ns(info), dir_fd=parent_fd, follow_symlinks=False)


def make_special(policy: Policy, info: tarfile.TarInfo, parent_fd: int, name: str) -> bool:
    """FIFO or device node; False (with a warning) when devices cannot be made."""
    if info.isfifo():
        os.mkfifo(name, 0o600, dir_fd=parent_fd)
    else:
        kind = stat.S_IFCHR if info.ischr() else stat.S_IFBLK
        try:
            os.mknod(name, kind | 0o600, os.makedev(info.devmajor, info.devminor), dir_fd=parent_fd)
        except PermissionError:
            policy.warn(f"{info.name}: device node skipped: not permitted")
            return False
    chown(policy, info, parent_fd, name)
    _chmod_node(info, parent_fd, name, mode_bits(info, policy))
    set_xattrs(policy, info, _fd_path(parent_fd, name))
    os.utime(name, ns=times_ns(info), dir_fd=parent_fd, follow_symlinks=False)
    return True


def _chmod_node(info: tarfile.TarInfo, parent_fd: int, name: str, mode: int) -> None:
    """chmod the node just made, never what a symlink put in its place names.

    Linux has no lchmod, and a node cannot be opened for fchmod without
    side effects (a FIFO blocks, a device opens). Someone who can write in
    the directory (an image's 1777 /tmp) could swap the node for a link to
    /etc/shadow between mknod and a chmod by name. An O_PATH descriptor
    opened without following, checked to be the node, is chmod-ed through
    its /proc link, which names that inode and nothing else.
    """
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
    try:
        kind = stat.S_IFMT(os.fstat(fd).st_mode)
        if kind not in (stat.S_IFIFO, stat.S_IFCHR, stat.S_IFBLK):
            raise ArchiveError(f"{info.name}: replaced while being created")
        os.chmod(f"/proc/self/fd/{fd}", mode)
    finally:
        os.close(fd)


def finish_dirs(dirs: DeferredDirs, open_dir: Callable[[Parts], int | None]) -> None:
    """Apply deferred modes and times, deepest first so a parent's restrictive
    mode cannot block its children."""
    for path in sorted(dirs.by_path, key=len, reverse=True):
        meta = dirs.by_path[path]
        fd = open_dir(path)
        if fd is None:  # removed or replaced later in the layer
            continue
        try:
            os.fchmod(fd, meta.mode)
            os.utime(fd, ns=(meta.atime_ns, meta.mtime_ns))
        finally:
            os.close(fd)
