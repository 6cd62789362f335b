"""Default locations, shared by the `dist` command and the library facade."""

from __future__ import annotations

import os


def default_root() -> str:
    """The content store: ``$XDG_DATA_HOME/ocidist`` (``~/.local/share/ocidist``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return os.path.join(base, "ocidist")


def big_temp_dir() -> str:
    """Where big temporary files go (a decompressed archive, a packed
    directory, a copy's staging store): ``$TMPDIR``, else ``/var/tmp``, as
    containers/image (skopeo, podman) puts them, since ``/tmp`` is often a
    small tmpfs in memory."""
    env = os.environ.get("TMPDIR")
    if env:
        return env
    if os.access("/var/tmp", os.W_OK | os.X_OK):
        return "/var/tmp"
    import tempfile

    return tempfile.gettempdir()
