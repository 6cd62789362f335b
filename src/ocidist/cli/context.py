"""What every command handler gets: parsed global options and lazily built
services (resolver, content store, metadata), plus uniform error output."""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

from ocidist.errors import DistError, InvalidArgument
from ocidist.paths import default_root

if TYPE_CHECKING:
    from ocidist.api.client import Daemon
    from ocidist.content import Store
    from ocidist.content.tuning import Tuning
    from ocidist.metadata import Metadata, MetadataStore
    from ocidist.remotes.docker.auth import Credential, CredentialFunc
    from ocidist.remotes.docker.resolver import DockerResolver
    from ocidist.remotes.docker.upload import PushOptions


def parse_duration(text: str) -> float:
    """Go-style durations (`500ms`, `30s`, `1h30m`) or plain seconds."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    s = text.strip()
    try:
        return float(s)
    except ValueError:
        pass
    total, num, i = 0.0, "", 0
    matched = False
    while i < len(s):
        c = s[i]
        if c.isdigit() or c == ".":
            num += c
            i += 1
            continue
        for unit in ("ns", "us", "µs", "ms", "h", "m", "s"):
            if s.startswith(unit, i) and num:
                total += float(num) * units[unit]
                num, i, matched = "", i + len(unit), True
                break
        else:
            raise argparse.ArgumentTypeError(f"invalid duration {text!r} (e.g. 30s, 5m, 1h30m)")
    if num or not matched:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (e.g. 30s, 5m, 1h30m)")
    return total


_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """``65536``, ``64k``, ``32MiB``, ``1G`` (binary units) as bytes."""
    s = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = s[-1:] if s[-1:] in _SIZE_UNITS and s[-1:] else ""
    num = s[: len(s) - len(unit)].strip()
    if not (num.isascii() and num.isdigit()):
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (e.g. 1048576, 64KiB, 32MiB)")
    return int(num) * _SIZE_UNITS[unit]


def _env_int(name: str) -> int | None:
    v = os.environ.get(name)
    return int(v) if v and v.strip().isascii() and v.strip().isdigit() else None


def _env_size(name: str) -> int | None:
    v = os.environ.get(name)
    try:
        return parse_size(v) if v else None
    except argparse.ArgumentTypeError:
        return None


GLOBAL_OPTIONS = (
    "--root",
    "--hosts-dir",
    "--user",
    "--password-stdin",
    "--plain-http",
    "--insecure",
    "--timeout",
    "--address",
    "--max-ranges",
    "--range-threshold",
    "--range-size",
    "--debug",
    "--quiet",
    "--json",
)


def add_global_options(
    p: argparse.ArgumentParser,
    *,
    suppress: bool,
    shown: frozenset[str] = frozenset(),
    helps: dict[str, str] | None = None,
) -> None:
    """The global options, on the top-level parser (``suppress=False``: real
    defaults, listed in ``dist --help``) or on a command's parser
    (``suppress=True``: SUPPRESS defaults, so a value given before the command
    is kept, and hidden from the command's help and usage unless named in
    ``shown``, so `dist COMMAND --help` lists the command's own options).
    ``helps`` replaces the help of some options for one command."""

    def d(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    def h(option: str, text: str) -> str:
        if suppress and option not in shown:
            return argparse.SUPPRESS
        return (helps or {}).get(option, text)

    env_timeout = os.environ.get("DIST_TIMEOUT")
    g = p.add_argument_group("global options") if not suppress or shown else p
    g.add_argument(
        "--root",
        metavar="DIR",
        default=d(os.environ.get("DIST_ROOT")),
        help=h("--root", "content store root (env DIST_ROOT; default $XDG_DATA_HOME/ocidist)"),
    )
    g.add_argument(
        "--hosts-dir",
        metavar="DIR",
        default=d(os.environ.get("DIST_HOSTS_DIR")),
        help=h(
            "--hosts-dir",
            "containerd-style registry hosts directory, DIR/<host>/hosts.toml "
            "(env DIST_HOSTS_DIR; default $XDG_CONFIG_HOME/ocidist/certs.d)",
        ),
    )
    g.add_argument(
        "--user",
        "-u",
        metavar="USER[:PASS]",
        default=d(None),
        help=h(
            "--user",
            "credentials for the registry the command names, and for no other host "
            "(not its mirrors; copy: --src-user/--dest-user); without :PASS the "
            "password is read from stdin (--password-stdin) or prompted for. Otherwise "
            "credentials come from Docker's config.json (env DOCKER_CONFIG; default "
            "~/.docker), then podman/skopeo's auth.json; with env REGISTRY_AUTH_FILE "
            "set, from that file alone",
        ),
    )
    g.add_argument(
        "--password-stdin",
        action="store_true",
        default=d(False),
        help=h("--password-stdin", "read the password for --user (or dist login) from stdin"),
    )
    g.add_argument(
        "--plain-http",
        action="store_true",
        default=d(False),
        help=h("--plain-http", "talk plain HTTP to the registry (always for localhost/::1)"),
    )
    g.add_argument(
        "--insecure",
        action="store_true",
        default=d(False),
        help=h("--insecure", "skip TLS certificate verification"),
    )
    g.add_argument(
        "--timeout",
        type=parse_duration,
        metavar="DURATION",
        default=d(parse_duration(env_timeout) if env_timeout else None),
        help=h("--timeout", "deadline for the whole command, e.g. 30s, 5m (env DIST_TIMEOUT)"),
    )
    g.add_argument(
        "--address",
        metavar="ADDR",
        default=d(os.environ.get("DIST_ADDRESS")),
        help=h(
            "--address",
            "work through the `dist serve` daemon at unix:///path, a path or "
            "tcp://127.0.0.1:PORT instead of opening the store (env DIST_ADDRESS)",
        ),
    )
    g.add_argument(
        "--max-ranges",
        type=int,
        metavar="N",
        default=d(_env_int("DIST_MAX_RANGES")),
        help=h(
            "--max-ranges",
            "fetch a big blob in at most N concurrent ranges; 1 = one stream "
            "(env DIST_MAX_RANGES; default 16: 1 at first, 8 from a far registry, "
            "more while each is slow)",
        ),
    )
    g.add_argument(
        "--range-threshold",
        type=parse_size,
        metavar="SIZE",
        default=d(_env_size("DIST_RANGE_THRESHOLD")),
        help=h(
            "--range-threshold",
            "blobs from this size on are fetched in ranges, e.g. 32MiB; 0 = never "
            "(env DIST_RANGE_THRESHOLD; default 32MiB)",
        ),
    )
    g.add_argument(
        "--range-size",
        type=parse_size,
        metavar="SIZE",
        default=d(_env_size("DIST_RANGE_SIZE")),
        help=h(
            "--range-size",
            "bytes per range request (env DIST_RANGE_SIZE; default from the blob's size)",
        ),
    )
    g.add_argument(
        "--debug",
        action="store_true",
        default=d(False),
        help=h("--debug", "trace registry requests on stderr (secrets redacted); tracebacks"),
    )
    g.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        default=d(False),
        help=h("--quiet", "no progress or summaries, only results"),
    )
    g.add_argument(
        "--json",
        action="store_true",
        default=d(False),
        help=h("--json", "newline-delimited JSON on stdout, errors as JSON on stderr"),
    )


# An error line longer than this is cut: the detail is in --debug.
MAX_ERROR_LINE = 4096


def write_event(out: TextIO, doc: Mapping[str, Any]) -> None:
    """One JSON object on one line (``ensure_ascii``: registry text cannot put
    control characters or odd Unicode on a terminal through it)."""
    out.write(json.dumps(doc, separators=(",", ":")) + "\n")
    out.flush()


def describe_error(e: BaseException) -> tuple[str, int]:
    """The message (without ``dist: ``) and exit code of a failure."""
    if isinstance(e, DistError):
        return str(e), e.exit_code
    if isinstance(e, OSError):
        why = os.strerror(e.errno).lower() if e.errno else str(e)
        if e.errno == errno.ENOSPC:
            why = "no space left on device"
        where = f"{e.filename}: " if e.filename else ""
        return f"{where}{why}", 1
    return str(e), 1


def error_kind(e: BaseException | None) -> str:
    """The ``error`` of an ``error`` event: one of a closed set (the schema's
    enum), so programs can rely on it. A class of ``ocidist.errors``; an
    error raised as a subclass defined elsewhere (``InvalidDigest``) or a
    private one (an applier's entry error) reports its nearest such ancestor."""
    if e is None:
        return "UsageError"
    if isinstance(e, OSError):
        return "OSError"
    if isinstance(e, KeyboardInterrupt):
        return "Interrupted"
    for cls in type(e).__mro__:
        if cls.__module__ == "ocidist.errors" and not cls.__name__.startswith("_"):
            return cls.__name__
    return "DistError"


def report_error(
    message: str, code: int, e: BaseException | None = None, *, as_json: bool = False
) -> None:
    """``dist: MESSAGE`` on stderr, or under --json one ``error`` event:
    ``{"event": "error", "message", "error": <kind>, "exitCode"}``."""
    from ocidist.text import escape

    if as_json:
        kind = error_kind(e)
        # json.dumps escapes what needs it; the length is bounded all the same.
        text = message if len(message) <= MAX_ERROR_LINE else escape(message, MAX_ERROR_LINE)
        doc = {"event": "error", "message": text, "error": kind, "exitCode": code}
        write_event(sys.stderr, doc)
    else:
        # Escaped as a whole, whatever it quotes: the contract is one line
        # (of bounded length), and registry or image text inside must not
        # move the terminal.
        print(f"dist: {escape(message, MAX_ERROR_LINE)}", file=sys.stderr)


def _primed(store: MetadataStore) -> MetadataStore:
    """``store``, its WAL begun (``prime``): opened in the background by a
    command that records a name at its end (fetch, pull, unpack)."""
    store.prime()
    return store


class Context:
    """Per-invocation state shared by command handlers."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.debug: bool = bool(getattr(args, "debug", False))
        if self.debug:
            from ocidist import logs

            logs.enable(sys.stderr)  # the request trace (remotes/docker/trace.py)
        self.json: bool = bool(getattr(args, "json", False))
        self.quiet: bool = bool(getattr(args, "quiet", False))
        timeout = getattr(args, "timeout", None)
        self.deadline: float | None = time.monotonic() + timeout if timeout else None
        self._resolver: DockerResolver | None = None
        # Set by the commands that push, before they make the resolver.
        self.push_options: PushOptions | None = None
        self._user_cred: Credential | None = None
        self._bindings: list[tuple[str, Credential]] | None = None
        self._store: Store | None = None
        self._metadata: Metadata | None = None
        self._daemon: Daemon | None = None

    @property
    def root(self) -> str:
        return str(getattr(self.args, "root", None) or default_root())

    def daemon(self) -> Daemon | None:
        """The `dist serve` connection when --address is given (client mode)."""
        address = getattr(self.args, "address", None)
        if address and self._daemon is None:
            from ocidist.extras import require_serve

            require_serve(f"--address {address}")
            from ocidist.api.client import Daemon

            self._daemon = Daemon(address)
        return self._daemon

    def store(self) -> Store:
        if self._store is None:
            from ocidist.content.local import LocalStore

            daemon = self.daemon()
            self._store = daemon.store() if daemon else LocalStore(self.root)
        return self._store

    def metadata(self, *, background: bool = False) -> Metadata:
        """This command's metadata store; with ``background`` a local one is
        opened in a thread while the caller goes on (a pull's transfers)."""
        if self._metadata is None:
            from ocidist.metadata import MetadataStore, OpeningInBackground

            daemon = self.daemon()
            path = os.path.join(self.root, "metadata.db")
            if daemon:
                self._metadata = daemon.metadata()
            elif background:
                self._metadata = OpeningInBackground(lambda: _primed(MetadataStore(path)))
            else:
                self._metadata = MetadataStore(path)
        return self._metadata

    def resolver(self) -> DockerResolver:
        """This command's resolver (made once; closed with the context)."""
        if self._resolver is None:
            self._resolver = self.new_resolver()
        return self._resolver

    def new_resolver(
        self, credentials: CredentialFunc | None = None, *, deadline: bool = True
    ) -> DockerResolver:
        """A resolver with the global options (--plain-http, --insecure,
        --hosts-dir and, with ``deadline``, --timeout); ``credentials``
        default to --user, then Docker's config. The caller closes it."""
        from ocidist.remotes.docker.resolver import DockerResolver, ResolverOptions

        return DockerResolver(
            ResolverOptions(
                plain_http=bool(getattr(self.args, "plain_http", False)),
                insecure=bool(getattr(self.args, "insecure", False)),
                deadline=self.deadline if deadline else None,
                hosts_dir=getattr(self.args, "hosts_dir", None),
                credentials=credentials or self.credentials(),
                push=self.push_options,
                ranges=self.range_tuning(),
            )
        )

    def range_tuning(self) -> Tuning | None:
        """--max-ranges, --range-threshold, --range-size over the defaults
        (None when none is given: hosts.toml's keys or the defaults apply)."""
        from ocidist.remotes.docker.hostsconfig import tuning_from

        return tuning_from(
            getattr(self.args, "max_ranges", None),
            getattr(self.args, "range_threshold", None),
            getattr(self.args, "range_size", None),
        )

    def user_credential(self, prompt_user: bool = False) -> Credential | None:
        """``--user USER[:PASS]`` as given, for the commands that decide where
        it goes themselves (login, serve); the password from stdin or a TTY
        prompt. ``prompt_user`` (dist login) also asks for the user name on a TTY."""
        if self._user_cred is not None:
            return self._user_cred
        text = getattr(self.args, "user", None)
        if not text:
            if not (prompt_user and sys.stdin.isatty()):
                return None
            text = input("Username: ").strip()
        self._user_cred = self._credential("--user", text, "Password: ")
        return self._user_cred

    def _credential(self, option: str, text: str, prompt: str) -> Credential:
        from ocidist.remotes.docker.auth import Credential
        from ocidist.remotes.docker.credentials import parse_user

        user, password = parse_user(text, option)
        if password is None:
            password = self.read_password(prompt)
        return Credential(username=user, secret=password)

    def read_password(self, prompt: str = "Password: ") -> str:
        if getattr(self.args, "password_stdin", False):
            # docker login strips the trailing newline only; so do we.
            return sys.stdin.readline().rstrip("\r\n")
        if sys.stdin.isatty():
            import getpass

            return getpass.getpass(prompt)
        raise InvalidArgument("no password: give USER:PASS, --password-stdin, or use a terminal")

    def check_user_options(self) -> None:
        """Refuse --user / --src-user / --dest-user that cannot be bound to
        one registry before the command does anything (their passwords are
        read when a registry is first contacted)."""
        if getattr(self.args, "registries", None) is not None:
            from ocidist.cli.usercreds import bindings

            bindings(self.args)

    def user_bindings(self) -> list[tuple[str, Credential]]:
        """``(registry, credential)`` for ``--user`` (or copy's ``--src-user``
        and ``--dest-user``): each goes to the registry the command names
        for it and to no other host (cli/usercreds.py)."""
        if self._bindings is None:
            from ocidist.cli.usercreds import bindings

            given = bindings(self.args)
            from_stdin = [o for o, text, _ in given if ":" not in text]
            if len(from_stdin) > 1 and getattr(self.args, "password_stdin", False):
                raise InvalidArgument(
                    f"--password-stdin reads one password, and {' and '.join(from_stdin)} "
                    "both need one: give the other as USER:PASS"
                )
            self._bindings = [
                (registry, self._credential(option, text, f"Password for {registry}: "))
                for option, text, registry in given
            ]
        return self._bindings

    def credentials(self, *, use_user: bool = True) -> CredentialFunc:
        """``--user`` for the registry the command names (unless not
        ``use_user``), then the credential files (authfile.stored: Docker's
        config.json with its helpers, then podman/skopeo's auth.json; or
        $REGISTRY_AUTH_FILE alone)."""
        from ocidist.remotes.docker import credentials as creds
        from ocidist.remotes.docker.authfile import stored

        files = stored()
        if not use_user:
            return files
        bound = [creds.for_registry(registry, cred) for registry, cred in self.user_bindings()]
        return creds.chain(*bound, files) if bound else files

    def emit(self, event: str, doc: Mapping[str, Any] | None = None) -> None:
        """One ``--json`` line on stdout: ``{"event": EVENT, **doc}``, compact.

        Every line a command writes under --json is one such object
        (docs/JSON.md has the schema): a result (``resolved``, ``image``, …,
        one line per item for lists), or for commands that move data the
        progress events and a closing ``done``."""
        write_event(sys.stdout, {"event": event, **(doc or {})})

    def warn(self, message: str) -> None:
        """A warning on stderr: ``dist: warning: …``, or an event under --json."""
        if self.json:
            write_event(sys.stderr, {"event": "warning", "message": message})
        elif not self.quiet:
            from ocidist.text import escape  # e.g. entry names from a layer

            print(f"dist: warning: {escape(message)}", file=sys.stderr)

    def fail(self, e: BaseException) -> int:
        """Print one `dist: …` line (and a traceback with --debug); return the exit code.
        Under --json the line is an ``error`` event on stderr instead."""
        if self.debug:
            import traceback  # only with --debug: ~2 ms of every command's start-up

            traceback.print_exception(e, file=sys.stderr)
        message, code = describe_error(e)
        report_error(message, code, e, as_json=self.json)
        return code

    def close(self, *, exiting: bool = False) -> None:
        """Close what the command opened; ``exiting``: the process ends
        next (``os._exit``), so a local metadata store is only made durable
        (``MetadataStore.leave``), not checkpointed and closed."""
        from ocidist import earlyconnect

        earlyconnect.discard()  # opened at start-up, never needed (cli.main)
        if self._resolver is not None:
            self._resolver.close()
        if self._metadata is not None:
            from ocidist.metadata import MetadataStore, OpeningInBackground

            if exiting and isinstance(self._metadata, MetadataStore | OpeningInBackground):
                self._metadata.leave()
            else:
                self._metadata.close()
        if self._daemon is not None:
            self._daemon.close()
