"""`dist completion bash|zsh|fish`: a shell completion script, generated on
demand from the parser itself (shtab), so it always matches this `dist`.

Nothing here runs at start-up: shtab is imported by this command only, and
the script it prints is static (completing never starts `dist`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

SHELLS = ("bash", "zsh", "fish")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "completion",
        parents=[common],
        help="print a shell completion script (bash, zsh or fish)",
        description="Print the completion script for SHELL on stdout. Load it in the current "
        "shell, or install it where your shell looks for completions.",
        examples=(
            'eval "$(dist completion bash)"',
            "dist completion bash > ~/.local/share/bash-completion/completions/dist",
            'dist completion zsh > "${fpath[1]}/_dist"',
            "dist completion fish > ~/.config/fish/completions/dist.fish",
        ),
    )
    p.add_argument("shell", metavar="SHELL", choices=SHELLS, help="bash, zsh or fish")
    p.set_defaults(handler=run)


def script(shell: str) -> str:
    """The completion script of the whole `dist` parser for ``shell``."""
    import shtab

    from ocidist.cli.main import build_parser

    parser = build_parser()
    return str(shtab.complete(parser, shell=shell))


def run(args: argparse.Namespace, ctx: Any) -> int:
    sys.stdout.write(script(args.shell))
    return 0
