"""Which endpoints serve a registry domain, and how to talk to them.

Without configuration: Docker Hub's alias and plain HTTP for loopback or
``--plain-http``. Mirrors and per-host TLS come from a containerd-style
``hosts.toml`` (see hostsconfig.py); ``RegistryHost`` lists are ordered:
mirrors first, then the upstream.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from ocidist import logs
from ocidist.content.tuning import Tuning
from ocidist.dialling import upstream
from ocidist.errors import DistError, NotFound, RegistryError, Unavailable, reworded
from ocidist.remotes.docker.origin import Origin, origin_of
from ocidist.remotes.docker.transport import TLSConfig
from ocidist.value import Value

T = TypeVar("T")
_LOGGER = "ocidist.remotes"

# Docker Hub's alias and the loopback rule: ocidist.dialling (importable
# while the command starts: earlyconnect).

PULL, RESOLVE, PUSH = "pull", "resolve", "push"
ALL_CAPABILITIES = frozenset({PULL, RESOLVE, PUSH})


class RegistryHost(Value):
    __slots__ = ("host", "scheme", "path", "capabilities", "tls", "headers", "ranges")
    _no_hash = ("headers", "ranges")
    host: str  # host[:port] as dialled
    scheme: str
    path: str  # API prefix (hosts.toml override_path can change it)
    capabilities: frozenset[str]
    tls: TLSConfig
    headers: Mapping[str, str]
    ranges: Tuning | None  # hosts.toml's parallel-range settings, if any

    def __init__(
        self,
        host: str,
        scheme: str = "https",
        path: str = "/v2",
        capabilities: frozenset[str] = ALL_CAPABILITIES,
        tls: TLSConfig | None = None,
        headers: Mapping[str, str] | None = None,
        ranges: Tuning | None = None,
    ) -> None:
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "scheme", scheme)
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "capabilities", capabilities)
        object.__setattr__(self, "tls", TLSConfig() if tls is None else tls)
        object.__setattr__(self, "headers", {} if headers is None else headers)
        object.__setattr__(self, "ranges", ranges)

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}{self.path}"

    @property
    def origin(self) -> Origin:
        """The origin this host's credentials and configured headers belong to."""
        return origin_of(self.base)


def default_hosts(
    domain: str, *, plain_http: bool = False, insecure: bool = False
) -> list[RegistryHost]:
    """The upstream endpoint for ``domain`` without any configuration file."""
    dial, scheme = upstream(domain, plain_http)
    return [RegistryHost(host=dial, scheme=scheme, tls=TLSConfig(insecure=insecure))]


def every_host_failed(what: str, failures: list[tuple[RegistryHost, DistError]]) -> DistError:
    """One error naming every host tried and why, typed like the last failure
    (the upstream's, since it comes last), so "not found" stays NotFound."""
    parts = []
    for host, e in failures:
        why = str(e)
        # Each error starts with the object's name; say it once, not per host.
        if why.startswith(what + ": "):
            why = why[len(what) + 2 :]
        parts.append(f"{host.host}: {why}")
    last = failures[-1][1]
    return reworded(last, f"{what}: tried {len(failures)} hosts: " + "; ".join(parts))


def mirror_failure(e: DistError) -> bool:
    """Whether a host's failure lets the next host be tried: it is down, lacks
    the object, or answered with an error (a mirror may need other credentials
    than the upstream, or none it has)."""
    return isinstance(e, NotFound | Unavailable | RegistryError)


def first_success(
    what: str,
    hosts: Sequence[RegistryHost],
    attempt: Callable[[RegistryHost], T],
    skip: Callable[[DistError], bool] = mirror_failure,
) -> T:
    """``attempt`` on each host in order (mirrors first, the upstream last)
    until one succeeds. A failure ``skip`` accepts moves on to the next host;
    when every host failed, one error names them all (``every_host_failed``),
    or with a single host its own error is raised as it is."""
    failures: list[tuple[RegistryHost, DistError]] = []
    for host in hosts:
        try:
            result = attempt(host)
        except DistError as e:
            if len(hosts) == 1 or not skip(e):
                raise
            logs.debug(_LOGGER, "%s: host %s failed (%s); trying the next", what, host.host, str(e))
            failures.append((host, e))
            continue
        if len(hosts) > 1:
            logs.debug(_LOGGER, "%s: answered by %s", what, host.host)
        return result
    raise every_host_failed(what, failures)
