"""Registry authorization as a state machine: challenge in, header out.

``Authorizer`` remembers, per registry host, the last challenge it saw; asked
for a header for (host, scopes) it answers from its token cache, fetching a
token through ``TokenSource`` when needed. Tokens are cached per (host,
sorted scope set) with their expiry, and concurrent requests for the same key
wait for one fetch. Secrets never enter exception messages or logs.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from ocidist.errors import Unauthorized
from ocidist.remotes.docker.challenge import Challenge, parse_challenges
from ocidist.remotes.docker.transport import TLSConfig
from ocidist.value import Value

# Docker's token spec: a token without expires_in is good for 60 seconds.
DEFAULT_TOKEN_TTL = 60.0
# Refresh a little early so a token does not expire in flight; short-lived
# tokens get a quarter of their life as slack instead, or they'd never be reused.
EXPIRY_SLACK = 5.0


class Credential(Value):
    __slots__ = ("username", "secret", "identity_token")
    username: str
    secret: str  # password, or identity/refresh token when username is empty
    identity_token: str

    def __init__(self, username: str = "", secret: str = "", identity_token: str = "") -> None:
        object.__setattr__(self, "username", username)
        object.__setattr__(self, "secret", secret)
        object.__setattr__(self, "identity_token", identity_token)

    def __repr__(self) -> str:  # never show the secret
        return f"Credential(username={self.username!r}, secret=***)"


CredentialFunc = Callable[[str], Credential | None]


def no_credentials(host: str) -> Credential | None:
    return None


class Token(Value):
    __slots__ = ("token", "expires_at", "refresh_token", "ttl")
    token: str
    expires_at: float  # time.monotonic() value
    refresh_token: str
    ttl: float

    def __init__(
        self, token: str, expires_at: float, refresh_token: str = "", ttl: float = DEFAULT_TOKEN_TTL
    ) -> None:
        object.__setattr__(self, "token", token)
        object.__setattr__(self, "expires_at", expires_at)
        object.__setattr__(self, "refresh_token", refresh_token)
        object.__setattr__(self, "ttl", ttl)

    def fresh(self, now: float) -> bool:
        return self.expires_at - min(EXPIRY_SLACK, self.ttl / 4) > now

    def __repr__(self) -> str:
        return f"Token(expires_at={self.expires_at}, token=***)"


class TokenSource(Protocol):
    """Fetches a bearer token (the I/O half; see token.py)."""

    def fetch_token(
        self,
        challenge: Challenge,
        scopes: tuple[str, ...],
        cred: Credential | None,
        tls: TLSConfig | None = None,
    ) -> Token: ...


def pull_scope(path: str) -> str:
    return f"repository:{path}:pull"


def push_scope(path: str) -> str:
    return f"repository:{path}:pull,push"


def basic_header(cred: Credential) -> str:
    raw = f"{cred.username}:{cred.secret}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


class Authorizer:
    def __init__(self, tokens: TokenSource, credentials: CredentialFunc = no_credentials) -> None:
        self._tokens = tokens
        self._credentials = credentials
        self._challenges: dict[str, Challenge] = {}
        self._cache: dict[tuple[str, tuple[str, ...]], Token] = {}
        self._inflight: dict[tuple[str, tuple[str, ...]], threading.Lock] = {}
        self._lock = threading.Lock()

    def header(self, host: str, scopes: Iterable[str], tls: TLSConfig | None = None) -> str | None:
        """The Authorization header to send, or None when the host asked for none yet.

        ``tls`` is the registry host's TLS setup; the token realm is trusted the
        same way (a private registry's token server usually shares its CA)."""
        with self._lock:
            ch = self._challenges.get(host)
        if ch is None:
            return None
        if ch.scheme == "basic":
            cred = self._credentials(host)
            return basic_header(cred) if cred and cred.username else None
        if ch.scheme != "bearer":
            return None
        all_scopes = tuple(sorted(set(scopes) | set(ch.scopes)))
        return "Bearer " + self._token(host, ch, all_scopes, tls).token

    def _token(
        self, host: str, ch: Challenge, scopes: tuple[str, ...], tls: TLSConfig | None
    ) -> Token:
        key = (host, scopes)
        with self._lock:
            tok = self._cache.get(key)
            if tok is not None and tok.fresh(time.monotonic()):
                return tok
            gate = self._inflight.setdefault(key, threading.Lock())
        # One fetch in flight per key: others wait here, then find the cache warm.
        with gate:
            with self._lock:
                tok = self._cache.get(key)
                if tok is not None and tok.fresh(time.monotonic()):
                    return tok
            tok = self._tokens.fetch_token(ch, scopes, self._credentials(host), tls)
            with self._lock:
                self._cache[key] = tok
            return tok

    def challenge(self, host: str, www_authenticate: list[str], scopes: Iterable[str]) -> bool:
        """Record a 401's challenge; True when retrying with new auth may help.

        A 401 right after we sent a cached token means that token is dead
        (revoked or expired early): drop every cached token for the host.
        """
        chs = parse_challenges(www_authenticate)
        pick = next((c for c in chs if c.scheme == "bearer"), None) or next(
            (c for c in chs if c.scheme == "basic"), None
        )
        if pick is None:
            raise Unauthorized(f"{host}: unauthorized (no usable authentication challenge)")
        if pick.scheme == "bearer" and not pick.realm:
            raise Unauthorized(f"{host}: unauthorized (bearer challenge without realm)")
        with self._lock:
            previous = self._challenges.get(host)
            self._challenges[host] = pick
            for key in [k for k in self._cache if k[0] == host]:
                del self._cache[key]
        if pick.scheme == "basic":
            cred = self._credentials(host)
            if not (cred and cred.username):
                raise Unauthorized(
                    f"{host}: unauthorized (no credentials for this registry; "
                    "use dist login or --user)",
                    status=401,
                )
            # Same challenge again after we sent Basic: the password is wrong.
            return previous != pick
        return True
