"""Where a registry domain is dialled without any configuration: Docker
Hub's alias, and plain HTTP for loopback (or ``--plain-http``). Its own
module, importing nothing, so that ``earlyconnect`` can ask it while the
command is still starting; ``remotes.docker.hosts`` builds its default
hosts from it."""

from __future__ import annotations

DOCKER_HUB = "docker.io"
DOCKER_HUB_REGISTRY = "registry-1.docker.io"


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
