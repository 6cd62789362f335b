"""Parsing ``WWW-Authenticate`` (RFC 9110 §11.6.1) into challenges.

A header may hold several challenges (``Basic realm="a", Bearer realm="b"``);
parameter values are tokens or quoted strings that may contain commas and
escaped quotes, so a naive split on ``,`` is wrong. Garbage never raises: it
yields no challenge, and the caller reports "unauthorized".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ocidist.value import Value

_TCHAR = set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class Challenge(Value):
    __slots__ = ("scheme", "params")
    _no_hash = ("params",)
    scheme: str  # lower-cased: "bearer", "basic", …
    params: Mapping[str, str]

    def __init__(self, scheme: str, params: Mapping[str, str] | None = None) -> None:
        object.__setattr__(self, "scheme", scheme)
        object.__setattr__(self, "params", {} if params is None else params)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(s for s in self.params.get("scope", "").split(" ") if s)


class _Scanner:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t":
            self.i += 1

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def token(self) -> str:
        start = self.i
        while self.i < len(self.s) and self.s[self.i] in _TCHAR:
            self.i += 1
        return self.s[start : self.i]

    def quoted(self) -> str | None:
        # Caller saw the opening quote.
        self.i += 1
        out: list[str] = []
        while self.i < len(self.s):
            c = self.s[self.i]
            if c == "\\" and self.i + 1 < len(self.s):
                out.append(self.s[self.i + 1])
                self.i += 2
                continue
            if c == '"':
                self.i += 1
                return "".join(out)
            out.append(c)
            self.i += 1
        return None  # unterminated


def parse_challenges(headers: Iterable[str]) -> list[Challenge]:
    """All challenges in one or more ``WWW-Authenticate`` header values."""
    out: list[Challenge] = []
    for value in headers:
        out.extend(_parse_one(value))
    return out


def _parse_one(value: str) -> list[Challenge]:
    sc = _Scanner(value)
    out: list[Challenge] = []
    scheme = ""
    params: dict[str, str] = {}

    def flush() -> None:
        if scheme:
            out.append(Challenge(scheme.lower(), dict(params)))

    while True:
        sc.ws()
        while sc.peek() == ",":
            sc.i += 1
            sc.ws()
        if not sc.peek():
            break
        tok = sc.token()
        if not tok:
            return out  # garbage: keep what parsed cleanly before it
        sc.ws()
        if sc.peek() == "=":
            # Either a parameter of the current challenge, or token68 ("=" padding).
            sc.i += 1
            sc.ws()
            if sc.peek() == '"':
                val = sc.quoted()
                if val is None:
                    return out
            else:
                val = sc.token()
            if scheme:
                params[tok.lower()] = val
            continue
        # A bare token starts a new challenge.
        flush()
        scheme, params = tok, {}
    flush()
    return out
