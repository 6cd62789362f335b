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
    import importlib

    # Named as pip knows them (protobuf's module is "google.protobuf"). Imported,
    # not just looked for: the daemon imports them next anyway.
    missing = []
    for package, module in (("grpcio", "grpc"), ("protobuf", "google.protobuf")):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise FailedPrecondition(
            f"{what}: needs the 'serve' extra ({' and '.join(missing)} {verb} not installed): "
            "pip install 'ocidist[serve]'"
        )
