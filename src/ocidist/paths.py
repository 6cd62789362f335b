"""Default locations, shared by the `dist` command and the library facade."""

from __future__ import annotations

import os


def default_root() -> str:
    """The content store: ``$XDG_DATA_HOME/ocidist`` (``~/.local/share/ocidist``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return os.path.join(base, "ocidist")
