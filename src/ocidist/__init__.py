"""ocidist: OCI image distribution primitives and the `dist` command."""

from __future__ import annotations

# Not typing's TYPE_CHECKING: `dist` imports this package first, and typing
# (with re) is ~8 ms before cli.program can begin its connection.
TYPE_CHECKING = False

__version__ = "0.1.0"
__all__ = ["Client", "ProgressEvent", "__version__"]

if TYPE_CHECKING:
    from typing import Any

    from ocidist.client import Client, ProgressEvent


def __getattr__(name: str) -> Any:
    # Imported on first use: `dist` imports this package on every start and
    # must not pay for the facade.
    if name in ("Client", "ProgressEvent"):
        from ocidist import client

        return getattr(client, name)
    raise AttributeError(f"module 'ocidist' has no attribute {name!r}")
