"""The command table in cli/main.py matches what each module registers."""

from __future__ import annotations

import argparse
import importlib

from ocidist.cli.main import COMMANDS, Parser, build_parser, command_module


def _registered(module: str) -> tuple[str, ...]:
    parser = Parser(prog="dist")
    sub = parser.add_subparsers(dest="command")
    importlib.import_module(module).register(sub, Parser(add_help=False))
    return tuple(sub.choices)


def test_command_table_matches_modules() -> None:
    for module, names in COMMANDS.items():
        assert _registered(module) == names, module


def test_command_found_past_global_options() -> None:
    assert command_module(["--root", "fetch", "resolve", "x"]) == "ocidist.cli.resolve"
    assert command_module(["-u", "a:b", "--json", "pull", "x"]) == "ocidist.cli.fetch"
    assert command_module(["--timeout", "5s", "tags", "r"]) == "ocidist.cli.registry"
    assert command_module(["--help"]) is None
    assert command_module(["frob"]) is None


def test_full_parser_has_every_command() -> None:
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subs.choices) == {n for names in COMMANDS.values() for n in names}
