"""Resolve paths inside a root directory as if that directory were ``/``.

A layer may plant a symlink (``etc -> /``, ``x -> ../../..``) and then write
through it with a later entry. Like continuity's ``RootPath`` we follow such
links *inside* the root: an absolute target restarts at the root and ``..``
never climbs above it. Unlike a string-based resolver, we walk with directory
file descriptors and ``O_NOFOLLOW``, so each step is checked on the object we
then use, and nothing is ever opened through a path that could leave the root.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence

from ocidist.errors import (
    PathError,
)

# Linux gives up after 40 links in one lookup (ELOOP); we allow as many per
# resolved path so that legitimate deep link chains in rootfs trees work.
MAX_LINKS = 40

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Entries come grouped by directory, so a handful of cached parent fds saves
# nearly every walk; two are needed at once for a hardlink.
_CACHE_SIZE = 8

Parts = tuple[str, ...]


def clean(name: str) -> Parts:
    """Lexically clean ``name`` relative to the root, as Go's
    ``filepath.Clean("/" + name)``: ``/../x`` and ``a/../../x`` become ``x``."""
    out: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out:
                out.pop()
            continue
        out.append(part)
    return tuple(out)


class Root:
    """An open root directory; hands out directory fds resolved inside it.

    ``on_mkdir`` is told about each missing parent directory we create (with its
    path relative to the root), so callers can count it as theirs.
    """

    def __init__(self, path: str, *, on_mkdir: Callable[[Parts], None] | None = None) -> None:
        self.path = path
        self.fd = os.open(path, _DIR_FLAGS)
        self._on_mkdir = on_mkdir
        self._cache: OrderedDict[Parts, tuple[int, Parts]] = OrderedDict()

    def close(self) -> None:
        self.invalidate()
        os.close(self.fd)

    def __enter__(self) -> Root:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def invalidate(self) -> None:
        """Forget cached directories; call after anything is removed or replaced."""
        for fd, _ in self._cache.values():
            os.close(fd)
        self._cache.clear()

    def dir(self, parts: Sequence[str], *, create: bool = True) -> tuple[int, Parts]:
        """A directory fd for ``parts`` (symlinks followed inside the root) and its
        physical path. The fd belongs to this object: do not close it; it stays
        valid until ``invalidate()`` or until more than ``_CACHE_SIZE`` other
        directories were asked for."""
        key = tuple(parts)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        fd, physical = self._walk(key, create=create)
        self._cache[key] = (fd, physical)
        if len(self._cache) > _CACHE_SIZE:
            _, (old, _) = self._cache.popitem(last=False)
            os.close(old)
        return fd, physical

    def resolve(self, parts: Sequence[str]) -> tuple[int, Parts, str]:
        """For a final component that must not be followed (the entry itself):
        the parent's fd, the parent's physical path and the final name."""
        if not parts:
            raise PathError("the root itself has no parent")
        fd, physical = self.dir(parts[:-1])
        return fd, physical, parts[-1]

    def _walk(self, parts: Parts, *, create: bool) -> tuple[int, Parts]:
        stack: list[int] = []  # one open fd per component of ``names``
        names: list[str] = []
        todo: deque[str] = deque(parts)
        links = 0
        try:
            while todo:
                part = todo.popleft()
                if part in ("", "."):
                    continue
                if part == "..":
                    # Semantic `..` (from a link target): one level up, never above root.
                    if names:
                        names.pop()
                        os.close(stack.pop())
                    continue
                cur = stack[-1] if stack else self.fd
                try:
                    fd = self._open_step(cur, part, names, create=create)
                except OSError as e:
                    if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    target = _link_target(cur, part)
                    if target is None:
                        raise PathError(f"{'/'.join([*names, part])}: not a directory") from None
                    links += 1
                    if links > MAX_LINKS:
                        raise PathError(
                            f"{'/'.join(parts)}: too many levels of symbolic links"
                        ) from None
                    if target.startswith("/"):
                        # Absolute targets are re-rooted: restart at our root.
                        for f in stack:
                            os.close(f)
                        stack.clear()
                        names.clear()
                    todo.extendleft(reversed(target.split("/")))
                    continue
                stack.append(fd)
                names.append(part)
            top = stack.pop() if stack else os.dup(self.fd)
            return top, tuple(names)
        finally:
            for f in stack:
                os.close(f)

    def _open_step(self, cur: int, part: str, names: list[str], *, create: bool) -> int:
        try:
            return os.open(part, _DIR_FLAGS, dir_fd=cur)
        except FileNotFoundError:
            if not create:
                raise
        # containerd and umoci both create missing parents with 0755.
        os.mkdir(part, 0o755, dir_fd=cur)
        if self._on_mkdir is not None:
            self._on_mkdir((*names, part))
        return os.open(part, _DIR_FLAGS, dir_fd=cur)


def _link_target(dir_fd: int, name: str) -> str | None:
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        return None
    return os.readlink(name, dir_fd=dir_fd)


def lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    """``lstat`` of ``name`` in ``dir_fd``, or None when it does not exist."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def remove_at(dir_fd: int, name: str, st: os.stat_result | None = None) -> bool:
    """Remove ``name`` (a whole tree if it is a real directory) from ``dir_fd``;
    symlinks are removed, never followed. False if there was nothing to remove."""
    if st is None:
        st = lstat_at(dir_fd, name)
        if st is None:
            return False
    if stat.S_ISDIR(st.st_mode):
        # shutil.rmtree with dir_fd walks with fds and O_NOFOLLOW (its
        # symlink-attack-safe variant), so it cannot be led outside the tree.
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)
    return True


def list_at(dir_fd: int) -> Iterable[str]:
    """Names in the directory ``dir_fd`` (the fd's offset is rewound first)."""
    # scandir on an fd duplicates it internally, so ours stays usable.
    with os.scandir(dir_fd) as it:
        return [e.name for e in it]
