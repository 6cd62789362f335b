"""The `dist` program's first module (``[project.scripts]`` and ``python -m
ocidist`` start here): where a command starts with a request to a far
registry, the connection to it is begun before anything else is imported.

``dist fetch``, ``pull`` and ``unpack`` begin with a request to the
registry their reference names, and on a far link its TCP handshake is a
round trip before that request can leave. The command line is parsed only
after ~25 ms of imports (``typing`` and ``re`` alone are ~8 ms); the
reference is there from the first instant. So this module, importing
nothing but what the interpreter has loaded and ``ocidist.earlyconnect``
(``_socket``, ``_thread``), reads the words the command will parse and,
where they are plainly ``dist [GLOBAL OPTIONS] fetch|pull|unpack REF ...``,
starts the connection at once. Anything less plain (an option before the
reference, ``--hosts-dir``, ``--address``, a proxy in the environment, a
hosts.toml directory for the registry) starts nothing here, and
``cli.main`` decides after parsing, as it always did; it also checks that
what was started here is what the parsed command dials, and closes it
otherwise. The connection never sends a byte (earlyconnect).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing's import is what this module exists to avoid
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import NoReturn

# Global options that take a value as the next word (to find the command).
VALUE_OPTIONS = frozenset(
    {"--root", "--hosts-dir", "--user", "-u", "--timeout", "--address"}
    | {"--max-ranges", "--range-threshold", "--range-size"}
)
# The commands whose parser names its reference as ``early_connect``, the
# reference being their first positional word (tests check both).
EARLY_COMMANDS = frozenset({"fetch", "pull", "unpack"})
# A proxy takes the connection elsewhere: none is opened around it.
PROXY_VARIABLES = (
    *("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"),
    *("http_proxy", "https_proxy", "all_proxy"),
)


def run() -> NoReturn:
    """The `dist` program."""
    connect_first(sys.argv[1:])
    from ocidist.cli.main import run as run_main

    run_main()


def command_at(words: Sequence[str]) -> int | None:
    """Where in ``words`` the command word is, or None (none, ``--``)."""
    skip = False
    for i, word in enumerate(words):
        if skip:
            skip = False
        elif word in VALUE_OPTIONS:
            skip = True
        elif word == "--":
            return None
        elif not word.startswith("-"):
            return i
    return None


def connect_first(words: Sequence[str]) -> None:
    """Begin the connection ``words`` will first need, where they plainly say
    which (see the module's docstring); best effort, and silent."""
    at = command_at(words)
    if at is None or words[at] not in EARLY_COMMANDS or at + 1 >= len(words):
        return
    ref = words[at + 1]
    if ref.startswith("-") or proxy_set():
        return
    # DIST_ADDRESS is --address's default: cli.main opens nothing for it.
    if os.environ.get("DIST_ADDRESS"):
        return
    # --address (a daemon does the work) and --hosts-dir, or any abbreviation
    # argparse would take for them; -h/--help (nothing to fetch), also in a
    # group of short options (argparse reads -qh as -q -h).
    if any(_names_stopper(w) or _short_help(w) for w in words):
        return
    from ocidist import dialling, earlyconnect

    domain = dialling.domain_of(ref)
    if domain is None:
        return
    hosts_dir = os.environ.get("DIST_HOSTS_DIR") or default_hosts_dir()
    if hosts_configured(hosts_dir, domain):
        return
    plain = any(len(w) > 5 and "--plain-http".startswith(w) for w in words)
    address = earlyconnect.dial(domain, plain)
    if address is not None:
        earlyconnect.start(*address)


_STOPPERS = ("--address", "--hosts-dir", "--help")


def _names_stopper(word: str) -> bool:
    """``word`` is one of ``_STOPPERS``, or a prefix argparse could take for
    one (``--ad``, ``--hosts-d=DIR``), with or without ``=VALUE``; not
    another option that merely starts alike (``--all-platforms``: the
    bench's and many a user's `dist fetch REF --all-platforms`)."""
    name = word.partition("=")[0]
    return len(name) > 2 and name.startswith("--") and any(o.startswith(name) for o in _STOPPERS)


def _short_help(word: str) -> bool:
    # Conservative: an -h that is the value of a short option (-uhal) only
    # costs the early connection.
    return word.startswith("-") and not word.startswith("--") and "h" in word


def proxy_set() -> bool:
    """A proxy variable is set: an early connection would go around it."""
    return any(os.environ.get(v) for v in PROXY_VARIABLES)


def hosts_configured(hosts_dir: str, domain: str) -> bool:
    """``hosts_dir`` has a hosts.toml directory for ``domain`` (or
    ``_default``): mirrors or another server may be named there, so the
    address does not follow from the reference alone."""
    return any(os.path.exists(os.path.join(hosts_dir, n)) for n in (domain, "_default"))


def default_hosts_dir() -> str:
    # As remotes.docker.hostsconfig.default_hosts_dir, without importing the
    # transport while the command starts (tests check the two agree).
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "ocidist", "certs.d")
