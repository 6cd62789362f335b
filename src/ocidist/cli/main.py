"""`dist` entry point: global options, command registry, error reporting.

Command modules register themselves through ``COMMAND_MODULES``; each exposes
``register(sub, common)`` and keeps its top-level imports light, because
`dist --help` must start fast (heavy modules are imported inside handlers).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from ocidist.cli.context import Context, add_global_options
from ocidist.errors import DistError

# One module per command group; each has ``register(sub, common) -> None``.
COMMAND_MODULES = (
    "ocidist.cli.resolve",
    "ocidist.cli.fetch_object",
    "ocidist.cli.fetch",
    "ocidist.cli.content",
    "ocidist.cli.images",
    "ocidist.cli.login",
    "ocidist.cli.apply",
    "ocidist.cli.serve",
    "ocidist.cli.push",
    "ocidist.cli.registry",
    "ocidist.cli.unpack",
    "ocidist.cli.layout",
)


class Parser(argparse.ArgumentParser):
    """Usage errors are one line, like every other error (CLI.md), exit 2."""

    def error(self, message: str) -> NoReturn:
        where = self.prog.removeprefix("dist").strip()
        prefix = f"dist: {where}: " if where else "dist: "
        self.exit(2, f"{prefix}{message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
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
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
