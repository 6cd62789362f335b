"""`dist --help` and each command's help, as people read them: global options
once, examples everywhere, a version, suggestions on typos, consistent
metavars, shell completion that completes."""

from __future__ import annotations

import argparse
import gettext
import shutil
import subprocess
from pathlib import Path

import pytest

from ocidist import __version__
from ocidist.cli.context import GLOBAL_OPTIONS
from ocidist.cli.main import COMMANDS, build_parser, main
from tests.dist_cli import run_dist

ALL_COMMANDS = [n for names in COMMANDS.values() for n in names]


def _help(*words: str) -> str:
    proc = run_dist(*words, "--help", env={"COLUMNS": "100"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode()


def _sub_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _every_parser() -> list[argparse.ArgumentParser]:
    todo, out = [build_parser()], []
    while todo:
        p = todo.pop()
        out.append(p)
        todo += _sub_parsers(p).values()
    return out


def test_top_help_lists_global_options_once_and_every_command() -> None:
    text = _help()
    for option in GLOBAL_OPTIONS:
        assert text.count(f"  {option}") == 1, (option, text)
    for name in ALL_COMMANDS:
        assert f"    {name} " in text, name
    assert "examples:" in text


@pytest.mark.parametrize("command", [c for c in ALL_COMMANDS if c != "serve"])
def test_command_help_has_its_own_options_and_an_example(command: str) -> None:
    text = _help(command)
    usage = text.split("\n\n")[0]
    assert usage.startswith(f"usage: dist {command} ")
    listed = [ln.split()[0] for ln in text.splitlines() if ln.startswith("  -")]
    for option in ("--root", "--hosts-dir", "--json", "--timeout", "--address"):
        assert option not in listed, (command, option)
        assert option not in usage, (command, option)
    assert "\nexamples:\n  " in text
    assert "see 'dist --help'" in text


def test_serve_help_lists_only_options_that_apply() -> None:
    text = _help("serve")
    for option in ("--root", "--address", "--hosts-dir", "--plain-http"):
        assert f"  {option}" in text, option
    listed = [ln.split()[0] for ln in text.splitlines() if ln.startswith("  -")]
    for option in ("--json", "--timeout", "--progress", "--concurrency"):
        assert option not in listed, option


def test_global_options_still_work_after_the_command(tmp_path: object) -> None:
    proc = run_dist("images", "ls", "--root", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr


def test_version() -> None:
    proc = run_dist("--version")
    assert proc.returncode == 0
    assert proc.stdout.decode().strip() == f"dist {__version__}"


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["resolv", "x"], "dist: unknown command 'resolv' (did you mean 'resolve'?)"),
        (["imags", "ls"], "dist: unknown command 'imags' (did you mean 'images'"),
        (["content", "lss"], "dist: content: unknown command 'lss' (did you mean 'ls'?)"),
        (["completion", "bsh"], "dist: completion: SHELL: unknown choice 'bsh' (did you mean"),
        # Options of the command that was typed, its own and the global ones.
        (
            ["pull", "--platfrom", "linux/arm64", "r"],
            "dist: pull: unknown option '--platfrom' (did you mean '--platform'?)"
            " (see 'dist pull --help')",
        ),
        (
            ["images", "ls", "--jsn"],
            "dist: images ls: unknown option '--jsn' (did you mean '--json'?)",
        ),
        (["--jsn", "images", "ls"], "dist: unknown option '--jsn' (did you mean '--json'?)"),
        (["tags", "a/b", "c"], "dist: tags: unexpected argument 'c' (see 'dist tags --help')"),
    ],
)
def test_typo_suggests(words: list[str], expected: str) -> None:
    proc = run_dist(*words)
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert err.startswith(expected), err
    assert len(err.splitlines()) == 1, err


def test_far_typo_lists_commands() -> None:
    err = run_dist("zzzzzz").stderr.decode()
    assert "unknown command 'zzzzzz' (choose from resolve, " in err


def test_pull_and_fetch_say_they_are_the_same() -> None:
    assert "the same as fetch" in _help()
    for name in ("fetch", "pull"):
        assert "`dist fetch` and `dist pull` are the same command" in _help(name).replace("\n", " ")


def test_metavars_are_words_people_read() -> None:
    """No argparse default metavar (``--concurrency CONCURRENCY``,
    ``--hosts-dir HOSTS_DIR``): counts are N, sizes SIZE or BYTES, and so on."""
    for parser in _every_parser():
        for action in parser._actions:
            if not action.option_strings or action.nargs == 0:
                continue
            assert action.metavar, (parser.prog, action.option_strings)
            assert "_" not in str(action.metavar), (parser.prog, action.option_strings)
            if action.type is int:
                assert action.metavar in ("N", "BYTES"), (parser.prog, action.option_strings)


def test_main_leaves_argparse_translation_alone(capsys: pytest.CaptureFixture[str]) -> None:
    """Embedding the CLI must not change argparse for the rest of the process."""
    with pytest.raises(SystemExit):
        main(["--version"])
    assert argparse._ is gettext.gettext  # type: ignore[attr-defined]
    assert argparse.ngettext is gettext.ngettext  # type: ignore[attr-defined]


# Completion -----------------------------------------------------------------


def _script(shell: str) -> str:
    proc = run_dist("completion", shell)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode()


def _bash_complete(script: str, *words: str) -> list[str]:
    """COMPREPLY for the command line ``dist WORDS…`` (last word being typed)."""
    line = " ".join(("dist", *words))
    cword = len(words)
    program = (
        f"{script}\n"
        f"COMP_WORDS=(dist {' '.join(repr(w) for w in words)}); COMP_CWORD={cword}; "
        f"COMP_LINE={line!r}; COMP_POINT={len(line)}; _shtab_dist; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    proc = subprocess.run(["bash", "-c", program], capture_output=True, check=True, timeout=30)
    return proc.stdout.decode().split()


def test_bash_completion_completes_commands_options_and_subcommands() -> None:
    script = _script("bash")
    assert _bash_complete(script, "res") == ["resolve"]
    assert set(_bash_complete(script, "content", "")) >= {"ls", "get", "prune", "verify"}
    assert _bash_complete(script, "--ro") == ["--root"]
    assert "--all-platforms" in _bash_complete(script, "pull", "--a")
    assert _bash_complete(script, "completion", "z") == ["zsh"]


def test_bash_completion_of_global_options_after_the_command_and_of_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dist pull --js<TAB>`: the global options work after a command, so
    they complete there too (while each command's --help leaves them out);
    an argument that names a directory or a file completes from the disk."""
    script = _script("bash")
    assert _bash_complete(script, "pull", "--js") == ["--json"]
    assert _bash_complete(script, "images", "ls", "--ro") == ["--root"]
    assert not [ln for ln in _help("pull").splitlines() if ln.strip().startswith("--json")]
    (tmp_path / "store-dir").mkdir()
    (tmp_path / "layer.tar").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert _bash_complete(script, "--root", "sto") == ["store-dir"]
    assert _bash_complete(script, "pull", "--root", "sto") == ["store-dir"]
    assert _bash_complete(script, "apply", "store-dir", "lay") == ["layer.tar"]
    assert _bash_complete(script, "login", "r.example", "--authfile", "lay") == ["layer.tar"]


@pytest.mark.parametrize(("shell", "check"), [("zsh", ["zsh", "-n"]), ("fish", ["fish", "-n"])])
def test_zsh_and_fish_scripts_parse_and_name_every_command(
    shell: str, check: list[str], tmp_path: object
) -> None:
    script = _script(shell)
    for name in ALL_COMMANDS:
        assert name in script, name
    if shutil.which(check[0]) is None:
        pytest.skip(f"{check[0]} is not installed (run `make deps`)")
    proc = subprocess.run([*check], input=script.encode(), capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
