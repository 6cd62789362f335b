"""Describe a directory tree for comparing unpack results (ours vs umoci)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Path -> (type, mode, owner, link target or (content hash, first path of inode)).

    Hardlinked files are described by the first path of their inode, so two
    trees match only if the same paths share data; owners count only as root.
    """
    out: dict[str, tuple[object, ...]] = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted([*dirnames, *filenames]):
            p = Path(dirpath) / name
            st = p.lstat()
            rel = p.relative_to(root).as_posix()
            extra: object = None
            if stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                extra = (
                    hashlib.sha256(p.read_bytes()).hexdigest(),
                    inodes.setdefault(st.st_ino, rel),
                )
            owner = (st.st_uid, st.st_gid) if os.geteuid() == 0 else None
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), owner, extra)
    return out
