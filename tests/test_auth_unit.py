"""The auth state machine and challenge parser, without any I/O.

``ScriptedTokens`` is not a registry mock: it stands in for the token
server's half of the state machine so caching, expiry and concurrency are
checked deterministically; test_auth_token.py runs the same code for real.
"""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocidist.errors import Unauthorized
from ocidist.remotes.docker.auth import Authorizer, Credential, Token
from ocidist.remotes.docker.challenge import Challenge, parse_challenges
from ocidist.remotes.docker.transport import TLSConfig

BEARER = 'Bearer realm="https://auth.example/token",service="reg"'


class ScriptedTokens:
    def __init__(self, ttl: float = 300.0, delay: float = 0.0) -> None:
        self.calls: list[tuple[tuple[str, ...], Credential | None]] = []
        self.ttl = ttl
        self.delay = delay
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


def test_no_header_before_a_challenge_then_token_cached_per_sorted_scopes() -> None:
    tokens = ScriptedTokens()
    a = Authorizer(tokens)
    assert a.header("reg", ["repository:x:pull"]) is None
    assert a.challenge("reg", [BEARER], ["repository:x:pull"])
    h1 = a.header("reg", ["repository:x:pull", "repository:y:pull"])
    h2 = a.header("reg", ["repository:y:pull", "repository:x:pull"])
    assert h1 == h2 == "Bearer tok1"
    assert a.header("reg", ["repository:x:pull"]) == "Bearer tok2"  # another scope set
    assert [c[0] for c in tokens.calls] == [
        ("repository:x:pull", "repository:y:pull"),
        ("repository:x:pull",),
    ]
    assert a.header("other", ["repository:x:pull"]) is None  # challenges are per host


def test_expired_token_is_fetched_again_and_short_ttls_still_reused() -> None:
    tokens = ScriptedTokens(ttl=0.4)
    a = Authorizer(tokens)
    a.challenge("reg", [BEARER], [])
    assert a.header("reg", ["s"]) == a.header("reg", ["s"]) == "Bearer tok1"
    time.sleep(0.45)
    assert a.header("reg", ["s"]) == "Bearer tok2"


def test_a_401_drops_the_hosts_tokens() -> None:
    tokens = ScriptedTokens()
    a = Authorizer(tokens)
    a.challenge("reg", [BEARER], [])
    assert a.header("reg", ["s"]) == "Bearer tok1"
    assert a.challenge("reg", [BEARER + ',error="invalid_token"'], ["s"])
    assert a.header("reg", ["s"]) == "Bearer tok2"


def test_one_fetch_in_flight_per_key_across_threads() -> None:
    tokens = ScriptedTokens(delay=0.2)
    a = Authorizer(tokens)
    a.challenge("reg", [BEARER], [])
    out: list[str | None] = []
    threads = [
        threading.Thread(target=lambda: out.append(a.header("reg", ["s"]))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == ["Bearer tok1"] * 8
    assert len(tokens.calls) == 1


def test_challenge_scopes_accumulate_with_requested_ones() -> None:
    tokens = ScriptedTokens()
    a = Authorizer(tokens)
    a.challenge("reg", [BEARER + ',scope="repository:src:pull"'], [])
    a.header("reg", ["repository:dst:pull,push"])
    assert tokens.calls[0][0] == ("repository:dst:pull,push", "repository:src:pull")


def test_basic_without_credentials_is_unauthorized_in_words() -> None:
    a = Authorizer(ScriptedTokens())
    with pytest.raises(Unauthorized, match=r"unauthorized.*no credentials"):
        a.challenge("reg", ['Basic realm="r"'], [])


def test_basic_retried_once_then_given_up() -> None:
    cred = Credential("alice", "s3cret-value")
    a = Authorizer(ScriptedTokens(), lambda host: cred)
    assert a.challenge("reg", ['Basic realm="r"'], [])
    assert a.header("reg", []) == "Basic YWxpY2U6czNjcmV0LXZhbHVl"
    # The same challenge after we sent the password: it is wrong; stop.
    assert not a.challenge("reg", ['Basic realm="r"'], [])


def test_no_usable_challenge_is_unauthorized() -> None:
    a = Authorizer(ScriptedTokens())
    with pytest.raises(Unauthorized, match="unauthorized"):
        a.challenge("reg", ["Negotiate"], [])


def test_reprs_hide_secrets() -> None:
    assert "s3cret" not in repr(Credential("u", "s3cret", "s3cret-id"))
    assert "s3cret" not in repr(Token("s3cret", 1.0))
