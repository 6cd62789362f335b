"""`dist serve`: the store of --root over gRPC (containerd-compatible content,
images and leases services, plus ocidist.v1.Distribution)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

from ocidist.cli.context import Context, add_global_options

# The global options that mean something to the daemon: where the store and
# the socket are, and how daemon-side pulls reach registries.
_APPLIES = frozenset(
    {"--root", "--address", "--hosts-dir", "--user", "--password-stdin", "--plain-http"}
    | {"--insecure", "--debug", "--quiet"}
)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the content store over gRPC (containerd API; ctr works against it)",
        description="Serve the store of --root over gRPC until SIGTERM/SIGINT. "
        "containerd's content, images and leases services are wire-compatible, so "
        "`ctr --address SOCK content ls` works; every containerd namespace sees the same store.",
        examples=(
            "dist serve --root /var/lib/dist",
            "dist serve --address tcp://127.0.0.1:7000",
            "ctr --address ~/.local/share/ocidist/dist.sock content ls",
        ),
        globals_note=False,
    )
    # Its own copy of the global options, listing those that apply (the others
    # are accepted and ignored, as before any command).
    add_global_options(
        p,
        suppress=True,
        shown=_APPLIES,
        helps={
            "--address": "where to listen: unix:///path, a path, or tcp://127.0.0.1:PORT "
            "(env DIST_ADDRESS; default DIR/dist.sock)",
            "--user": "credentials for the registries daemon-side pulls talk to "
            "(otherwise Docker's config.json, then auth.json)",
            "--quiet": "no start/stop messages",
        },
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    from ocidist.extras import require_serve

    require_serve("serve")
    from ocidist.api import address as addr
    from ocidist.api.server import Server

    _log_to_stderr(ctx)
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


def _log_to_stderr(ctx: Context) -> None:
    """The daemon's own log (cancelled calls, refusals, internal errors) on
    stderr, one line each; --debug adds every refused call's reason."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("dist serve: %(message)s"))
    log = logging.getLogger("ocidist.api")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.DEBUG if ctx.debug else logging.WARNING if ctx.quiet else logging.INFO)


def _resolver(ctx: Context) -> Any:
    """A resolver per daemon-side pull, with the options `dist serve` was given
    (hosts dir, plain HTTP, credentials); no deadline: the daemon runs on."""
    return ctx.new_resolver(deadline=False)
