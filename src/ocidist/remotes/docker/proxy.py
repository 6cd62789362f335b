"""HTTP proxies from the environment, read the way Go's net/http reads them
(skopeo, crane and ctr are Go programs; so are most registry tools).

- ``HTTPS_PROXY`` for https:// registries (a ``CONNECT`` tunnel: the TLS
  session is end to end, the proxy sees only ``host:port``), ``HTTP_PROXY``
  for http:// ones (requests in absolute form through the proxy); upper case
  first, then lower case. ``ALL_PROXY`` (curl's) is the fallback for both.
  ``HTTP_PROXY`` is ignored when ``REQUEST_METHOD`` is set (a CGI
  environment, where it may come from a request header: "httpoxy"), as Go
  does.
- A proxy URL is ``http://[user:password@]host[:port]`` (port 80 by default;
  a bare ``host:port`` means http). Its credentials become
  ``Proxy-Authorization: Basic …`` sent to the proxy alone: on the
  ``CONNECT`` request, or on each request through a plain-HTTP proxy (a
  proxy removes it, being hop-by-hop); never inside a tunnel. ``https://``
  and ``socks`` proxies are refused in words rather than bypassed.
- ``NO_PROXY``: comma-separated; ``*`` matches everything; an IP address or
  CIDR block (``10.0.0.0/8``, ``::1``, ``[::1]:5000``) matches addresses;
  ``example.com`` matches that name and its subdomains, ``.example.com`` and
  ``*.example.com`` only subdomains; ``name:port`` only that port. (curl also
  lets ``.example.com`` match ``example.com`` itself; Go does not, and we
  follow Go.)
- ``localhost`` and loopback addresses are never proxied (Go's rule; curl
  would proxy them unless NO_PROXY names them): a registry on this machine
  is reached directly, as the loopback default of plain HTTP assumes. A name
  that merely resolves to loopback (the machine's host name) is proxied.

There is no per-registry proxy in ``hosts.toml``: containerd has no such key
(an open proposal, containerd PR #13359, would add ``proxy = "http://…"`` to
a host table; not merged when this was written).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any

from ocidist.errors import InvalidArgument
from ocidist.value import Value


class ProxyError(InvalidArgument):
    """A proxy setting that cannot be used as written."""


class Proxy(Value):
    __slots__ = ("host", "port", "authorization")
    host: str
    port: int
    authorization: str | None  # "Basic …" from the URL's user information

    def __init__(self, host: str, port: int, authorization: str | None) -> None:
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)
        object.__setattr__(self, "authorization", authorization)

    def __str__(self) -> str:  # never with the credentials
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __repr__(self) -> str:
        return f"Proxy({self})"


def parse_proxy(text: str, where: str) -> Proxy:
    """A proxy URL from the environment (``where`` names the variable)."""
    value = text.strip()
    if "://" not in value:
        value = "http://" + value
    scheme = value.split("://", 1)[0].lower()
    shown = f"{where}: proxy {scheme}://…"
    if scheme != "http":
        raise ProxyError(f"{shown}: only http:// proxies are supported")
    from urllib.parse import unquote, urlsplit

    try:
        u = urlsplit(value)
        port = u.port
    except ValueError:
        raise ProxyError(f"{shown}: invalid proxy URL") from None
    if not u.hostname:
        raise ProxyError(f"{shown}: invalid proxy URL")
    auth = None
    if u.username is not None:
        import base64  # only with a credential: ~0.8 ms of import

        raw = f"{unquote(u.username)}:{unquote(u.password or '')}".encode()
        auth = "Basic " + base64.b64encode(raw).decode("ascii")
    return Proxy(u.hostname, 80 if port is None else port, auth)


def _split_host_port(entry: str) -> tuple[str, str]:
    """``host[:port]``, ``[v6]:port`` or a bare IPv6 address."""
    if entry.startswith("["):
        end = entry.find("]")
        if end > 0:
            return entry[1:end], entry[end + 1 :].removeprefix(":")
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, port
    return entry, ""


def _ip(text: str) -> Any:
    import ipaddress  # only with a proxy and a NO_PROXY to match: ~2 ms

    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    ip = _ip(host) if host[:1].isdigit() or ":" in host else None
    return ip is not None and ip.is_loopback


class NoProxy:
    """A parsed ``NO_PROXY`` (see the module docstring for the grammar)."""

    def __init__(self, text: str) -> None:
        self.everything = False
        self._nets: list[tuple[Any, str]] = []  # (network, port)
        self._names: list[tuple[str, bool, str]] = []  # (".suffix", match bare name, port)
        for raw in text.split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            if entry == "*":
                self.everything = True
                continue
            if "/" in entry:
                import ipaddress

                # Not a CIDR block: ignored, as Go does.
                with contextlib.suppress(ValueError):
                    self._nets.append((ipaddress.ip_network(entry, strict=False), ""))
                continue
            host, port = _split_host_port(entry)
            ip = _ip(host)
            if ip is not None:
                import ipaddress

                self._nets.append((ipaddress.ip_network(ip), port))
                continue
            if host.startswith("*."):
                host = host[1:]
            bare = not host.startswith(".")
            self._names.append((host if not bare else "." + host, bare, port))

    def matches(self, host: str, port: int) -> bool:
        """True when ``host:port`` is to be reached directly."""
        if self.everything:
            return True
        host = host.lower()
        ip = _ip(host) if self._nets and (host[:1].isdigit() or ":" in host) else None
        if ip is not None:
            return any(ip in net and (not p or p == str(port)) for net, p in self._nets)
        for suffix, bare, p in self._names:
            if p and p != str(port):
                continue
            if host.endswith(suffix) or (bare and host == suffix[1:]):
                return True
        return False


def _env(env: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    for name in names:
        value = env.get(name)
        if value:
            return name, value
    return None


class ProxyConfig:
    """Which proxy, if any, serves each request (built once per command)."""

    def __init__(
        self,
        http: Proxy | None = None,
        https: Proxy | None = None,
        no_proxy: str = "",
    ) -> None:
        self.http = http
        self.https = https
        self.no_proxy = NoProxy(no_proxy)

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> ProxyConfig:
        env = os.environ if env is None else env
        every = _env(env, "ALL_PROXY", "all_proxy")
        http = None if "REQUEST_METHOD" in env else _env(env, "HTTP_PROXY", "http_proxy")
        https = _env(env, "HTTPS_PROXY", "https_proxy")
        no = _env(env, "NO_PROXY", "no_proxy")

        def proxy(setting: tuple[str, str] | None) -> Proxy | None:
            setting = setting or every
            return None if setting is None else parse_proxy(setting[1], setting[0])

        return cls(proxy(http), proxy(https), no[1] if no else "")

    @property
    def any(self) -> bool:
        return self.http is not None or self.https is not None

    def for_target(self, scheme: str, host: str, port: int) -> Proxy | None:
        """The proxy for a request to ``scheme://host:port``, or None (direct)."""
        proxy = self.https if scheme == "https" else self.http
        if proxy is None or is_loopback(host) or self.no_proxy.matches(host, port):
            return None
        return proxy
