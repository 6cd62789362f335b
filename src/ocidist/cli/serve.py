"""`dist serve`: the store of --root over gRPC (containerd-compatible content,
images and leases services, plus ocidist.v1.Distribution)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

from ocidist.cli.context import Context


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "serve",
        parents=[common],
        help="serve the content store over gRPC (containerd API; ctr works against it)",
        description="Serve the store of --root over gRPC until SIGTERM/SIGINT. Listens on "
        "--address (unix:///path, a path, or tcp://127.0.0.1:PORT; default <root>/dist.sock). "
        "containerd's content, images and leases services are wire-compatible, so "
        "`ctr --address SOCK content ls` works; every containerd namespace sees the same store.",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    from ocidist.api import address as addr
    from ocidist.api.server import Server

    text = getattr(args, "address", None) or os.path.join(ctx.root, "dist.sock")
    address = addr.parse(text)
    server = Server(ctx.root, address, lambda: _resolver(ctx))
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        if not ctx.quiet:
            print(f"dist serve: listening on {server.listening}", file=sys.stderr, flush=True)
        # A timed wait, so signal handlers run promptly in the main thread.
        while not stop.wait(0.5):
            pass
        if not ctx.quiet:
            print("dist serve: shutting down", file=sys.stderr, flush=True)
    finally:
        server.stop()
        for s, h in previous.items():
            signal.signal(s, h)
    return 0


def _resolver(ctx: Context) -> Any:
    """A resolver per daemon-side pull, with the options `dist serve` was given
    (hosts dir, plain HTTP, credentials); no deadline: the daemon runs on."""
    return ctx.new_resolver(deadline=False)
