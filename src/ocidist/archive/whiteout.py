"""OCI whiteouts: ``.wh.<name>`` deletes ``<name>`` from lower layers and
``.wh..wh..opq`` hides every lower-layer child of its directory.

Both apply to *lower* layers only (image-spec, "Whiteouts"): what the same
layer adds stays, whichever order the entries come in. So we remember, by
physical path inside the root, every entry this layer wrote and every directory
above one ("touched"); an opaque marker then removes only what is untouched.
"""

from __future__ import annotations

import os
import stat

from ocidist.archive.rootpath import Parts, Root, list_at, lstat_at, remove_at

WHITEOUT_PREFIX = ".wh."
# Names under this prefix are aufs bookkeeping (hardlink dirs and the like),
# never content; containerd and umoci skip them, and so do we.
WHITEOUT_META_PREFIX = ".wh..wh."
OPAQUE_MARKER = ".wh..wh..opq"


class LayerTree:
    """The paths one layer has written so far (physical, relative to the root)."""

    def __init__(self) -> None:
        self._touched: set[Parts] = {()}

    def add(self, path: Parts) -> None:
        # Walk up until an ancestor is already known: O(depth) only the first time.
        p = path
        while p not in self._touched:
            self._touched.add(p)
            p = p[:-1]

    def whiteout(self, root: Root, dir_fd: int, dir_path: Parts, name: str) -> bool:
        """Remove ``name`` in ``dir_fd`` unless this layer wrote it; True if removed."""
        if (*dir_path, name) in self._touched:
            return False
        removed = remove_at(dir_fd, name)
        if removed:
            root.invalidate()
        return removed

    def opaque(self, root: Root, dir_fd: int, dir_path: Parts) -> None:
        """Hide the lower-layer children of ``dir_path`` (and of any directory
        below it that this layer merged into), keeping this layer's own."""
        removed = self._prune(dir_fd, dir_path)
        if removed:
            root.invalidate()

    def _prune(self, dir_fd: int, dir_path: Parts) -> bool:
        removed = False
        for name in list_at(dir_fd):
            path = (*dir_path, name)
            if path not in self._touched:
                removed = remove_at(dir_fd, name) or removed
                continue
            st = lstat_at(dir_fd, name)
            if st is not None and stat.S_ISDIR(st.st_mode):
                # A directory of ours may have merged into a lower one: its
                # lower children are hidden by the marker too.
                sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
                try:
                    removed = self._prune(sub, path) or removed
                finally:
                    os.close(sub)
        return removed
