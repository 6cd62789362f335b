"""Registry authorization as a state machine: challenge in, header out.

State is split in two. Per registry origin (shared by every request of a
command): the last challenge seen, which says how to authorize *new*
requests before the registry asks, the token cache, and one memo of the
host's credentials. Per request (``RequestAuth``): what this request sent,
and the challenge *its own* 401 carried. Whether retrying can help is decided
from the request's own state only — a 401 to a request that sent nothing is
the first challenge, not a wrong password, however many other requests got
theirs at the same moment.

Tokens are cached per (origin, realm, service, sorted scope set) with their
expiry. One fetch is in flight per key; requests that arrive meanwhile wait
for it and share its token or its error (a wrong password is tried once, not
once per parallel request — registries lock accounts). A rejected token is
dropped only if it is still the cached one (compare and delete), so a request
that saw an old token die never throws away the fresh one another request
just fetched. Secrets never enter exception messages or logs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from ocidist.errors import DistError, Unauthorized, reworded
from ocidist.remotes.docker.challenge import Challenge, parse_challenges
from ocidist.remotes.docker.origin import may_carry_secret, origin_of
from ocidist.remotes.docker.transport import TLSConfig
from ocidist.text import quote
from ocidist.value import Value

# Docker's token spec: a token without expires_in is good for 60 seconds.
DEFAULT_TOKEN_TTL = 60.0
# Refresh a little early so a token does not expire in flight; short-lived
# tokens get a quarter of their life as slack instead, or they'd never be reused.
EXPIRY_SLACK = 5.0
# 401s one request may answer: the first challenge (it sent nothing), one
# rejected token or scheme change, one more scope. Beyond that it is refused.
MAX_CHALLENGES = 3


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
    import base64  # only with a credential: ~0.8 ms of import

    raw = f"{cred.username}:{cred.secret}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


_Key = tuple[str, str, str, tuple[str, ...]]  # origin, realm, service, scopes


class _Flight:
    """One token fetch that other requests for the same key wait on."""

    __slots__ = ("done", "token", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.token: Token | None = None
        self.error: DistError | None = None


class Authorizer:
    """The auth state shared by every request of a command (see the module doc)."""

    def __init__(self, tokens: TokenSource, credentials: CredentialFunc = no_credentials) -> None:
        self._tokens = tokens
        self._credentials = credentials
        self._challenges: dict[str, Challenge] = {}  # origin → how to authorize
        self._cache: dict[_Key, Token] = {}
        self._inflight: dict[_Key, _Flight] = {}
        self._creds: dict[str, Credential | None] = {}
        self._lock = threading.Lock()
        self._creds_lock = threading.Lock()

    def request(
        self,
        host: str,
        scopes: Iterable[str],
        *,
        scheme: str = "https",
        tls: TLSConfig | None = None,
    ) -> RequestAuth:
        """The auth state of one request to ``scheme://host``, kept across its
        retries. ``tls`` is the registry host's TLS setup; the token realm is
        trusted the same way (a private registry's token server usually
        shares its CA)."""
        return RequestAuth(self, host, scheme, tuple(scopes), tls)

    def credential(self, host: str) -> Credential | None:
        """``host``'s credentials, looked up once per command: a credential
        helper is a process (perhaps prompting a keyring), and parallel
        requests must not each start one."""
        with self._creds_lock:
            if host not in self._creds:
                self._creds[host] = self._credentials(host)
            return self._creds[host]

    def host_challenge(self, origin: str) -> Challenge | None:
        with self._lock:
            return self._challenges.get(origin)

    def remember(self, origin: str, ch: Challenge) -> None:
        """How to authorize new requests to ``origin`` before they are asked.
        Scopes are left out: a challenge's scopes belong to its own request."""
        kept = Challenge(ch.scheme, {k: v for k, v in ch.params.items() if k != "scope"})
        with self._lock:
            self._challenges[origin] = kept

    def token(
        self, key: _Key, ch: Challenge, cred: Credential | None, tls: TLSConfig | None
    ) -> Token:
        """The cached token for ``key``, or one fetched once for everyone asking."""
        with self._lock:
            tok = self._cache.get(key)
            if tok is not None and tok.fresh(time.monotonic()):
                return tok
            flight = self._inflight.get(key)
            leader = flight is None
            if flight is None:
                flight = self._inflight[key] = _Flight()
        if not leader:
            flight.done.wait()
            if flight.token is not None:
                return flight.token
            err = flight.error or Unauthorized(f"{key[0]}: token fetch failed")
            # A copy: one exception object must not be raised in two threads.
            raise reworded(err, str(err))
        got: Token | None = None
        try:
            got = self._tokens.fetch_token(ch, key[3], cred, tls)
            return got
        except DistError as e:
            flight.error = e
            raise
        finally:
            with self._lock:
                if got is not None:
                    self._cache[key] = got
                del self._inflight[key]
            flight.token = got
            flight.done.set()

    def drop(self, key: _Key, token: str) -> None:
        """Forget ``token`` if it is still the cached one for ``key``: a newer
        token another request fetched meanwhile stays."""
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached.token == token:
                del self._cache[key]


class RequestAuth:
    """One request's auth: what it sent last, and the challenge its own 401
    carried (used for its retry, whatever other requests saw since)."""

    def __init__(
        self,
        auth: Authorizer,
        host: str,
        scheme: str,
        scopes: tuple[str, ...],
        tls: TLSConfig | None,
    ) -> None:
        self._auth = auth
        self._host = host
        self._scheme = scheme
        self._origin = f"{scheme}://{host}"
        self._scopes = scopes
        self._tls = tls
        self._challenge: Challenge | None = None
        self._sent = ""  # "", "basic" or "bearer": what the last attempt carried
        self._sent_token: tuple[_Key, str] | None = None
        self._challenges = 0
        self._rejected = 0  # bearer tokens refused with nothing new to ask for

    def header(self) -> str | None:
        """The Authorization header for the next attempt, or None while the
        registry has asked for none."""
        self._sent, self._sent_token = "", None
        ch = self._challenge or self._auth.host_challenge(self._origin)
        if ch is None:
            return None
        if ch.scheme == "basic":
            cred = self._auth.credential(self._host)
            if not (cred and cred.username):
                return None
            self._sent = "basic"
            return basic_header(cred)
        if ch.scheme != "bearer":
            return None
        key = (self._origin, ch.realm, ch.service, tuple(sorted({*self._scopes, *ch.scopes})))
        tok = self._auth.token(key, ch, self._auth.credential(self._host), self._tls)
        self._sent, self._sent_token = "bearer", (key, tok.token)
        return "Bearer " + tok.token

    def unauthorized(self, www_authenticate: list[str]) -> bool:
        """This request got a 401 carrying ``www_authenticate``: True when
        another attempt with new authorization may succeed. Raises
        ``Unauthorized`` (in words) when the challenge cannot be answered."""
        self._challenges += 1
        chs = parse_challenges(www_authenticate)
        pick = next((c for c in chs if c.scheme == "bearer"), None) or next(
            (c for c in chs if c.scheme == "basic"), None
        )
        if pick is None:
            raise Unauthorized(f"{self._host}: unauthorized (no usable authentication challenge)")
        if pick.scheme == "bearer":
            self._check_realm(pick.realm)
        self._auth.remember(self._origin, pick)
        self._challenge = pick
        if self._challenges > MAX_CHALLENGES:
            return False
        if pick.scheme == "basic":
            cred = self._auth.credential(self._host)
            if not (cred and cred.username):
                raise Unauthorized(
                    # --user goes only to the registry a command names:
                    # a mirror's credentials are its own login's.
                    f"{self._host}: unauthorized (no credentials for this host; "
                    f"dist login {self._host}, or --user if it is the registry named)",
                    status=401,
                )
            # Basic sent and refused with Basic again: the password is wrong.
            return self._sent != "basic"
        if self._sent != "bearer" or self._sent_token is None:
            return True  # the first challenge, or the scheme changed
        key, token = self._sent_token
        if not set(pick.scopes) <= set(key[3]):
            return True  # the token is fine; the next one asks for more
        if pick.params.get("error") == "insufficient_scope":
            return False  # granted all the server would: another token gets no more
        # Refused with nothing more to ask for: dead (expired or revoked) the
        # first time, refused for good if a newer token is refused as well.
        self._auth.drop(key, token)
        self._rejected += 1
        return self._rejected == 1

    def _check_realm(self, realm: str) -> None:
        """The token realm must be an http(s) URL the registry's credentials
        may go to (origin.may_carry_secret: no plain HTTP for an HTTPS
        registry); refused for anonymous requests too, as the realm's answer
        is what every later request would carry."""
        try:
            origin_of(realm)
        except ValueError:
            raise Unauthorized(
                f"{self._host}: unauthorized (token realm {quote(realm)} is not an http(s) URL)"
            ) from None
        if not may_carry_secret(origin_of(f"{self._scheme}://{self._host}"), realm):
            raise Unauthorized(
                f"{self._host}: unauthorized (token realm {quote(realm)} is plain HTTP "
                "for an HTTPS registry; credentials are never sent in clear)"
            )
