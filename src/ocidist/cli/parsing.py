"""The argument parser `dist` and its commands share: one-line usage errors,
"did you mean" on typos, examples under each command's help, and global
options that are accepted after the command without being listed there.

Kept to argparse (and ``os``/``sys``): every command builds its parser."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

GLOBALS_NOTE = "Global options (--root, --json, --timeout, …) work here too: see 'dist --help'."


class Formatter(argparse.HelpFormatter):
    """argparse's formatter, told the terminal width up front.

    Without a width it imports ``shutil`` (with bz2 and lzma, ~3 ms) for
    ``get_terminal_size``, and argparse builds a formatter for every option
    it adds, so every command paid for it before doing anything."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 28,
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
    """Usage errors are one line, like every other error (CLI.md), exit 2.

    ``examples``: command lines shown under the options in ``--help``.
    ``globals_note``: say where the (hidden) global options are documented;
    every command parser does, the top-level one lists them itself."""

    def __init__(
        self,
        *args: Any,
        examples: Sequence[str] = (),
        globals_note: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        # The epilog goes after the examples, as written (not reflowed).
        self.trailer = kwargs.pop("epilog", None) or ""
        super().__init__(*args, **kwargs)
        self.examples = tuple(examples)
        self.globals_note = globals_note

    def format_help(self) -> str:
        text = super().format_help()
        if self.examples:
            text += "\nexamples:\n" + "".join(f"  {e}\n" for e in self.examples)
        if self.globals_note and self.add_help:
            text += "\n" + GLOBALS_NOTE + "\n"
        if self.trailer:
            text += "\n" + self.trailer + "\n"
        return text

    # Set by `dist` while it parses a command line with --json: a usage error
    # is then an ``error`` event too.
    json_errors = False

    def error(self, message: str) -> NoReturn:
        from ocidist.cli.context import report_error

        where = self.prog.removeprefix("dist").strip()
        prefix = f"{where}: " if where else ""
        report_error(f"{prefix}{message} (see '{self.prog} --help')", 2, as_json=Parser.json_errors)
        self.exit(2)

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        # argparse says "unrecognized arguments: --platfrom r (see 'dist --help')"
        # at the top level; people want the command's word and the option they meant.
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            words = list(sys.argv[1:] if args is None else args)
            word = extras[0]
            parser = self._typed_in(words, word)
            if word.startswith("-"):
                options = [o for o in parser._option_string_actions if o.startswith("--")]
                close = _close(word.split("=", 1)[0], options, n=1)
                parser.error(f"unknown option {word!r}{close}")
            parser.error(f"unexpected argument {word!r}")
        return ns

    def _typed_in(self, words: Sequence[str], word: str) -> Parser:
        """The (sub)command parser ``word`` was given to: the commands named
        before it on the command line."""
        parser: Parser = self
        it = iter(words)
        for w in it:
            if w == word or w == "--":
                break
            action = parser._option_string_actions.get(w)
            if action is not None:
                if action.nargs != 0:
                    next(it, None)  # the option's value
                continue
            for a in parser._actions:
                if isinstance(a, argparse._SubParsersAction) and w in a.choices:
                    sub = a.choices[w]
                    parser = sub if isinstance(sub, Parser) else parser
        return parser

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        # argparse's message lists every choice ("invalid choice: 'resolv'
        # (choose from 'resolve', 'fetch-object', …)"); people want the one
        # they meant.
        choices = action.choices
        if choices is None or value in choices:
            return
        names = [str(c) for c in choices]
        what = "command" if isinstance(action, argparse._SubParsersAction) else "choice"
        label = "/".join(action.option_strings) or str(action.metavar or action.dest)
        where = "" if what == "command" else f"{label}: "
        self.error(f"{where}unknown {what} {value!r}{suggestion(str(value), names)}")


def suggestion(word: str, names: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``names``, or the list of
    them when none is close."""
    return _close(word, names) or " (choose from " + ", ".join(names) + ")"


def _close(word: str, names: Sequence[str], n: int = 2) -> str:
    """`` (did you mean 'x'?)`` for the ``n`` closest of ``names``, or nothing."""
    import difflib  # only on this error path

    close = difflib.get_close_matches(word, names, n=n, cutoff=0.6)
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)" if close else ""
