"""A small filesystem to fill up: a tmpfs mounted for the length of a block.

Mounting needs root (the tests skip without it, the reliability script
reports the kind as skipped). tmpfs counts space in 4 KiB pages, data and
SQLite's shared-memory file alike, and returns ENOSPC the moment a page
cannot be had: the same "disk full to the last block" a real disk gives.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

PAGE = 4096


class MountError(RuntimeError):
    pass


@functools.cache
def can_mount() -> bool:
    """Whether this process may mount a tmpfs: root, and (in a container)
    allowed to mount; tried once with a throw-away mount."""
    if os.geteuid() != 0:
        return False
    with tempfile.TemporaryDirectory(prefix="ocidist-tmpfs-probe-") as d:
        try:
            with tmpfs(Path(d), 4):
                return True
        except MountError:
            return False


@contextlib.contextmanager
def tmpfs(path: Path, size_kib: int) -> Iterator[Path]:
    """``path`` (made if need be) with a tmpfs of ``size_kib`` KiB on it,
    unmounted afterwards (lazily, so a process still inside cannot keep it)."""
    if size_kib <= 0:
        raise ValueError("a tmpfs of size 0 would have no limit")
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        raise MountError(f"mount tmpfs on {path}: {r.stderr.strip() or r.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def resize(path: Path, size_kib: int) -> None:
    """Give the tmpfs at ``path`` a new size (data kept)."""
    subprocess.run(
        ["mount", "-o", f"remount,size={size_kib}k", str(path)], capture_output=True, check=True
    )


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def used_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def fill(path: Path, leave: int = 0, name: str = "filler") -> int:
    """Take the free space of the filesystem holding the directory ``path``,
    all of it (to the last block) or all but ``leave`` bytes; returns the
    bytes taken. The filler file is ``path/name``."""
    target = path / name
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    taken = 0
    try:
        want = free_bytes(path) - leave
        if want > 0 and leave:
            os.posix_fallocate(fd, os.fstat(fd).st_size, want)
            return want
        # Write until ENOSPC in smaller and smaller pieces: what statvfs says
        # is free and what a write can still get may differ by a page or two.
        for piece in (1 << 20, 64 << 10, PAGE, 512, 1):
            block = b"\0" * piece
            while True:
                try:
                    n = os.write(fd, block)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
                taken += n
                if n < piece:
                    break
        return taken
    finally:
        os.close(fd)
