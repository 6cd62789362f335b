"""`dist serve`: the store of --root over gRPC (containerd-compatible content,
images and leases services, plus ocidist.v1.Distribution)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from ocidist.cli.context import Context, add_global_options
from ocidist.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Callable

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
        "`ctr --address SOCK content ls` works; images and content are shared by every "
        "containerd namespace, leases belong to theirs. The API has no authentication: "
        "the socket is 0600, Unpack writes only below --unpack-root directories, and "
        "credentials go only to the registry they are for.",
        examples=(
            "dist serve --root /var/lib/dist",
            "dist serve --unpack-root /srv/unpack",
            "dist serve -u ci --password-stdin --user-registry registry.example.com",
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
            "--user": "credentials for the one registry --user-registry names (a daemon "
            "pulls from any host its clients name; others get theirs from Docker's "
            "config.json, then auth.json)",
            "--quiet": "no start/stop messages",
        },
    )
    g = p.add_argument_group("daemon options")
    g.add_argument(
        "--user-registry",
        metavar="HOST",
        help="the registry --user's credentials are for (required with --user)",
    )
    g.add_argument(
        "--unpack-root",
        metavar="DIR",
        action="append",
        default=[],
        help="Unpack may write below DIR (repeatable; none: Unpack is refused); DIR "
        "must be the daemon user's and writable by it alone (as root: mode 0700); "
        "symlinks and '..' below it are refused",
    )
    g.add_argument(
        "--config",
        metavar="FILE",
        help="TOML file with unpack_roots = [...] and unauthenticated_tcp = true|false",
    )
    g.add_argument(
        "--unauthenticated-tcp",
        action="store_true",
        help="allow a TCP address when running as root: the API has no authentication, "
        "so every local user can then act as root through it",
    )
    # A daemon runs until stopped: DIST_TIMEOUT in its environment is no deadline.
    p.set_defaults(handler=run, deadline=False)


def run(args: argparse.Namespace, ctx: Context) -> int:
    # SIGTERM/SIGINT only ask the daemon to stop, from its first instant: an
    # exception raised by a handler in the middle of importing grpc or of
    # building the server would end the start-up half-done (grpc's import
    # then even reports itself "not installed"). A stop asked for while
    # starting is honoured once started, through the one shutdown path.
    import signal  # here: every `dist --help` imports this module

    # A stop is a byte on a pipe, written by the C-level handler itself
    # (set_wakeup_fd) whichever thread the kernel hands the signal to; the
    # main thread's blocking read of it returns at once. The Python handler
    # does nothing and takes no lock. It set a threading.Event before: run
    # while the main thread was inside that Event's own wait() (holding the
    # Event's lock, as at each of its wake-ups), set() deadlocked and the
    # daemon never stopped (~1 SIGSTOP/SIGCONT'd daemon in 6). A plain read
    # with a Python handler writing would not do: a signal taken by one of
    # grpc's threads runs no Python until the main thread runs some.
    stops = frozenset({signal.SIGTERM, signal.SIGINT})
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    previous = {s: signal.signal(s, lambda signum, frame: None) for s in stops}
    from ocidist.cli import main

    if main.terminate_requested:  # before this handler, and its exception lost
        os.write(wake_w, bytes([signal.SIGTERM]))
    try:
        return _serve(args, ctx, lambda: _wait_for(wake_r, stops))
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        signal.set_wakeup_fd(wakeup)
        os.close(wake_r)
        os.close(wake_w)


def _wait_for(fd: int, signals: frozenset[int]) -> None:
    """Until one of ``signals`` is among the signal numbers read from ``fd``
    (others with a Python handler are written there too)."""
    while not signals.intersection(os.read(fd, 512)):
        pass


def _serve(args: argparse.Namespace, ctx: Context, wait_for_stop: Callable[[], None]) -> int:
    from ocidist.extras import require_serve

    require_serve("serve")
    from ocidist.api import address as addr
    from ocidist.api.server import Server

    _log_to_stderr(ctx)
    text = getattr(args, "address", None) or os.path.join(ctx.root, "dist.sock")
    address = addr.parse(text)
    credentials = _credentials(args, ctx)
    server = Server(
        ctx.root, address, lambda: ctx.new_resolver(credentials, deadline=False), _policy(args)
    )
    try:
        server.start()
        if not ctx.quiet:
            print(f"dist serve: listening on {server.listening}", file=sys.stderr, flush=True)
        wait_for_stop()
        if not ctx.quiet:
            print("dist serve: shutting down", file=sys.stderr, flush=True)
    finally:
        server.stop()
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


def _credentials(args: argparse.Namespace, ctx: Context) -> Any:
    """Per registry: --user for the one --user-registry names, Docker's
    config.json (files, helpers) and auth.json for each host itself. A
    daemon pulls from any host a client names; credentials given to it for
    all hosts would go to whichever host a client picks."""
    from ocidist.remotes.docker import credentials as creds

    registry = getattr(args, "user_registry", None)
    if not getattr(args, "user", None):
        if registry:
            raise InvalidArgument("serve: --user-registry needs --user")
        return ctx.credentials()
    if not registry:
        raise InvalidArgument(
            "serve: --user needs --user-registry HOST: the daemon pulls from any registry "
            "its clients name, and --user's credentials go only to the one named"
        )
    cred = ctx.user_credential()
    assert cred is not None
    return creds.chain(creds.for_registry(registry, cred), ctx.credentials(use_user=False))


def _policy(args: argparse.Namespace) -> Any:
    """What the daemon lets its clients do, from the options and --config."""
    from ocidist.api.server import Policy
    from ocidist.api.unpack_roots import UnpackRoots

    roots = list(args.unpack_root)
    tcp = bool(args.unauthenticated_tcp)
    if args.config:
        config = _read_config(args.config)
        roots += config.get("unpack_roots", [])
        tcp = tcp or bool(config.get("unauthenticated_tcp", False))
    return Policy(unpack_roots=UnpackRoots(roots), unauthenticated_tcp=tcp)


CONFIG_KEYS = {"unpack_roots": list, "unauthenticated_tcp": bool}


def _read_config(path: str) -> dict[str, Any]:
    import tomllib

    what = f"serve --config {path}"
    try:
        with open(path, "rb") as f:
            config = tomllib.load(f)
    except OSError as e:
        raise InvalidArgument(f"{what}: {os.strerror(e.errno or 0).lower()}") from None
    except tomllib.TOMLDecodeError as e:
        raise InvalidArgument(f"{what}: not TOML: {e}") from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise InvalidArgument(f"{what}: not TOML: nested too deeply") from None
    for key, value in config.items():
        kind = CONFIG_KEYS.get(key)
        if kind is None:
            raise InvalidArgument(f"{what}: unknown key {key!r} (known: {', '.join(CONFIG_KEYS)})")
        strings = isinstance(value, list) and all(isinstance(v, str) for v in value)
        if not isinstance(value, kind) or (kind is list and not strings):
            want = "a list of directory paths" if kind is list else "true or false"
            raise InvalidArgument(f"{what}: {key} must be {want}")
    return config
