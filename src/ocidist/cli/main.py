"""`dist` entry point: global options, command registry, error reporting.

Command modules register themselves through ``COMMAND_MODULES``; each exposes
``register(sub, common)`` and keeps its top-level imports light, because
`dist --help` must start fast (heavy modules are imported inside handlers).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    import signal
else:
    # signal.py only wraps _signal (always loaded) to hand back enums; making
    # its three enum classes costs ~0.5 ms of every command. The functions
    # and constants used here are _signal's own.
    import _signal as signal

from ocidist.cli.context import Context, add_global_options, report_error
from ocidist.cli.parsing import Formatter, Parser
from ocidist.cli.program import command_at, default_hosts_dir, hosts_configured, proxy_set
from ocidist.errors import DistError, TimedOut

__all__ = ["COMMANDS", "Formatter", "Parser", "build_parser", "main", "run"]

# One module per command group, with the commands it registers; each module
# has ``register(sub, common) -> None``. Knowing the names up front lets a
# command build only its own parser (building all of them costs ~25 ms of
# every invocation); tests check the table against what modules register.
COMMANDS: dict[str, tuple[str, ...]] = {
    "ocidist.cli.resolve": ("resolve",),
    "ocidist.cli.fetch_object": ("fetch-object",),
    "ocidist.cli.fetch": ("fetch", "pull"),
    "ocidist.cli.content": ("content",),
    "ocidist.cli.images": ("images",),
    "ocidist.cli.login": ("login", "logout"),
    "ocidist.cli.apply": ("apply",),
    "ocidist.cli.serve": ("serve",),
    "ocidist.cli.push": ("push-object", "push", "copy"),
    "ocidist.cli.registry": ("tags", "catalog", "rm", "tag"),
    "ocidist.cli.unpack": ("unpack",),
    "ocidist.cli.layout": ("export", "import"),
    "ocidist.cli.inspect": ("inspect",),
    "ocidist.cli.completion": ("completion",),
    "ocidist.cli.artifact": ("artifact", "attach", "referrers"),
}
COMMAND_MODULES = tuple(COMMANDS)

EXAMPLES = (
    "dist resolve redis",
    "dist pull localhost:5000/demo/app:1.0 --platform linux/arm64",
    "dist unpack localhost:5000/demo/app:1.0 rootfs/",
    "dist copy registry.a/app:1 registry.b/app:1",
    "dist --json images ls",
    "dist completion bash > /etc/bash_completion.d/dist",
)


def command_module(argv: Sequence[str]) -> str | None:
    """The module of the command ``argv`` names, or None (help, typo, none)."""
    at = command_at(argv)
    if at is None:
        return None
    return next((m for m, names in COMMANDS.items() if argv[at] in names), None)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of `dist`; with ``only`` (a module of ``COMMANDS``), just
    that module's commands (what one invocation needs)."""
    from ocidist import __version__

    # Global options are accepted before the command (real defaults, listed
    # once in `dist --help`) and after it (SUPPRESS defaults, so a subcommand
    # never overwrites what was given before it; hidden from its help).
    parser = Parser(
        prog="dist",
        usage="dist [GLOBAL OPTIONS] COMMAND [OPTIONS] [ARGS]",
        description="Distribute OCI images: resolve, fetch, store, push and unpack.",
        examples=EXAMPLES,
        globals_note=False,
        epilog="Run 'dist COMMAND --help' for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"dist {__version__}")
    add_global_options(parser, suppress=False)
    common = Parser(add_help=False)
    add_global_options(common, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands", prog="dist")
    for name in (only,) if only else COMMAND_MODULES:
        importlib.import_module(name).register(sub, common)
    return parser


@contextlib.contextmanager
def _untranslated() -> Iterator[None]:
    """argparse passes every message through gettext, which searches the
    locale directories for a catalog on each call (11 searches and an import
    of ``locale`` for one command's parser, ~4 ms). Python ships no catalog
    for these messages, so the identity gives exactly the same text. Only the
    `dist` program itself (``run``) does this, and only while it parses:
    a program that embeds ``main`` keeps its own argparse untouched."""
    saved = argparse._, argparse.ngettext  # type: ignore[attr-defined]
    argparse._ = lambda message: message  # type: ignore[attr-defined]
    argparse.ngettext = lambda singular, plural, n: singular if n == 1 else plural  # type: ignore[attr-defined]
    try:
        yield
    finally:
        argparse._, argparse.ngettext = saved  # type: ignore[attr-defined]


def parse(words: Sequence[str]) -> argparse.Namespace:
    return build_parser(command_module(words)).parse_args(words)


def main(
    argv: Sequence[str] | None = None, *, _fast_parse: bool = False, _program: bool = False
) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    Parser.json_errors = "--json" in words
    try:
        if _fast_parse:
            with _untranslated():
                args = parse(words)
        else:
            args = parse(words)
    finally:
        Parser.json_errors = False
    if _program:
        _connect_early(args)
    handler = getattr(args, "handler", None)
    if handler is None:
        build_parser().print_help(sys.stderr)
        return 2
    ctx = Context(args)
    # Only the `dist` program: a program that calls main keeps its signals.
    backstop = _program and ctx.deadline is not None and getattr(args, "deadline", True)
    try:
        try:
            if backstop:
                _arm_backstop(ctx.deadline)
            ctx.check_user_options()
            return int(handler(args, ctx))
        finally:
            if backstop:
                signal.setitimer(signal.ITIMER_REAL, 0)
    except DistError as e:
        return ctx.fail(e)
    except DeadlinePassed:
        return ctx.fail(TimedOut("timed out (--timeout reached)"))
    except KeyboardInterrupt as e:
        return _interrupted(e, as_json=ctx.json)
    except BrokenPipeError:
        # The reader went away (`dist fetch-object … | head`); not our failure.
        _silence_stdout()
        return 1
    except OSError as e:
        return ctx.fail(e)
    finally:
        ctx.close(exiting=_program)


def _connect_early(args: argparse.Namespace) -> None:
    """A command that starts with a request to the registry of its argument
    ``args.early_connect`` names (fetch, pull, unpack) gets a connection to
    it opened now, beside its start-up (ocidist.earlyconnect), unless
    ``cli.program`` began it before the command line was parsed: where the
    address follows from the reference alone, no proxy is set (the
    connection would go around it), no hosts.toml directory may name mirrors
    or another server, and no daemon (--address) does the work. What
    ``cli.program`` began for another address, or where the parsed command
    says none is to be, is closed."""
    address = _early_address(args)
    if "ocidist.earlyconnect" in sys.modules or address is not None:
        from ocidist import earlyconnect

        earlyconnect.keep_only(address)
        if address is not None:
            earlyconnect.start(*address)


def _early_address(args: argparse.Namespace) -> tuple[str, int] | None:
    dest = getattr(args, "early_connect", None)
    ref = getattr(args, dest, None) if dest else None
    if not isinstance(ref, str) or getattr(args, "address", None):
        return None
    if proxy_set():
        return None
    from ocidist import earlyconnect, reference
    from ocidist.errors import DistError

    try:
        domain = reference.parse(ref).domain
    except DistError:
        return None  # a stored name, or an invalid one: the command says which
    hosts_dir = getattr(args, "hosts_dir", None) or default_hosts_dir()
    if hosts_configured(hosts_dir, domain):
        return None
    return earlyconnect.dial(domain, bool(getattr(args, "plain_http", False)))


def _interrupted(e: KeyboardInterrupt, *, as_json: bool) -> int:
    """SIGTERM's or Ctrl-C's one line; the exit code (143, 130)."""
    message, code = ("terminated", 143) if isinstance(e, Terminated) else ("interrupted", 130)
    report_error(message, code, KeyboardInterrupt(), as_json=as_json)
    return code


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt."""


# SIGTERM seen, whether or not its exception got through: one raised where
# Python only prints and drops exceptions (a weakref callback, a __del__,
# both run by imports) is lost, this is not (`dist serve` reads it when it
# takes the signal over, or such a lost SIGTERM would leave it running).
terminate_requested = False


def _terminate(signum: int, frame: object) -> None:
    global terminate_requested
    terminate_requested = True
    raise Terminated


# --timeout's backstop fires this long after the deadline: what waits with a
# deadline (every request) has said which wait timed out by then.
BACKSTOP_GRACE = 1.0


class DeadlinePassed(KeyboardInterrupt):
    """--timeout's backstop, raised in the main thread like Ctrl-C (and so
    ending the command the same way, at once, its finally blocks run): for
    what waits without a deadline of its own, such as another process's
    lock on an ingest or a daemon that stopped answering."""


def _deadline_passed(signum: int, frame: object) -> None:
    raise DeadlinePassed


def _arm_backstop(deadline: float | None) -> None:
    import time

    assert deadline is not None
    signal.signal(signal.SIGALRM, _deadline_passed)
    # setitimer with 0 would disarm: a deadline already passed fires at once.
    left = max(deadline - time.monotonic(), 0.0) + BACKSTOP_GRACE
    signal.setitimer(signal.ITIMER_REAL, left)


def run() -> NoReturn:
    """The `dist` program: ``main``, then exit without tearing the interpreter
    down. Everything a command opens is closed by the time ``main`` returns
    (the context closes stores, sockets and the daemon connection), so the
    teardown of ~200 modules would only cost time: ~6 ms of every command,
    measured over 20 runs of the fetch command's imports."""
    # Text the terminal's encoding cannot hold (an image's annotation under a
    # Latin-1 locale, a lone surrogate from a registry's JSON) is written as
    # an escape, never raised as UnicodeEncodeError mid-output.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    # SIGTERM (systemd, docker stop, timeout(1)) ends a command as Ctrl-C
    # does: the finally blocks run, so a copy's staging store, a half-written
    # archive's temporary file and the like are removed, not left behind.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        code = main(_fast_parse=True, _program=True)
    except KeyboardInterrupt as e:
        # A signal before main's own handling starts (while the command line
        # is parsed, or its modules imported): the same one line and code as
        # later, not a traceback and a teardown of the interpreter.
        code = _interrupted(e, as_json="--json" in sys.argv[1:])
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()  # the reader went away: as in main, not our failure
        code = code or 1
    except OSError:
        code = code or 1
    with contextlib.suppress(OSError):
        sys.stderr.flush()
    os._exit(code)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
