"""Where the daemon's Unpack may write: directories below the roots the
operator named (``dist serve --unpack-root DIR``, or ``unpack_roots`` in its
config file), and nowhere else.

An unpack runs as the daemon's user (often root) and creates whatever the
image holds: setuid files, device nodes, FIFOs. A client must not choose
where that happens beyond the operator's roots. The path a client names is
checked and then *opened*, component by component, from the root's own file
descriptor with ``O_NOFOLLOW``: a symlink below a root is refused, ``..`` is
refused before anything is looked up, and a component swapped for a symlink
after the check changes nothing, because the unpack writes through the
descriptor it got (``/proc/self/fd/N/.``), not through the path.

Nobody else may write where the daemon unpacks: a root, and every directory
on the way below it, belongs to the daemon's user and is writable by it
alone (else another user could plant or swap what an unpack makes), and the
root's own path is walked again for each unpack without following a link (a
parent's owner could otherwise swap the root for a link to ``/etc``). As
root, a root must also be closed to other users (mode 0700): the setuid
files and device nodes an image unpacks below it are root's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator, Sequence

from ocidist.errors import DistError, InvalidArgument, PermissionDenied
from ocidist.value import Value

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_STEP_FLAGS = _DIR_FLAGS | os.O_NOFOLLOW
# Mode of the directories an unpack makes below a root (the image's root
# directory gets its own mode from the image where it says one).
DIR_MODE = 0o755
_OTHERS_WRITE = 0o022
_OTHERS_ANY = 0o077


def _not_private(st: os.stat_result, *, top: bool) -> str | None:
    """Why a directory (``top``: an unpack root itself) is not the daemon's
    alone, or None when it is."""
    me = os.geteuid()
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid != me:
        return f"owned by uid {st.st_uid}, not by the daemon's user (uid {me})"
    if mode & _OTHERS_WRITE:
        return f"writable by other users (mode {mode:o})"
    if top and me == 0 and mode & _OTHERS_ANY:
        return (
            f"reachable by other users (mode {mode:o}); as root an unpack makes the "
            "image's setuid files and device nodes, which they could use (chmod 700 it)"
        )
    return None


class _Root(Value):
    __slots__ = ("given", "real", "path")
    given: tuple[str, ...]  # components as the operator wrote it (made absolute)
    real: tuple[str, ...]  # and with its symlinks resolved at start-up
    path: str  # the real path, walked again (no link followed) for each unpack

    def __init__(self, given: tuple[str, ...], real: tuple[str, ...], path: str) -> None:
        object.__setattr__(self, "given", given)
        object.__setattr__(self, "real", real)
        object.__setattr__(self, "path", path)


def _components(path: str) -> tuple[str, ...]:
    return tuple(p for p in path.split("/") if p not in ("", "."))


class Destination:
    """An opened unpack directory: write through ``path`` (its descriptor),
    then ``close``; ``discard`` removes it again if this unpack made it.
    A handle (it owns two descriptors), not a value."""

    def __init__(
        self, path: str, shown: str, fd: int, parent_fd: int, name: str, created: bool
    ) -> None:
        self.path = path
        self.shown = shown  # the path the client named, for messages
        self._fd = fd
        self._parent_fd = parent_fd
        self._name = name
        self._created = created

    def discard(self) -> None:
        """After a failed unpack (which emptied it): remove a directory we made."""
        if self._created:
            with contextlib.suppress(OSError):
                os.rmdir(self._name, dir_fd=self._parent_fd)

    def close(self) -> None:
        for fd in (self._fd, self._parent_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


class UnpackRoots:
    """The operator's unpack roots; each must be an existing directory that
    is the daemon's user's alone (0700 when that user is root)."""

    def __init__(self, roots: Sequence[str]) -> None:
        self._roots: list[_Root] = []
        for text in roots:
            if not text or "\0" in text:
                raise InvalidArgument(f"unpack root {text!r}: not a directory path")
            given = os.path.abspath(os.path.expanduser(text))
            real = os.path.realpath(given)
            if not os.path.isdir(real):
                raise InvalidArgument(f"unpack root {text}: not an existing directory")
            if real == "/":
                raise InvalidArgument(f"unpack root {text}: the whole filesystem is no confinement")
            why = _not_private(os.stat(real), top=True)
            if why is not None:
                raise InvalidArgument(f"unpack root {text}: {why}")
            self._roots.append(_Root(_components(given), _components(real), real))

    def __bool__(self) -> bool:
        return bool(self._roots)

    def __str__(self) -> str:
        return ", ".join(r.path for r in self._roots) or "none"

    def _match(self, parts: tuple[str, ...]) -> tuple[_Root, tuple[str, ...]] | None:
        for root in self._roots:
            for prefix in (root.given, root.real):
                if len(parts) > len(prefix) and parts[: len(prefix)] == prefix:
                    return root, parts[len(prefix) :]
        return None

    @contextlib.contextmanager
    def open(self, path: str) -> Iterator[Destination]:
        """Open (making it if absent) the directory ``path`` for an unpack;
        PermissionDenied unless it lies strictly below a root, reached
        without ``..`` or symlinks; InvalidArgument unless absent or empty."""
        what = f"unpack: {path}"
        if not self._roots:
            raise PermissionDenied(
                f"{what}: this daemon allows no unpack directories "
                "(its operator names them with `dist serve --unpack-root DIR`)"
            )
        if not path.startswith("/") or "\0" in path:
            raise InvalidArgument(f"{what}: the directory must be an absolute path")
        if ".." in path.split("/"):
            raise PermissionDenied(f"{what}: '..' is not allowed in an unpack directory")
        found = self._match(_components(path))
        if found is None:
            raise PermissionDenied(f"{what}: not below an unpack root of this daemon ({self})")
        root, rest = found
        dest = _open_below(root, rest, what, path)
        try:
            yield dest
        finally:
            dest.close()


def _open_root(root: _Root, what: str) -> int:
    """The root, reached from ``/`` without following a link and still the
    daemon's alone (both as checked at start-up)."""
    what = f"{what}: unpack root {root.path}"
    fd = os.open("/", _DIR_FLAGS)
    try:
        for name in root.real:
            child = _open_dir(fd, name, what, "(it changed since the daemon started)")
            os.close(fd)
            fd = child
        _check_private(fd, what, top=True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_dir(parent: int, name: str, what: str, why_link: str) -> int:
    """``name`` in ``parent``, a directory reached without following a link
    (PermissionDenied otherwise, saying ``why_link``); FileNotFoundError
    when absent."""
    try:
        return os.open(name, _STEP_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        raise
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise PermissionDenied(
                f"{what}: {name!r} is a symlink or not a directory {why_link}"
            ) from None
        raise DistError(f"{what}: {name}: {os.strerror(e.errno or errno.EIO).lower()}") from e


def _check_private(fd: int, what: str, *, top: bool = False) -> None:
    why = _not_private(os.fstat(fd), top=top)
    if why is not None:
        raise PermissionDenied(f"{what}: {why}")


def _open_below(root: _Root, rest: tuple[str, ...], what: str, shown: str) -> Destination:
    fd = _open_root(root, what)
    try:
        for name in rest[:-1]:
            child = _step(fd, name, what, create=True)
            os.close(fd)
            fd = child
        name = rest[-1]
        created = _mkdir(fd, name, what)
        child = _step(fd, name, what, create=False)
    except BaseException:
        os.close(fd)
        raise
    try:
        if os.listdir(child):
            raise InvalidArgument(f"{what}: directory is not empty")
    except BaseException:
        os.close(child)
        os.close(fd)
        raise
    # The trailing "/." makes the path end in the directory itself, not in
    # the magic link: code that opens it with O_NOFOLLOW (archive.rootpath)
    # still follows the link as an inner component.
    return Destination(f"/proc/self/fd/{child}/.", shown, child, fd, name, created)


def _mkdir(parent: int, name: str, what: str) -> bool:
    try:
        os.mkdir(name, DIR_MODE, dir_fd=parent)
        return True
    except FileExistsError:
        return False
    except OSError as e:
        raise DistError(f"{what}: {name}: {os.strerror(e.errno or errno.EIO).lower()}") from e


def _step(parent: int, name: str, what: str, *, create: bool) -> int:
    """Open the directory ``name`` in ``parent`` without following a link;
    it must be the daemon's alone."""
    for _ in range(2):
        try:
            fd = _open_dir(parent, name, what, "(no link is followed below an unpack root)")
        except FileNotFoundError:
            if not create:
                break
            _mkdir(parent, name, what)  # then open what is there now
            continue
        try:
            _check_private(fd, f"{what}: {name!r}")
        except BaseException:
            os.close(fd)
            raise
        return fd
    raise DistError(f"{what}: {name}: removed while being opened")
