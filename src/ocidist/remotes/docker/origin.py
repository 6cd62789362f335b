"""Where credentials and configured headers may go: the one module that decides.

An *origin* is scheme + host + port (RFC 6454): ``https://r.example`` and
``http://r.example`` are two origins, and so are ports 443 and 5000 of one
host. Every request the registry client sends states which origin its
*bound* headers belong to; ``Transport.request`` asks this module, for the
first request and for every redirect hop, what may go where:

1. **Bound headers go only to their exact origin.** ``Authorization``,
   ``Cookie``, ``Proxy-Authorization`` (``BOUND_NAMES``, wherever a caller
   put them) and every header a caller passes as bound (each hosts.toml
   ``[header]`` value) are sent only when the target's origin equals the
   bound origin; a redirect anywhere else drops them (and a redirect back
   to the origin gets them again).
2. **Nothing bound crosses plain HTTP to a host known as HTTPS.** A host
   name configured with ``https://`` (``HTTPSHosts.add``) or reached over
   TLS in this process keeps its bound headers off ``http://`` to that name,
   even if the bound origin itself is plain HTTP (a mirror table naming
   both).
3. **A request body never follows a redirect to another origin.** A
   301/302/307/308 answer to a request with a body (the token POST carries
   the password in its form) is refused when the ``Location`` is another
   origin; to the same origin, a 307/308 (and 301/302: our own server
   moving a path) re-sends a body we hold as bytes, and a stream (an upload
   in flight) is refused. A 303 becomes a body-less GET, anywhere.
4. Only ``http`` and ``https`` URLs are followed; 10 hops at most
   (``transport.MAX_REDIRECTS``).
5. **A secret that is the request itself stays at its origin.** A request
   made ``confined`` (the token request: the password in its form or its
   Basic header) follows redirects within its bound origin only; anywhere
   else is refused, even a 303 or a redirect that would drop the header: a
   token endpoint that sends a login elsewhere is not one to trust.
6. **A challenge counts only from the origin it is for.** A 401 that a
   redirect target (another origin: a CDN, an object store) answered is
   that host's word, not the registry's: its ``WWW-Authenticate`` never
   decides where the registry's credentials go (``answered_by``). Taken as
   the registry's, a target's Bearer realm got the registry's password.

``redirect``, ``bound_for`` and ``answered_by`` are pure functions, tested
table by table in tests/test_origin.py; tests/test_origin_leaks.py and
tests/test_token_redirect.py replay each leak of issue 15 against real
sockets. The auth state machine asks ``may_carry_secret`` before it lets a
password go to a token realm; the token request itself is sent confined.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from ocidist.value import Value

# Headers that carry a credential whatever the caller called them.
BOUND_NAMES = frozenset({"authorization", "cookie", "proxy-authorization"})
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORT = {"http": 80, "https": 443}


class Refused(Exception):
    """A redirect the policy will not follow (the message says why)."""


class Origin(Value):
    __slots__ = ("scheme", "host", "port")
    scheme: str  # "http" or "https"
    host: str  # lower-case; an IPv6 address without brackets
    port: int

    def __init__(self, scheme: str, host: str, port: int) -> None:
        object.__setattr__(self, "scheme", scheme)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == _DEFAULT_PORT[self.scheme]:
            return f"{self.scheme}://{host}"
        return f"{self.scheme}://{host}:{self.port}"


def origin_of(url: str) -> Origin:
    """The origin of an absolute http(s) URL (ValueError for anything else)."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _DEFAULT_PORT:
        raise ValueError(f"not an http(s) URL: {url[:80]!r}")
    netloc = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if "@" in netloc:
        raise ValueError("URL with user information")
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise ValueError("invalid IPv6 host")
        host, port_text = netloc[1:end], netloc[end + 1 :].removeprefix(":")
        if netloc[end + 1 : end + 2] not in ("", ":"):
            raise ValueError("invalid host")
    else:
        host, _, port_text = netloc.partition(":")
    if not host:
        raise ValueError("URL without a host")
    port = _DEFAULT_PORT[scheme]
    if port_text:
        if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5):
            raise ValueError("invalid port")
        port = int(port_text)
        if not 0 < port <= 65535:
            raise ValueError("invalid port")
    return Origin(scheme, host.lower(), port)


class HTTPSHosts:
    """Host names configured or reached over HTTPS in this process (rule 2)."""

    def __init__(self) -> None:
        self._names: set[str] = set()
        self._lock = threading.Lock()

    def add(self, host: str) -> None:
        with self._lock:
            self._names.add(host.lower())

    def downgrade(self, target: Origin) -> bool:
        """True when ``target`` is plain HTTP to a name known as HTTPS."""
        if target.scheme != "http":
            return False
        with self._lock:
            return target.host in self._names


def split_bound(
    headers: Mapping[str, str], bound: Mapping[str, str] | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """(public, bound) headers: ``BOUND_NAMES`` move to bound whoever passed them."""
    public: dict[str, str] = {}
    out = dict(bound or {})
    for name, value in headers.items():
        if name.lower() in BOUND_NAMES:
            out[name] = value
        else:
            public[name] = value
    return public, out


def bound_for(target: Origin, bound_origin: Origin, https: HTTPSHosts | None = None) -> bool:
    """Whether headers bound to ``bound_origin`` may go to ``target`` (rules 1, 2)."""
    if target != bound_origin:
        return False
    return https is None or not https.downgrade(target)


def may_carry_secret(secret_origin: Origin, url: str) -> bool:
    """Whether a secret held for ``secret_origin`` (a registry's password)
    may be sent to ``url`` at all: never from an HTTPS origin to plain HTTP
    (an ``http://`` token realm for an ``https://`` registry)."""
    try:
        target = origin_of(url)
    except ValueError:
        return False
    return not (secret_origin.scheme == "https" and target.scheme == "http")


def answered_by(url: str, origin: Origin) -> bool:
    """Whether the answer from ``url`` (a response's final URL) is
    ``origin``'s own (rule 6): not a redirect target's elsewhere."""
    try:
        return origin_of(url) == origin
    except ValueError:
        return False


class Redirect(Value):
    __slots__ = ("url", "method", "body")
    url: str
    method: str
    body: Any  # None when the redirect drops it

    def __init__(self, url: str, method: str, body: Any) -> None:
        object.__setattr__(self, "url", url)
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "body", body)


def redirect(
    status: int,
    method: str,
    body: Any,
    current: str,
    location: str,
    *,
    confined: Origin | None = None,
) -> Redirect:
    """How to follow one redirect from ``current`` (rules 3, 4 and, for a
    request ``confined`` to an origin, 5); raises ``Refused`` saying why
    not. Bound headers are decided per hop by ``bound_for``, not here."""
    from urllib.parse import urljoin

    try:
        url = urljoin(current, location.strip())
        target = origin_of(url)
    except ValueError as e:
        raise Refused(f"redirect to an invalid URL ({e})") from None
    if confined is not None and target != confined:
        raise Refused(
            f"redirected ({status}) to another origin ({target}); its credentials "
            f"go only to {confined}"
        )
    if status == 303 or body is None:
        return Redirect(url, "GET" if status == 303 and method != "HEAD" else method, None)
    if target != origin_of(current):
        raise Refused(
            f"redirected ({status}) to another origin ({target}); a request body "
            "is never sent there"
        )
    if not isinstance(body, bytes | bytearray | memoryview):
        raise Refused(f"redirected ({status}) while streaming a request body")
    return Redirect(url, method, body)
