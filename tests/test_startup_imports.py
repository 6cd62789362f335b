"""Start-up: what `dist --help`, `dist resolve` and `dist fetch` of a small
image import (docs/BENCHMARKS.md, "Review of issue 15"). Every module here
costs each command its import (base64 + struct ~0.8 ms, the ranged fetch's
workers ~1 ms); they are loaded only by the paths that need them:
a credential, a big blob, TLS, a connection. The commands run in a fresh
interpreter against the real registry; the test reads ``sys.modules`` after
``main`` returned."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import Registry
from tests.harness.images import build_image
from tests.harness.push import http_push

SRC = str(Path(__file__).resolve().parent.parent / "src")

# Never on these three paths (plain-HTTP registry, no credentials, no proxy).
NEVER = {
    "ssl",  # only for an https:// registry
    "grpc",  # only the daemon client and `dist serve`
    "base64",  # only to encode or decode a credential
    "struct",  # base64's
    "ipaddress",  # only to match NO_PROXY against a proxy's target
    "http.client",
    "email",
    "logging",
    "asyncio",
    "concurrent.futures",
    "ocidist.content.parallel",  # only for a blob fetched in ranges
    "ocidist.remotes.docker.rangefetch",
    "ocidist.client",  # the library facade
    "hashlib",  # OpenSSL's, ~3 ms: small objects hash with the builtin SHA-2
    "_hashlib",
    "signal",  # its enums, ~0.5 ms: the program uses _signal's functions
    # h11 (and what it imports: dataclasses, then inspect, ast, dis, tokenize)
    # was +18 ms of every resolve and fetch; http11.py frames HTTP/1.1 instead.
    "h11",
    "dataclasses",
    "inspect",
    "ast",
    "dis",
    "tokenize",
}
# Not for help: no connection, no store, no digest.
NOT_FOR_HELP = NEVER | {
    "socket",
    "sqlite3",
    "ocidist.remotes",
    "ocidist.content",
}

_CODE = """
import sys
from ocidist.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
# Classes that exec code when created (NamedTuple ~90 us, dataclass ~1 ms):
# value.Value instead. Printed as pseudo-modules, which NEVER names.
made = [
    f"{name}.{k}:" + ("namedtuple" if hasattr(v, "_fields") else "dataclass")
    for name, m in list(sys.modules.items())
    if name.startswith("ocidist")
    for k, v in vars(m).items()
    if isinstance(v, type) and v.__module__ == name
    and ((issubclass(v, tuple) and hasattr(v, "_fields")) or "__dataclass_fields__" in vars(v))
]
print(" ".join(sorted(sys.modules) + made))
"""


def _loaded(*argv: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(PYTHONPATH=SRC, COLUMNS="100")
    proc = subprocess.run(
        [sys.executable, "-c", _CODE, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.splitlines()[-1].split())


@pytest.fixture(scope="module")
def small_ref(registry: Registry) -> str:
    image = build_image([{"etc/hello": b"hello\n"}, {"bin/x": b"x" * 3000}])
    http_push(registry, "startup/small", "v1", image)
    return f"{registry.host}/startup/small:v1"


def test_help_loads_no_network_or_store_module() -> None:
    loaded = _loaded("--help")
    assert "ocidist.cli.main" in loaded  # it ran
    assert sorted(NOT_FOR_HELP & loaded) == []


def test_resolve_loads_only_what_it_needs(small_ref: str) -> None:
    loaded = _loaded("resolve", small_ref)
    assert "ocidist.remotes.docker.http11" in loaded  # the strict framing is there
    assert sorted(NEVER & loaded) == []
    # Only its own command's parser is built: no other command's module.
    assert sorted(_commands(loaded)) == ["ocidist.cli.resolve"]
    assert _exec_made(loaded) == []


def _exec_made(loaded: set[str]) -> list[str]:
    return sorted(m for m in loaded if m.endswith((":namedtuple", ":dataclass")))


def _commands(loaded: set[str]) -> set[str]:
    from ocidist.cli.main import COMMANDS

    return set(COMMANDS) & loaded


def test_help_builds_every_command() -> None:
    from ocidist.cli.main import COMMANDS

    assert _commands(_loaded("--help")) == set(COMMANDS)


def test_fetch_of_a_small_image_loads_only_what_it_needs(small_ref: str, tmp_path: Path) -> None:
    loaded = _loaded("--root", str(tmp_path / "root"), "fetch", "-q", small_ref)
    assert "ocidist.remotes.docker.http11" in loaded and "ocidist.content.local" in loaded
    assert sorted(NEVER & loaded) == []
    assert sorted(_commands(loaded)) == ["ocidist.cli.fetch"]
    assert _exec_made(loaded) == []


def test_blobs_below_the_range_threshold_never_load_the_ranged_fetch(
    small_ref: str, tmp_path: Path
) -> None:
    """With ranges asked for (a far registry's default; here the flag, which
    skips the near-registry check), blobs below the threshold are one
    stream each, and the fetcher says so itself: the ranged fetch (with
    urllib.parse and ipaddress, ~3 ms between a far image's manifest and
    its layers' requests) is not imported for them."""
    for command in (["fetch", "-q", small_ref], ["unpack", "-q", small_ref, str(tmp_path / "d")]):
        root = str(tmp_path / command[0])
        loaded = _loaded("--root", root, "--range-threshold", "1MiB", *command)
        assert "ocidist.remotes.docker.rangefetch" not in loaded, command
        assert "urllib.parse" not in loaded, command
