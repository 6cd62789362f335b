"""Image references: parse, validate and normalise them the way Docker does.

Grammar (distribution/reference)::

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [ domain "/" ] path
    domain     := host [ ":" port ]
    host       := domain-component ( "." domain-component )* | "[" ipv6 "]"
    path       := path-component ( "/" path-component )*
    path-component := [a-z0-9]+ ( ( [._] | "__" | "-"+ ) [a-z0-9]+ )*
    tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}

Docker's normalisation on top of that (``parse``):

- the first path component is a domain only if it contains ``.`` or ``:``, is
  ``localhost``, or has an uppercase letter; otherwise the domain is
  ``docker.io`` and a single-component path gets ``library/`` in front;
- ``index.docker.io`` is an alias of ``docker.io`` (as in Docker). We also treat
  ``registry-1.docker.io`` — the host Docker Hub's API actually lives on — as an
  alias, a deliberate difference from Docker: one registry under three host
  names would give the same image three names in the metadata store and miss
  the single credential entry Docker Hub has;
- ``latest`` is added only when there is neither a tag nor a digest; when both
  are given both are kept, and the digest is what gets fetched.
"""

from __future__ import annotations

import re

from ocidist.dialling import DOCKER_HUB, DOCKER_HUB_ALIASES, split_domain
from ocidist.digest import Digest, InvalidDigest
from ocidist.errors import InvalidReference
from ocidist.value import Value

DEFAULT_DOMAIN = DOCKER_HUB
OFFICIAL_PREFIX = "library/"
DOCKER_DOMAIN_ALIASES = DOCKER_HUB_ALIASES
# Distribution refuses repository names (domain/path) longer than this.
NAME_TOTAL_LENGTH_MAX = 255

# re.ASCII everywhere: Go's \w and character classes are ASCII-only, and Python's
# are Unicode by default, which would let "é" into a tag.
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*", re.ASCII)
_DOMAIN_COMPONENT = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?", re.ASCII)
_IPV6 = re.compile(r"\[[a-fA-F0-9:]+\]", re.ASCII)
_TAG = re.compile(r"\w[\w.-]{0,127}", re.ASCII)
# Docker refuses a bare 64-hex name because it is indistinguishable from an
# image ID on the command line.
_IDENTIFIER = re.compile(r"[a-f0-9]{64}", re.ASCII)


class Reference(Value):
    """A parsed reference. Build it with ``parse`` (or ``parse_strict``).

    ``domain`` is empty only for references from ``parse_strict`` without one.
    """

    __slots__ = ("domain", "path", "tag", "digest")
    domain: str
    path: str
    tag: str | None
    digest: Digest | None

    def __init__(
        self, domain: str, path: str, tag: str | None = None, digest: Digest | None = None
    ) -> None:
        object.__setattr__(self, "domain", domain)
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "tag", tag)
        object.__setattr__(self, "digest", digest)

    @property
    def repository(self) -> str:
        """``docker.io/library/redis``: the name without tag or digest."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def name(self) -> str:
        """The canonical string: ``docker.io/library/redis:latest`` (or ``…@sha256:…``)."""
        return self.repository + self._suffix()

    @property
    def object(self) -> str:
        """What goes after ``/manifests/``: the digest when there is one, else the tag."""
        if self.digest is not None:
            return str(self.digest)
        if self.tag is not None:
            return self.tag
        raise InvalidReference(f"reference {self.repository!r} has neither tag nor digest")

    def familiar(self) -> str:
        """Docker's short form: ``redis:latest``, ``user/app:1``, ``ghcr.io/o/a:1``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.repository + self._suffix()
        path = self.path
        rest = path[len(OFFICIAL_PREFIX) :]
        if path.startswith(OFFICIAL_PREFIX) and "/" not in rest:
            path = rest
        # Unlike Docker, keep the domain when the short form would read back
        # as another registry ("docker.io/a.b/c" is not "a.b/c"), so that
        # parse(ref.familiar()) == ref always holds.
        if split_domain(path)[0] != DEFAULT_DOMAIN:
            return self.repository + self._suffix()
        return path + self._suffix()

    def with_tag(self, tag: str) -> Reference:
        """The same repository with ``tag``; a digest, if any, is kept."""
        _check_tag(tag, tag)
        return self.replace(tag=tag)

    def with_digest(self, dgst: Digest | str) -> Reference:
        """The same repository pinned to ``dgst``; a tag, if any, is kept."""
        if isinstance(dgst, str):
            dgst = _parse_digest(dgst, dgst)
        return self.replace(digest=dgst)

    def _suffix(self) -> str:
        tag = f":{self.tag}" if self.tag is not None else ""
        dgst = f"@{self.digest}" if self.digest is not None else ""
        return tag + dgst

    def __str__(self) -> str:
        return self.name


def parse(text: str, *, default_tag: str = "latest") -> Reference:
    """Parse and normalise like ``docker pull`` does; raise ``InvalidReference``.

    ``default_tag=""`` leaves a reference without tag or digest untagged.
    """
    if not text:
        raise InvalidReference("invalid reference: empty reference")
    if _IDENTIFIER.fullmatch(text):
        raise InvalidReference(
            f"invalid reference {text!r}: cannot specify 64-byte hexadecimal strings"
        )
    rest, dgst = _split_digest(text)
    domain, remainder = split_domain(rest)
    path, tag = _split_tag(text, remainder)
    if path.lower() != path:
        raise InvalidReference(f"invalid reference {text!r}: repository name must be lowercase")
    if domain in DOCKER_DOMAIN_ALIASES:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_PREFIX + path
    _check_domain(text, domain)
    _check_path(text, domain, path)
    if tag is not None:
        _check_tag(text, tag)
    elif dgst is None and default_tag:
        _check_tag(default_tag, default_tag)
        tag = default_tag
    return Reference(domain, path, tag, dgst)


def parse_strict(text: str) -> Reference:
    """Parse exactly as the distribution grammar, with no Docker normalisation.

    No default domain, no ``library/``, no default tag. As in distribution, the
    first of several components is the domain whenever it is a valid host, so
    ``a/b`` has domain ``a``.
    """
    if not text:
        raise InvalidReference("invalid reference: empty reference")
    rest, dgst = _split_digest(text)
    domain, slash, remainder = rest.partition("/")
    if not slash or not _is_host_port(domain):
        domain, remainder = "", rest
    path, tag = _split_tag(text, remainder)
    if path.lower() != path:
        raise InvalidReference(f"invalid reference {text!r}: repository name must be lowercase")
    if domain:
        _check_domain(text, domain)
    _check_path(text, domain, path)
    if tag is not None:
        _check_tag(text, tag)
    return Reference(domain, path, tag, dgst)


def _split_digest(text: str) -> tuple[str, Digest | None]:
    rest, at, dgst_text = text.partition("@")
    if not at:
        return text, None
    return rest, _parse_digest(text, dgst_text)


def _parse_digest(text: str, dgst_text: str) -> Digest:
    try:
        dgst = Digest.parse(dgst_text)
    except InvalidDigest as e:
        raise InvalidReference(f"invalid reference {text!r}: {e}") from e
    # Digest.parse matches with "$", which accepts a trailing newline; a
    # reference must be exactly its canonical text.
    if str(dgst) != dgst_text:
        raise InvalidReference(f"invalid reference {text!r}: invalid digest {dgst_text!r}")
    return dgst


def _split_tag(text: str, remainder: str) -> tuple[str, str | None]:
    # The domain (and its port) is already split off, so any ":" left starts
    # the tag; a ":" followed by a "/" means a port in the wrong place.
    path, colon, tag = remainder.partition(":")
    if not colon:
        return path, None
    if "/" in tag or ":" in tag:
        raise InvalidReference(f"invalid reference {text!r}: invalid tag {tag!r}")
    return path, tag


def is_tag(text: str) -> bool:
    """``text`` is a tag by the reference grammar (what a registry may list)."""
    return bool(_TAG.fullmatch(text))


def is_repository_path(text: str) -> bool:
    """``text`` is a repository path (``library/redis``) by the
    distribution-spec grammar, within the registry's name length."""
    return 0 < len(text) <= NAME_TOTAL_LENGTH_MAX and all(
        _PATH_COMPONENT.fullmatch(c) for c in text.split("/")
    )


def _check_tag(text: str, tag: str) -> None:
    if not _TAG.fullmatch(tag):
        raise InvalidReference(
            f"invalid reference {text!r}: invalid tag {tag!r} "
            "(letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')"
        )


def _is_host_port(domain: str) -> bool:
    try:
        _check_domain(domain, domain)
    except InvalidReference:
        return False
    return True


def _check_domain(text: str, domain: str) -> None:
    if domain.startswith("["):
        end = domain.find("]")
        host, port_part = domain[: end + 1], domain[end + 1 :]
        if end < 0 or not _IPV6.fullmatch(host):
            raise InvalidReference(f"invalid reference {text!r}: invalid IPv6 host {domain!r}")
    else:
        host, colon, port = domain.partition(":")
        port_part = colon + port
        if not host or not all(_DOMAIN_COMPONENT.fullmatch(c) for c in host.split(".")):
            raise InvalidReference(f"invalid reference {text!r}: invalid domain {domain!r}")
    if port_part:
        port = port_part[1:]
        # Length first: int() of thousands of digits is refused by Python itself.
        ok = port_part[0] == ":" and port.isascii() and port.isdigit() and len(port) <= 5
        if not ok or not 0 < int(port) <= 65535:
            raise InvalidReference(f"invalid reference {text!r}: invalid port in {domain!r}")


def _check_path(text: str, domain: str, path: str) -> None:
    for component in path.split("/"):
        if not component:
            raise InvalidReference(f"invalid reference {text!r}: empty path component")
        if not _PATH_COMPONENT.fullmatch(component):
            raise InvalidReference(
                f"invalid reference {text!r}: invalid repository name component "
                f"{component!r} (lowercase letters, digits and single separators '.', '_', "
                "'__', '-')"
            )
    repository = f"{domain}/{path}" if domain else path
    if len(repository) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(
            f"invalid reference {text[:80]!r}…: repository name is longer than "
            f"{NAME_TOTAL_LENGTH_MAX} characters"
        )
