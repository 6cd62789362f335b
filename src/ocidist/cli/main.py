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
from collections.abc import Sequence
from typing import Any, NoReturn

from ocidist.cli.context import Context, add_global_options
from ocidist.errors import DistError

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
}
COMMAND_MODULES = tuple(COMMANDS)
# Global options that take a value as the next word (to find the command).
_VALUE_OPTIONS = frozenset({"--root", "--hosts-dir", "--user", "-u", "--timeout", "--address"})


class Formatter(argparse.HelpFormatter):
    """argparse's formatter, told the terminal width up front.

    Without a width it imports ``shutil`` (with bz2 and lzma, ~3 ms) for
    ``get_terminal_size``, and argparse builds a formatter for every option
    it adds, so every command paid for it before doing anything."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        super().__init__(prog, indent_increment, max_help_position, width or _columns() - 2)


def _columns() -> int:
    # What shutil.get_terminal_size() answers: $COLUMNS, else the terminal's
    # width, else 80.
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


class Parser(argparse.ArgumentParser):
    """Usage errors are one line, like every other error (CLI.md), exit 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        where = self.prog.removeprefix("dist").strip()
        prefix = f"dist: {where}: " if where else "dist: "
        self.exit(2, f"{prefix}{message} (see '{self.prog} --help')\n")


def command_module(argv: Sequence[str]) -> str | None:
    """The module of the command ``argv`` names, or None (help, typo, none)."""
    words = iter(argv)
    for word in words:
        if word in _VALUE_OPTIONS:
            next(words, None)
        elif word == "--":
            return None
        elif not word.startswith("-"):
            return next((m for m, names in COMMANDS.items() if word in names), None)
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    # Global options are accepted before the command (real defaults) and after
    # it (SUPPRESS defaults, so a subcommand never overwrites what was given
    # before it).
    parser = Parser(
        prog="dist",
        description="Distribute OCI images: resolve, fetch, store, push and unpack.",
    )
    add_global_options(parser, suppress=False)
    common = Parser(add_help=False)
    add_global_options(common, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in (only,) if only else COMMAND_MODULES:
        importlib.import_module(name).register(sub, common)
    return parser


def _untranslated() -> None:
    """argparse passes every message through gettext, which searches the
    locale directories for a catalog on each call (11 searches and an import
    of ``locale`` for one command's parser, ~4 ms). Python ships no catalog
    for these messages, so the identity gives exactly the same text."""
    argparse._ = lambda message: message  # type: ignore[attr-defined]
    argparse.ngettext = lambda singular, plural, n: singular if n == 1 else plural  # type: ignore[attr-defined]


def main(argv: Sequence[str] | None = None) -> int:
    _untranslated()
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(command_module(words))
    args = parser.parse_args(words)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    ctx = Context(args)
    try:
        return int(handler(args, ctx))
    except DistError as e:
        return ctx.fail(e)
    except KeyboardInterrupt:
        print("dist: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`dist fetch-object … | head`); not our failure.
        _silence_stdout()
        return 1
    except OSError as e:
        return ctx.fail(e)
    finally:
        ctx.close()


def run() -> NoReturn:
    """The `dist` program: ``main``, then exit without tearing the interpreter
    down. Everything a command opens is closed by the time ``main`` returns
    (the context closes stores, sockets and the daemon connection), so the
    teardown of ~200 modules would only cost time: ~6 ms of every command,
    measured over 20 runs of the fetch command's imports."""
    code = main()
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
