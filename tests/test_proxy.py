"""Proxies (remotes/docker/proxy.py): the environment read as Go reads it,
NO_PROXY table by table, then real pulls through a real tinyproxy started on
a free loopback port (plain HTTP through the proxy, HTTPS through a CONNECT
tunnel with proxy credentials), NO_PROXY honoured, a dead proxy in one line.

The proxy is never used for ``localhost`` or loopback addresses (as in Go),
so the registries here are reached by a name that resolves to loopback
(``tinyproxy.loopback_name``: the machine's host name).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocidist.errors import InvalidArgument
from ocidist.remotes.docker.proxy import NoProxy, Proxy, ProxyConfig, parse_proxy
from tests.dist_cli import one_error_line, run_dist
from tests.harness import Registry, push_image, simple_image
from tests.harness.authfixtures import TLSEnv, pki, tls_env
from tests.harness.hostile import HostileRegistry
from tests.harness.net import refused_port
from tests.harness.tinyproxy import TinyProxy, loopback_name

__all__ = ["pki", "tls_env"]

P = Proxy("proxy.example", 3128, None)


# -- the environment -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "http", "https"),
    [
        ({}, None, None),
        ({"HTTP_PROXY": "http://p:1"}, "http://p:1", None),
        ({"http_proxy": "p:1"}, "http://p:1", None),
        ({"HTTPS_PROXY": "http://p:2", "https_proxy": "http://q:2"}, None, "http://p:2"),
        ({"https_proxy": "http://q:2"}, None, "http://q:2"),
        ({"ALL_PROXY": "http://a:3"}, "http://a:3", "http://a:3"),
        ({"all_proxy": "http://a:3", "HTTPS_PROXY": "http://s:4"}, "http://a:3", "http://s:4"),
        # httpoxy: in a CGI environment HTTP_PROXY may come from a request header.
        ({"HTTP_PROXY": "http://p:1", "REQUEST_METHOD": "GET"}, None, None),
        ({"HTTP_PROXY": ""}, None, None),
        ({"HTTP_PROXY": "http://p"}, "http://p:80", None),
    ],
)
def test_environment(env: dict[str, str], http: str | None, https: str | None) -> None:
    cfg = ProxyConfig.from_environment(env)
    assert (str(cfg.http) if cfg.http else None) == http
    assert (str(cfg.https) if cfg.https else None) == https


def test_proxy_credentials_become_basic_and_are_never_shown() -> None:
    p = parse_proxy("http://us%40er:p%3Ass@proxy:3128", "HTTPS_PROXY")
    assert p.authorization == "Basic " + base64.b64encode(b"us@er:p:ss").decode()
    assert "p:ss" not in str(p) and "p%3Ass" not in repr(p)


@pytest.mark.parametrize("value", ["socks5://p:1080", "https://p:443", "http://", "http://p:99999"])
def test_unusable_proxies_fail_in_words(value: str) -> None:
    with pytest.raises(InvalidArgument, match="HTTPS_PROXY: proxy"):
        ProxyConfig.from_environment({"HTTPS_PROXY": value})


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "direct"),
    [
        ("", "r.example", 443, False),
        ("*", "r.example", 443, True),
        ("r.example", "r.example", 443, True),
        ("r.example", "a.r.example", 443, True),
        ("r.example", "ar.example", 443, False),
        (".r.example", "r.example", 443, False),  # Go: a leading dot is subdomains only
        (".r.example", "a.r.example", 443, True),
        ("*.r.example", "a.b.r.example", 443, True),
        ("*.r.example", "r.example", 443, False),
        ("R.Example", "r.example", 443, True),
        ("r.example:5000", "r.example", 5000, True),
        ("r.example:5000", "r.example", 443, False),
        (" other.example , r.example ", "r.example", 443, True),
        ("10.0.0.0/8", "10.1.2.3", 443, True),
        ("10.0.0.0/8", "11.1.2.3", 443, False),
        ("10.0.0.0/8", "r.example", 443, False),
        ("192.168.1.1", "192.168.1.1", 443, True),
        ("192.168.1.1:8080", "192.168.1.1", 443, False),
        ("fd00::/8", "fd00::1", 443, True),
        ("[fd00::1]:5000", "fd00::1", 5000, True),
        ("fd00::1", "fd00::1", 443, True),
        ("not/a/cidr", "r.example", 443, False),
    ],
)
def test_no_proxy(no_proxy: str, host: str, port: int, direct: bool) -> None:
    assert NoProxy(no_proxy).matches(host, port) is direct
    cfg = ProxyConfig(https=P, no_proxy=no_proxy)
    assert (cfg.for_target("https", host, port) is None) is direct


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.5.6.7", "::1"])
def test_loopback_is_never_proxied(host: str) -> None:
    assert ProxyConfig(http=P, https=P).for_target("http", host, 5000) is None


def test_scheme_picks_the_proxy() -> None:
    h, s = Proxy("h", 1, None), Proxy("s", 2, None)
    cfg = ProxyConfig(http=h, https=s)
    assert cfg.for_target("http", "r.example", 80) == h
    assert cfg.for_target("https", "r.example", 443) == s
    assert ProxyConfig(https=s).for_target("http", "r.example", 80) is None


# -- through a real proxy --------------------------------------------------------------
@pytest.fixture(scope="module")
def name() -> str:
    n = loopback_name()
    if n is None:
        pytest.skip("no host name resolves to loopback here (the proxy skips loopback)")
    return n


@pytest.fixture
def tinyproxy(tmp_path: Path) -> Iterator[TinyProxy]:
    if not TinyProxy.available():
        pytest.skip("tinyproxy is not installed (run `make deps`)")
    with TinyProxy(tmp_path) as p:
        yield p


def _env(**kv: str) -> dict[str, str]:
    # The test's own settings only: whatever the machine has is cleared.
    base = {k: "" for k in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy",
                            "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy")}  # fmt: skip
    return {**base, **kv}


def test_pull_through_the_proxy(
    tinyproxy: TinyProxy, registry: Registry, repo_name: str, name: str, tmp_path: Path
) -> None:
    img = simple_image(tag="proxy")
    push_image(registry, repo_name, "v1", img)
    port = registry.host.rsplit(":", 1)[1]
    ref = f"{name}:{port}/{repo_name}:v1"
    out = run_dist("--root", str(tmp_path / "root"), "--plain-http", "fetch", ref,
                   env=_env(HTTP_PROXY=tinyproxy.url()))  # fmt: skip
    assert out.returncode == 0, out.stderr.decode()
    assert img.digest in out.stdout.decode()
    seen = tinyproxy.requests()
    assert any(f"http://{name}:{port}/v2/{repo_name}/manifests/v1" in r for r in seen), seen
    assert any("/blobs/sha256:" in r for r in seen), seen


def test_no_proxy_is_honoured(
    registry: Registry, repo_name: str, name: str, tmp_path: Path
) -> None:
    img = simple_image(tag="noproxy")
    push_image(registry, repo_name, "v1", img)
    port = registry.host.rsplit(":", 1)[1]
    ref = f"{name}:{port}/{repo_name}:v1"
    with refused_port() as dead_port:
        dead = f"http://127.0.0.1:{dead_port}"
        for no_proxy in (name, f"{name}:{port}", "*", f".other,{name.upper()}"):
            out = run_dist("--plain-http", "resolve", ref,
                           env=_env(HTTP_PROXY=dead, NO_PROXY=no_proxy))  # fmt: skip
            assert out.returncode == 0, (no_proxy, out.stderr.decode())
        out = run_dist("--plain-http", "resolve", ref, env=_env(HTTP_PROXY=dead, no_proxy="other"))
    assert out.returncode == 1


def test_a_dead_proxy_is_one_clear_line(registry: Registry, name: str) -> None:
    port = registry.host.rsplit(":", 1)[1]
    with refused_port() as dead:
        out = run_dist("--plain-http", "--timeout", "20s", "resolve", f"{name}:{port}/any/repo:v1",
                       env=_env(HTTPS_PROXY=f"http://127.0.0.1:{dead}",
                                HTTP_PROXY=f"http://127.0.0.1:{dead}"))  # fmt: skip
    assert out.returncode == 1
    line = one_error_line(out)
    assert f"proxy http://127.0.0.1:{dead}" in line and "connection refused" in line, line


def test_https_through_a_connect_tunnel_with_proxy_credentials(
    tls_env: TLSEnv, name: str, tmp_path: Path
) -> None:
    """HTTPS goes through CONNECT; the proxy's credentials go to the proxy
    alone (a proxy that requires them answers 407 without)."""
    img = simple_image(tag="tunnel")
    push_image(tls_env.registry, "proxy/tunnel", "v1", img, creds=tls_env.creds)
    port = tls_env.registry.host.rsplit(":", 1)[1]
    ref = f"{name}:{port}/proxy/tunnel:v1"
    with TinyProxy(tmp_path, user="pu", password="proxy-pw-2f81c9") as proxy:
        out = run_dist("--insecure", "-u", tls_env.creds, "fetch", ref,
                       env=_env(HTTPS_PROXY=proxy.url("pu", "proxy-pw-2f81c9")))  # fmt: skip
        assert out.returncode == 0, out.stderr.decode()
        assert img.digest in out.stdout.decode()
        assert any(r.startswith(f"CONNECT {name}:{port}") for r in proxy.requests())
        out = run_dist("--insecure", "-u", tls_env.creds, "resolve", ref,
                       env=_env(HTTPS_PROXY=proxy.url()))  # fmt: skip
        assert out.returncode == 1
        assert "proxy authentication required (407)" in one_error_line(out)
        assert "proxy-pw-2f81c9" not in out.stderr.decode()


def test_proxy_credentials_never_reach_the_registry(tmp_path: Path, name: str) -> None:
    """Through a plain-HTTP proxy the registry sees the request, never the
    proxy's Proxy-Authorization (nor the password anywhere)."""
    secret = "proxy-pw-71ac0e"
    with TinyProxy(tmp_path, user="pu", password=secret) as proxy, HostileRegistry() as reg:
        blob = b"proxied blob"
        reg.blob(blob)
        ref = f"{name}:{reg.port}/a/b:v1"
        out = run_dist("--plain-http", "fetch-object", ref,
                       "sha256:" + hashlib.sha256(blob).hexdigest(),
                       env=_env(HTTP_PROXY=proxy.url("pu", secret)))  # fmt: skip
        assert out.returncode == 0, out.stderr.decode()
        assert out.stdout == blob
        assert reg.requests(), "the registry saw nothing"
        for r in reg.requests():
            assert "proxy-authorization" not in r.headers
            assert secret.encode() not in r.raw_head
            assert base64.b64encode(f"pu:{secret}".encode()) not in r.raw_head
