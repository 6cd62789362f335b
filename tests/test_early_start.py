"""The connection `dist fetch|pull|unpack REF` begins before its command
line is parsed (ocidist.cli.program; issue 20: parsing came after ~25 ms of
imports, typing and re among them, while the reference is in argv from
the first instant), and the cases where it begins nothing."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocidist import dialling, earlyconnect, reference
from ocidist.cli import program
from ocidist.errors import DistError
from tests.harness import Registry, push_image, simple_image

PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(5)
    try:
        yield sock
    finally:
        sock.close()


def _clean_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROXIES}
    env.pop("DIST_HOSTS_DIR", None)
    env["XDG_CONFIG_HOME"] = str(tmp / "config")
    return env


def test_the_connection_begins_even_when_parsing_then_fails(
    tmp_path: Path, listener: socket.socket
) -> None:
    """`python -m ocidist unpack REF` without its DIR: argparse refuses the
    command line, yet the registry saw the connection, so it began before
    the parse (the tree before: after it, so never here)."""
    port = listener.getsockname()[1]
    proc = subprocess.run(
        [sys.executable, "-m", "ocidist", "--root", str(tmp_path / "r"),
         "unpack", f"127.0.0.1:{port}/a/b:1"],
        capture_output=True, env=_clean_env(tmp_path), timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    conn, _ = listener.accept()  # socket.timeout (the test fails) if none came
    conn.close()


_BEFORE_PARSING = """
import sys
from ocidist import earlyconnect
from ocidist.cli import program
program.connect_first(sys.argv[1:])
sock = earlyconnect.take("127.0.0.1", int(sys.argv[-1]), 10)
heavy = [m for m in ("typing", "re", "argparse", "encodings.idna", "ocidist.reference")
         if m in sys.modules]
print(heavy, sock is not None, sys.getswitchinterval())
"""


def test_it_begins_with_nothing_heavy_imported(tmp_path: Path, listener: socket.socket) -> None:
    """What begins the connection imports neither typing, re nor argparse
    (~8 ms before the first could be paid), and names are looked up as
    bytes, so the idna codec (~5 ms, holding the GIL) is not imported; the
    GIL switch interval hurried for the connect thread is the default again
    once it has connected."""
    port = str(listener.getsockname()[1])
    words = ["--root", str(tmp_path / "r"), "--json", "unpack", f"127.0.0.1:{port}/a/b:1", port]
    proc = subprocess.run(
        [sys.executable, "-c", _BEFORE_PARSING, *words],
        capture_output=True, text=True, env=_clean_env(tmp_path), timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["[]", "True", "0.005"], proc.stdout


@pytest.mark.parametrize(
    "words",
    [
        ["unpack", "--platform", "linux/amd64", "{ref}", "d"],  # an option before REF
        ["--hosts-dir", "{tmp}", "unpack", "{ref}", "d"],
        ["unpack", "{ref}", "d", "--hosts-d={tmp}"],  # an abbreviation argparse takes
        ["--address", "unix:///nowhere", "pull", "{ref}"],
        ["pull", "{ref}", "--ad=unix:///nowhere"],
        ["fetch", "{ref}", "--hosts={tmp}"],
        ["pull", "{ref}", "--help"],
        ["resolve", "{ref}"],  # not a command that fetches
        ["--", "pull", "{ref}"],
    ],
)
def test_nothing_begins_where_the_words_are_not_plain(
    words: list[str], tmp_path: Path, listener: socket.socket
) -> None:
    ref = f"127.0.0.1:{listener.getsockname()[1]}/a/b:1"
    program.connect_first([w.format(ref=ref, tmp=tmp_path) for w in words])
    try:
        listener.settimeout(0.3)
        with pytest.raises(TimeoutError):
            listener.accept()[0].close()
    finally:
        earlyconnect.discard()


@pytest.mark.parametrize(
    "words",
    [
        ["fetch", "{ref}", "--all-platforms", "-q"],  # `--a…`, but not --address
        ["--json", "pull", "{ref}", "--plain-http"],
        ["-u", "me:secret", "unpack", "{ref}", "d"],
    ],
)
def test_it_begins_for_plain_words(
    words: list[str], tmp_path: Path, listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in (*PROXIES, "DIST_HOSTS_DIR", "DIST_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    ref = f"127.0.0.1:{listener.getsockname()[1]}/a/b:1"
    program.connect_first([w.format(ref=ref) for w in words])
    try:
        listener.accept()[0].close()
    finally:
        earlyconnect.discard()


def test_nothing_begins_with_a_proxy_or_a_hosts_directory(
    tmp_path: Path, listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy takes the connection elsewhere; a hosts.toml directory for the
    registry (DIST_HOSTS_DIR's, or the default one) may name mirrors: then
    the origin sees nothing early."""
    host = f"127.0.0.1:{listener.getsockname()[1]}"
    words = ["unpack", f"{host}/a/b:1", "d"]
    for var in PROXIES:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("DIST_HOSTS_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    listener.settimeout(0.3)

    def begins() -> bool:
        program.connect_first(words)
        try:
            listener.accept()[0].close()
            return True
        except TimeoutError:
            return False
        finally:
            earlyconnect.discard()

    assert begins()  # the control: plain words, nothing configured
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    assert not begins()
    monkeypatch.delenv("HTTPS_PROXY")
    default = tmp_path / "config" / "ocidist" / "certs.d" / host
    default.mkdir(parents=True)
    assert not begins()
    default.rmdir()
    other = tmp_path / "other"
    (other / "_default").mkdir(parents=True)
    monkeypatch.setenv("DIST_HOSTS_DIR", str(other))
    assert not begins()


def test_what_the_parsed_command_does_not_dial_is_closed() -> None:
    """keep_only (cli.main after parsing) closes what began early for
    another address, and leaves the one the command dials."""
    a, b = socket.create_server(("127.0.0.1", 0)), socket.create_server(("127.0.0.1", 0))
    kept = ("127.0.0.1", a.getsockname()[1])
    try:
        for s in (a, b):
            s.settimeout(5)
            earlyconnect.start("127.0.0.1", s.getsockname()[1])
        ca, cb = a.accept()[0], b.accept()[0]
        earlyconnect.keep_only(kept)
        cb.settimeout(5)
        assert cb.recv(1) == b""  # closed, at once or when its connect ended
        sock = earlyconnect.take(*kept, 5)
        assert sock is not None  # still there to take, and open:
        ca.settimeout(0.2)
        with pytest.raises(TimeoutError):
            ca.recv(1)
        for c in (ca, cb, sock):
            c.close()
    finally:
        earlyconnect.discard()
        a.close()
        b.close()


_COMPONENT = st.from_regex(r"[a-z0-9]{1,5}([._-][a-z0-9]{1,4})?", fullmatch=True)
_HOST = st.one_of(
    st.just("localhost"),
    st.from_regex(r"[a-zA-Z0-9]{1,6}(\.[a-zA-Z0-9]{1,6}){0,2}", fullmatch=True),
    st.just("[::1]"),
    st.sampled_from(["docker.io", "index.docker.io", "registry-1.docker.io", "Upper"]),
)


@given(
    host=st.one_of(st.none(), _HOST),
    port=st.one_of(st.none(), st.integers(1, 65535)),
    path=st.lists(_COMPONENT, min_size=1, max_size=3),
    tail=st.sampled_from(["", ":v1", "@sha256:" + "a" * 64, ":t@sha256:" + "b" * 64]),
)
def test_its_domain_is_the_references(
    host: str | None, port: int | None, path: list[str], tail: str
) -> None:
    """dialling.domain_of (what cli.program dials) gives reference.parse's
    domain for every reference that parses."""
    name = "/".join(path)
    if host is not None:
        name = f"{host}{f':{port}' if port else ''}/{name}"
    text = name + tail
    try:
        expected = reference.parse(text).domain
    except DistError:
        return
    assert dialling.domain_of(text) == expected


def test_a_pull_through_the_program_uses_it(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    """End to end: `python -m ocidist --debug pull REF` takes the connection
    begun before parsing (one "early connection", no second one begun
    after it)."""
    push_image(registry, repo_name, "v1", simple_image())
    proc = subprocess.run(
        [sys.executable, "-m", "ocidist", "--debug", "--root", str(tmp_path / "r"),
         "pull", f"{registry.host}/{repo_name}:v1"],
        capture_output=True, text=True, env=_clean_env(tmp_path), timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("debug: early connection to") == 1, proc.stderr


def test_the_dist_program_starts_there() -> None:
    """The installed `dist` script and `python -m ocidist` both begin in
    cli.program (what a console script runs is pyproject's entry)."""
    import tomllib

    root = Path(__file__).resolve().parent.parent
    scripts = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["dist"] == "ocidist.cli.program:run"
    assert "from ocidist.cli.program import run" in (root / "src/ocidist/__main__.py").read_text()


def test_the_first_request_ends_the_hurried_switch_interval(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a connect thread has yet to send its SYN the GIL switch
    interval is short; a name lookup that hangs (slow DNS; here the OS's
    lookup held on an event) must not keep it so past the command's first
    request (take)."""
    import _socket
    import threading

    release = threading.Event()
    looking = threading.Event()
    real = _socket.getaddrinfo

    def slow(*args: object, **kw: object) -> object:
        looking.set()
        release.wait(10)
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(_socket, "getaddrinfo", slow)
    default = sys.getswitchinterval()
    port = listener.getsockname()[1]
    try:
        earlyconnect.start("127.0.0.1", port)
        assert looking.wait(5)
        assert sys.getswitchinterval() < default  # hurried while it starts
        assert earlyconnect.take("127.0.0.1", port, 0) is None  # still looking up
        assert sys.getswitchinterval() == default
    finally:
        release.set()
        earlyconnect.discard()
        sys.setswitchinterval(default)


def _connections(s: socket.socket) -> int:
    s.setblocking(False)
    n = 0
    while True:
        try:
            conn, _ = s.accept()
        except BlockingIOError:
            return n
        conn.close()
        n += 1


def _dist(tmp: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    clean = _clean_env(tmp)
    clean.pop("DIST_ADDRESS", None)
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "ocidist", "--root", str(tmp / "root"), *args],
        capture_output=True, env=clean, timeout=60, check=False,
    )  # fmt: skip


def test_none_begun_before_parsing_where_dist_address_is_set(
    tmp_path: Path, listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DIST_ADDRESS is --address (its default): cli.main opens nothing
    early for it, so cli.program must not either (what it began, cli.main
    closes: a SYN and a thread for nothing)."""
    from ocidist import earlyconnect
    from ocidist.cli import program

    port = listener.getsockname()[1]
    for k in (*PROXIES, "DIST_HOSTS_DIR"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("DIST_ADDRESS", f"unix://{tmp_path}/daemon.sock")
    try:
        program.connect_first(["pull", f"127.0.0.1:{port}/demo/app:1"])
        sock = earlyconnect.take("127.0.0.1", port, None)
        if sock is not None:
            sock.close()
        assert sock is None
    finally:
        earlyconnect.discard()


def test_no_connection_for_help_in_a_group_of_short_options(
    tmp_path: Path, listener: socket.socket
) -> None:
    """`-qh` is -q and -h to argparse: help, and nothing fetched."""
    port = listener.getsockname()[1]
    proc = _dist(tmp_path, "-qh", "pull", f"127.0.0.1:{port}/demo/app:1", env={})
    assert proc.returncode == 0, proc.stderr
    assert b"usage" in proc.stdout + proc.stderr
    assert _connections(listener) == 0


def test_the_scan_knows_every_global_option_that_takes_a_value() -> None:
    """cli.program finds the command word past the global options: each
    one that takes a value must be in VALUE_OPTIONS, or `dist --max-ranges
    4 pull REF` reads "4" as the command (no early connection, and the
    whole parser built for a command it could have named)."""
    from ocidist.cli.main import build_parser, command_module
    from ocidist.cli.program import VALUE_OPTIONS

    taking = {
        s
        for a in build_parser()._actions
        if a.option_strings
        and a.nargs != 0
        and not isinstance(a, argparse._SubParsersAction)
        and a.dest != "help"
        for s in a.option_strings
    }
    assert taking <= VALUE_OPTIONS, sorted(taking - VALUE_OPTIONS)
    assert command_module(["--max-ranges", "4", "pull", "x"]) == "ocidist.cli.fetch"


def test_the_early_commands_name_their_reference_first() -> None:
    """cli.program takes the word after fetch|pull|unpack as the reference
    cli.main dials (early_connect): the two agree for every such command."""
    from ocidist.cli.main import build_parser
    from ocidist.cli.program import EARLY_COMMANDS

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    early = {n for n, p in subs.choices.items() if p.get_default("early_connect")}
    assert early == EARLY_COMMANDS
    for name in early:
        args = parser.parse_args([name, "reg.example/a/b:1", "dir"][: 3 if name == "unpack" else 2])
        assert getattr(args, args.early_connect) == "reg.example/a/b:1", name
