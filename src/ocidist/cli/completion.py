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


# Arguments that name something on disk, by metavar: completed from it.
_DIRECTORIES = frozenset({"DIR"})
_FILES = frozenset({"FILE", "FILE[:MEDIATYPE]", "DIR|FILE", "DIR|FILE.tar", "LAYER"})


def script(shell: str) -> str:
    """The completion script of the whole `dist` parser for ``shell``."""
    import shtab

    from ocidist.cli.main import build_parser

    parser = build_parser()
    _for_completion(parser, shtab.DIRECTORY, shtab.FILE)
    return str(shtab.complete(parser, shell=shell))


def _for_completion(parser: argparse.ArgumentParser, directory: Any, file: Any) -> None:
    """Tell shtab what help leaves unsaid. The global options are accepted
    after a command but hidden from its help (``help=SUPPRESS``, which shtab
    skips too): they get their `dist --help` text back here, in this process
    only. Arguments naming a directory or a file complete from the disk."""
    shown = {a.dest: a.help for a in parser._actions if a.option_strings}
    todo = [parser]
    while todo:
        p = todo.pop()
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())
                continue
            if action.help == argparse.SUPPRESS and action.option_strings:
                action.help = shown.get(action.dest, argparse.SUPPRESS)
            metavar = str(action.metavar)
            if metavar in _DIRECTORIES:
                action.complete = directory  # type: ignore[attr-defined]
            elif metavar in _FILES:
                action.complete = file  # type: ignore[attr-defined]


def run(args: argparse.Namespace, ctx: Any) -> int:
    sys.stdout.write(script(args.shell))
    return 0
