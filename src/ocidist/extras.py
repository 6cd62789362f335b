"""Optional parts of the package and the one line that says how to get them.

`pip install ocidist` is the whole client (zstd included); the gRPC daemon
and its client mode need the ``serve`` extra (grpcio and protobuf, ~22 MB),
which most users never run."""

from __future__ import annotations

from ocidist.errors import FailedPrecondition


def require_serve(what: str) -> None:
    """Raise one clear error when grpcio/protobuf are missing, naming the
    extra, before anything imports them (an ImportError deep inside the API
    modules would say neither what failed nor what to install)."""
    try:
        import google.protobuf  # noqa: F401
        import grpc  # noqa: F401
    except ImportError as e:
        raise FailedPrecondition(
            f"{what}: needs the 'serve' extra ({e.name or 'grpcio'} is not installed): "
            "pip install 'ocidist[serve]'"
        ) from None
