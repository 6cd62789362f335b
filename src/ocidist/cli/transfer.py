"""Options and progress shared by the commands that move blobs (fetch, push, copy, unpack)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ocidist.cli.context import Context
    from ocidist.progress import Progress


def non_negative(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return n


def add_transfer_options(p: argparse.ArgumentParser, what: str = "transfers") -> None:
    p.add_argument(
        "--concurrency",
        type=non_negative,
        default=0,
        metavar="N",
        help=f"parallel {what} (default: 2 per core, at least 4)",
    )
    p.add_argument("--progress", action="store_true", help="live progress even when not a TTY")


def progress_for(ctx: Context, args: argparse.Namespace) -> Progress:
    """The progress display for this command: JSON events on stdout with
    --json (docs/JSON.md), nothing with --quiet, a live display on a terminal
    (or with --progress), else one line per finished object on stderr."""
    from ocidist.progress import for_terminal

    force = bool(getattr(args, "progress", False))
    return for_terminal(quiet=ctx.quiet, json_events=ctx.json, force=force)
