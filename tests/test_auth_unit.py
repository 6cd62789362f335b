"""The auth state machine and challenge parser, without any I/O.

``ScriptedTokens`` is not a registry mock: it stands in for the token
server's half of the state machine so caching, expiry and concurrency are
checked deterministically; test_auth_token.py runs the same code for real.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocidist.errors import Unauthorized
from ocidist.remotes.docker.auth import (
    MAX_CHALLENGES,
    Authorizer,
    Credential,
    RequestAuth,
    Token,
)
from ocidist.remotes.docker.challenge import Challenge, parse_challenges
from ocidist.remotes.docker.transport import TLSConfig

T = TypeVar("T")
BEARER = 'Bearer realm="https://auth.example/token",service="reg"'


class ScriptedTokens:
    def __init__(self, ttl: float = 300.0, delay: float = 0.0, refuse: bool = False) -> None:
        self.calls: list[tuple[tuple[str, ...], Credential | None]] = []
        self.ttl = ttl
        self.delay = delay
        self.refuse = refuse  # answer like a token server refusing the password
        self._lock = threading.Lock()

    def fetch_token(
        self,
        challenge: Challenge,
        scopes: tuple[str, ...],
        cred: Credential | None,
        tls: TLSConfig | None = None,
    ) -> Token:
        time.sleep(self.delay)
        with self._lock:
            self.calls.append((scopes, cred))
            n = len(self.calls)
        if self.refuse:
            raise Unauthorized("token from realm: unauthorized (credentials rejected)")
        return Token(f"tok{n}", time.monotonic() + self.ttl, ttl=self.ttl)


def test_several_challenges_quoted_commas_and_escapes() -> None:
    chs = parse_challenges(
        [
            'Basic realm="a, b", Bearer realm="https://x/t?a=1,b=2",'
            'service="s",scope="repository:a/b:pull,push repository:c:pull",'
            'error="insufficient_scope"',
            'Custom realm="q\\"uote"',
        ]
    )
    assert [c.scheme for c in chs] == ["basic", "bearer", "custom"]
    assert chs[0].realm == "a, b"
    assert chs[1].realm == "https://x/t?a=1,b=2"
    assert chs[1].scopes == ("repository:a/b:pull,push", "repository:c:pull")
    assert chs[1].params["error"] == "insufficient_scope"
    assert chs[2].realm == 'q"uote'


@given(st.text(max_size=200))
def test_garbage_never_raises(text: str) -> None:
    parse_challenges([text])


REGISTRY = "reg.example"
X, Y = "repository:x:pull", "repository:y:pull"


def first_challenge(a: Authorizer, scopes: list[str], www: str = BEARER) -> RequestAuth:
    """A request that sent nothing and got its first 401; ready to retry."""
    r = a.request(REGISTRY, scopes)
    assert r.header() is None
    assert r.unauthorized([www])
    return r


def in_threads(n: int, fn: Callable[[], T]) -> list[T | BaseException]:
    """``fn`` in ``n`` threads released at the same moment; results or errors."""
    barrier = threading.Barrier(n)
    out: list[T | BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            res: T | BaseException = fn()
        except BaseException as e:
            res = e
        out.append(res)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_no_header_before_a_challenge_then_token_cached_per_sorted_scopes() -> None:
    tokens = ScriptedTokens()
    a = Authorizer(tokens)
    r = first_challenge(a, [X])
    assert r.header() == "Bearer tok1"
    assert a.request(REGISTRY, [X, Y]).header() == "Bearer tok2"
    assert a.request(REGISTRY, [Y, X]).header() == "Bearer tok2"
    assert a.request(REGISTRY, [X]).header() == "Bearer tok1"
    assert [c[0] for c in tokens.calls] == [(X,), (X, Y)]
    assert a.request("other", [X]).header() is None  # challenges are per origin
    assert a.request(REGISTRY, [X], scheme="http").header() is None


def test_expired_token_is_fetched_again_and_short_ttls_still_reused() -> None:
    tokens = ScriptedTokens(ttl=0.4)
    a = Authorizer(tokens)
    first_challenge(a, [])
    assert a.request(REGISTRY, ["s"]).header() == a.request(REGISTRY, ["s"]).header()
    time.sleep(0.45)
    assert a.request(REGISTRY, ["s"]).header() == "Bearer tok2"


def test_one_fetch_in_flight_per_key_across_threads() -> None:
    tokens = ScriptedTokens(delay=0.2)
    a = Authorizer(tokens)
    first_challenge(a, [])
    out = in_threads(8, lambda: a.request(REGISTRY, ["s"]).header())
    assert out == ["Bearer tok1"] * 8
    assert len(tokens.calls) == 1


def test_a_refused_password_is_tried_once_not_once_per_waiting_request() -> None:
    """Registries lock accounts after a few failed logins: requests waiting
    for the same token share the one fetch's error."""
    tokens = ScriptedTokens(delay=0.2, refuse=True)
    a = Authorizer(tokens, lambda host: Credential("alice", "wrong"))
    first_challenge(a, [])
    out = in_threads(8, lambda: a.request(REGISTRY, ["s"]).header())
    assert all(isinstance(e, Unauthorized) and "credentials rejected" in str(e) for e in out)
    assert len(tokens.calls) == 1


def test_parallel_first_basic_challenges_all_retry_with_the_password() -> None:
    """The reported race: requests that sent nothing and got their 401s at
    the same moment; none of them has tried the password yet."""
    cred = Credential("alice", "s3cret-value")
    a = Authorizer(ScriptedTokens(), lambda host: cred)
    requests = [a.request(REGISTRY, []) for _ in range(8)]
    assert [r.header() for r in requests] == [None] * 8
    assert all(r.unauthorized(['Basic realm="r"']) for r in requests)
    assert {r.header() for r in requests} == {"Basic YWxpY2U6czNjcmV0LXZhbHVl"}


def test_parallel_first_basic_challenges_in_threads() -> None:
    cred = Credential("alice", "s3cret-value")
    a = Authorizer(ScriptedTokens(), lambda host: cred)
    requests = [a.request(REGISTRY, []) for _ in range(8)]
    for r in requests:
        assert r.header() is None
    it = iter(requests)
    lock = threading.Lock()

    def answer() -> bool:
        with lock:
            r = next(it)
        return r.unauthorized(['Basic realm="r"'])

    assert in_threads(8, answer) == [True] * 8


def test_basic_retried_once_then_given_up() -> None:
    cred = Credential("alice", "s3cret-value")
    a = Authorizer(ScriptedTokens(), lambda host: cred)
    r = first_challenge(a, [], 'Basic realm="r"')
    assert r.header() == "Basic YWxpY2U6czNjcmV0LXZhbHVl"
    # The same challenge after this request sent the password: it is wrong.
    assert not r.unauthorized(['Basic realm="r"'])
    # A new request sends the password at once (the host asked for Basic).
    assert a.request(REGISTRY, []).header() == "Basic YWxpY2U6czNjcmV0LXZhbHVl"


def test_credentials_looked_up_once_per_host_across_threads() -> None:
    calls: list[str] = []

    def slow_helper(host: str) -> Credential:
        calls.append(host)
        time.sleep(0.1)
        return Credential("alice", "pw")

    a = Authorizer(ScriptedTokens(), slow_helper)
    first_challenge(a, [], 'Basic realm="r"')
    in_threads(8, lambda: a.request(REGISTRY, []).header())
    assert calls == [REGISTRY]


def test_a_dead_token_seen_by_two_requests_is_replaced_once() -> None:
    """A and B sent the same token and both got 401: A drops it and fetches
    a new one; B's 401 (for the old token) must not drop A's new one."""
    tokens = ScriptedTokens()
    a = Authorizer(tokens)
    first_challenge(a, ["s"])
    ra, rb = a.request(REGISTRY, ["s"]), a.request(REGISTRY, ["s"])
    assert ra.header() == rb.header() == "Bearer tok1"
    assert ra.unauthorized([BEARER + ',error="invalid_token"'])
    assert ra.header() == "Bearer tok2"
    assert rb.unauthorized([BEARER + ',error="invalid_token"'])
    assert rb.header() == "Bearer tok2"
    assert len(tokens.calls) == 2


def test_a_token_refused_twice_is_given_up() -> None:
    tokens = ScriptedTokens()
    a = Authorizer(tokens)
    r = first_challenge(a, ["s"])
    assert r.header() == "Bearer tok1"
    assert r.unauthorized([BEARER])  # dead? one fresh token
    assert r.header() == "Bearer tok2"
    assert not r.unauthorized([BEARER])  # a fresh one refused too: for good
    assert len(tokens.calls) == 2


def test_challenge_scopes_stay_with_their_request() -> None:
    """A challenge naming more scopes widens that request's token only: other
    requests to the same registry (other repositories) do not inherit them."""
    tokens = ScriptedTokens()
    a = Authorizer(tokens)
    r = first_challenge(a, ["repository:dst:pull,push"], BEARER + ',scope="repository:src:pull"')
    r.header()
    assert tokens.calls[0][0] == ("repository:dst:pull,push", "repository:src:pull")
    a.request(REGISTRY, ["repository:other:pull"]).header()
    assert tokens.calls[1][0] == ("repository:other:pull",)


def test_insufficient_scope_asks_again_with_the_new_scope() -> None:
    tokens = ScriptedTokens()
    a = Authorizer(tokens)
    r = first_challenge(a, [X])
    assert r.header() == "Bearer tok1"
    assert r.unauthorized([BEARER + f',scope="{Y}",error="insufficient_scope"'])
    assert r.header() == "Bearer tok2"
    assert tokens.calls[1][0] == (X, Y)
    # tok1 is still good for what it was fetched for.
    assert a.request(REGISTRY, [X]).header() == "Bearer tok1"


def test_insufficient_scope_for_what_was_asked_is_final() -> None:
    """The token holds what the server grants: asking again gets no more."""
    tokens = ScriptedTokens()
    a = Authorizer(tokens)
    r = first_challenge(a, [X])
    assert r.header() == "Bearer tok1"
    assert not r.unauthorized([BEARER + f',scope="{X}",error="insufficient_scope"'])
    assert len(tokens.calls) == 1
    assert a.request(REGISTRY, [X]).header() == "Bearer tok1"  # still cached


def test_challenges_per_request_are_bounded() -> None:
    tokens = ScriptedTokens()
    a = Authorizer(tokens)
    r = first_challenge(a, [])
    answers = []
    for i in range(6):
        r.header()
        answers.append(r.unauthorized([BEARER + f',scope="repository:n{i}:pull"']))
    assert answers[-1] is False and answers.count(True) <= MAX_CHALLENGES


def test_basic_without_credentials_is_unauthorized_in_words() -> None:
    a = Authorizer(ScriptedTokens())
    with pytest.raises(Unauthorized, match=r"unauthorized.*no credentials"):
        a.request(REGISTRY, []).unauthorized(['Basic realm="r"'])


def test_no_usable_challenge_is_unauthorized() -> None:
    a = Authorizer(ScriptedTokens())
    with pytest.raises(Unauthorized, match="unauthorized"):
        a.request(REGISTRY, []).unauthorized(["Negotiate"])


@pytest.mark.parametrize(
    ("registry_scheme", "realm", "refused"),
    [
        ("https", "http://auth.example/token", "plain HTTP for an HTTPS registry"),
        ("https", "HTTP://auth.example/token", "plain HTTP for an HTTPS registry"),
        ("https", "ftp://auth.example/token", "not an http(s) URL"),
        ("https", "/token", "not an http(s) URL"),
        ("https", "", "not an http(s) URL"),
        ("http", "http://auth.example/token", ""),
        ("http", "https://auth.example/token", ""),
        ("https", "https://auth.example/token", ""),
    ],
)
def test_token_realm_scheme(registry_scheme: str, realm: str, refused: str) -> None:
    tokens = ScriptedTokens()
    a = Authorizer(tokens, lambda host: Credential("alice", "pw"))
    r = a.request(REGISTRY, [], scheme=registry_scheme)
    r.header()
    www = f'Bearer realm="{realm}",service="reg"'
    if not refused:
        assert r.unauthorized([www])
        return
    with pytest.raises(Unauthorized, match=re.escape(refused)):
        r.unauthorized([www])
    # Nothing remembered, nothing fetched: the next request asks nobody.
    assert a.request(REGISTRY, [], scheme=registry_scheme).header() is None
    assert tokens.calls == []


def test_a_realm_in_an_error_is_escaped() -> None:
    a = Authorizer(ScriptedTokens())
    r = a.request(REGISTRY, [])
    with pytest.raises(Unauthorized) as info:
        r.unauthorized(['Bearer realm="http://x/\x1b]0;pwned\x07\nline2"'])
    msg = str(info.value)
    assert msg.isprintable() and "\\x1b]0;pwned\\x07\\nline2" in msg, msg


def test_reprs_hide_secrets() -> None:
    assert "s3cret" not in repr(Credential("u", "s3cret", "s3cret-id"))
    assert "s3cret" not in repr(Token("s3cret", 1.0))


def test_a_token_bought_with_one_hosts_password_is_not_offered_to_another() -> None:
    """A mirror whose challenge names the registry's own token service (same
    realm, service and scopes) gets a token of its own, asked with its own
    credentials (none here), never the one the registry's password bought."""
    alice = Credential(username="alice", secret="pw")
    tokens = ScriptedTokens()
    a = Authorizer(tokens, lambda host: alice if host == REGISTRY else None)
    assert first_challenge(a, [X]).header() == "Bearer tok1"
    mirror = a.request("mirror.example", [X])
    assert mirror.header() is None
    assert mirror.unauthorized([BEARER])
    assert mirror.header() == "Bearer tok2"
    assert tokens.calls == [((X,), alice), ((X,), None)]
