"""What `dist --debug` shows of each exchange with a registry, secrets redacted.

One line per request and per answer: method and URL without its query
string (signed blob URLs carry their authority there), then the headers that
explain a transfer or an auth problem. Credentials are never shown:
``Authorization`` and ``Proxy-Authorization`` keep their scheme only
(``Bearer <redacted>``), cookies and every hosts.toml ``[header]`` value
(whatever its name) show as ``<redacted>``; bodies (the token form, token
answers) are never traced. Header values from a registry are escaped
(logs.debug). Nothing here runs unless the trace is on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ocidist import logs

LOGGER = "ocidist.remotes.transport"
REDACTED = "<redacted>"
_SCHEME_ONLY = frozenset({"authorization", "proxy-authorization"})
_SECRET = frozenset({"cookie", "set-cookie"})
_REQUEST = ("Range", "Content-Type", "Content-Length", "Content-Range", "Transfer-Encoding")
_ANSWER = (
    "Content-Type",
    "Content-Length",
    "Content-Range",
    "Docker-Content-Digest",
    "Location",
    "WWW-Authenticate",
    "Retry-After",
    "Range",
    "OCI-Chunk-Min-Length",
    "Connection",
)


def url(text: str) -> str:
    """``text`` without query, fragment or user information."""
    base = text.split("#", 1)[0].split("?", 1)[0]
    scheme, sep, rest = base.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"


def _value(name: str, value: str, secret: bool) -> str:
    low = name.lower()
    if low in _SCHEME_ONLY:
        scheme = value.split(" ", 1)[0] if " " in value else ""
        return f"{scheme} {REDACTED}".strip()
    if secret or low in _SECRET:
        return REDACTED
    if low == "location":
        return url(value)
    return value


def _fields(headers: Mapping[str, str], shown: Iterable[str], secret: Iterable[str] = ()) -> str:
    lower = {k.lower(): (k, v) for k, v in headers.items()}
    out = []
    for name in shown:
        if name.lower() in lower:
            k, v = lower[name.lower()]
            out.append(f"{k}: {_value(k, v, False)}")
    for name in secret:
        out.append(
            f"{name}: {_value(name, headers.get(name, ''), name.lower() not in _SCHEME_ONLY)}"
        )
    return "; ".join(out)


def request(
    method: str, target: str, headers: Mapping[str, str], bound: Mapping[str, str], via: str
) -> None:
    if not logs.enabled():
        return
    secret = [k for k in headers if k in bound or k.lower() in _SCHEME_ONLY | _SECRET]
    shown = _fields(headers, _REQUEST, secret)
    logs.debug(LOGGER, "> %s %s%s%s", method, url(target), f" via {via}" if via else "",
               f" [{shown}]" if shown else "")  # fmt: skip


def answer(status: int, target: str, headers: Mapping[str, str]) -> None:
    if not logs.enabled():
        return
    shown = _fields(headers, _ANSWER)
    logs.debug(LOGGER, "< %d %s%s", status, url(target), f" [{shown}]" if shown else "")


def note(msg: str, *args: object) -> None:
    """A decision (redirect, retry, mirror) in the trace."""
    logs.debug(LOGGER, msg, *args)
