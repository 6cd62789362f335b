"""Where a registry domain is dialled without any configuration: Docker
Hub's alias, and plain HTTP for loopback (or ``--plain-http``); and which
part of a reference is the domain (Docker's rule). Its own module,
importing nothing, so that ``cli.program`` and ``earlyconnect`` can ask it
while the command is still starting; ``remotes.docker.hosts`` builds its
default hosts from it, ``reference`` splits names with it."""

from __future__ import annotations

DOCKER_HUB = "docker.io"
DOCKER_HUB_REGISTRY = "registry-1.docker.io"
# Other names of Docker Hub that references are normalised from (reference.py).
DOCKER_HUB_ALIASES = frozenset({"index.docker.io", DOCKER_HUB_REGISTRY})
_DOMAIN_CHARACTERS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]"
)


def split_domain(name: str) -> tuple[str, str]:
    """(domain, the rest) of ``name`` (a reference without its digest) by
    Docker's rule: the first component is a domain only if it contains
    ``.`` or ``:``, is ``localhost``, or has an uppercase letter; otherwise
    the domain is Docker Hub's."""
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        return first, rest
    return DOCKER_HUB, name


def domain_of(ref: str) -> str | None:
    """The registry domain of the reference ``ref`` as ``reference.parse``
    normalises it, or None where its characters cannot make one (the parse
    will say what is wrong). Not a validation: an invalid reference can
    have a domain here."""
    domain = split_domain(ref.partition("@")[0])[0]
    if domain in DOCKER_HUB_ALIASES:
        return DOCKER_HUB
    if not domain or not _DOMAIN_CHARACTERS.issuperset(domain):
        return None
    return domain


def is_loopback(host: str) -> bool:
    name = host
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    return name in ("localhost", "::1") or name.startswith("127.")


def upstream(domain: str, plain_http: bool = False) -> tuple[str, str]:
    """(host[:port] as dialled, scheme) of ``domain``'s upstream."""
    dial = DOCKER_HUB_REGISTRY if domain == DOCKER_HUB else domain
    return dial, "http" if plain_http or is_loopback(dial) else "https"
