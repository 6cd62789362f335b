"""containerd-compatible registry host configuration (``certs.d``).

Layout and keys are containerd's, so ``--hosts-dir /etc/containerd/certs.d``
works unchanged: ``<dir>/<host[:port]>/hosts.toml``, else
``<dir>/_default/hosts.toml``, else legacy ``*.crt`` / ``*.cert`` + ``*.key``
files in the host directory. A ``hosts.toml`` lists mirrors as ordered
``[host."<url>"]`` tables, then the upstream ``server`` with its own
top-level settings. Keys: ``capabilities``, ``ca`` (file or list),
``client`` (file, list of files, or list of [cert, key]), ``skip_verify``,
``header``, ``override_path``. Relative paths resolve against the file's
directory; a host without a scheme is HTTPS.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ocidist.content.tuning import Tuning
from ocidist.dialling import DOCKER_HUB
from ocidist.errors import InvalidArgument
from ocidist.remotes.docker.hosts import ALL_CAPABILITIES, RegistryHost, default_hosts
from ocidist.remotes.docker.transport import TLSConfig

HOSTS_FILE = "hosts.toml"
DEFAULT_DIR = "_default"


class HostsConfigError(InvalidArgument):
    """A hosts.toml that cannot be used as written."""


def default_hosts_dir() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "ocidist", "certs.d")


def configure_hosts(
    domain: str,
    *,
    hosts_dir: str | None = None,
    plain_http: bool = False,
    insecure: bool = False,
) -> list[RegistryHost]:
    """The hosts to try for ``domain``, mirrors first, then the upstream."""
    root = hosts_dir or default_hosts_dir()
    for name in (domain, DEFAULT_DIR):
        d = os.path.join(root, name)
        path = os.path.join(d, HOSTS_FILE)
        if os.path.isfile(path):
            return _apply_insecure(load_hosts_file(path, domain, plain_http=plain_http), insecure)
        if name == domain and os.path.isdir(d):
            return _apply_insecure(_legacy(d, domain, plain_http=plain_http), insecure)
    return default_hosts(domain, plain_http=plain_http, insecure=insecure)


def _apply_insecure(hosts: list[RegistryHost], insecure: bool) -> list[RegistryHost]:
    # --insecure is the user's explicit word for this command: it beats every file.
    if not insecure:
        return hosts
    out = []
    for h in hosts:
        t = h.tls
        tls = TLSConfig(True, t.ca_files, t.client_cert, t.client_key)
        out.append(h.replace(tls=tls))
    return out


def tuning_from(max_ranges: int | None, threshold: int | None, piece: int | None) -> Tuning | None:
    """The defaults with what was given applied (flags or hosts.toml keys):
    at most 1 range is one stream; threshold 0 never ranges; piece 0 sizes
    pieces from the blob."""
    if max_ranges is None and threshold is None and piece is None:
        return None
    t = Tuning()
    if max_ranges is not None:
        t = t.replace(max=max(1, max_ranges), start=min(t.start, max(1, max_ranges)))
        if max_ranges <= 1:
            t = t.replace(threshold=0)
    if threshold is not None and t.threshold:
        t = t.replace(threshold=threshold)
    if piece is not None:
        t = t.replace(piece=piece)
    return t


def load_hosts_file(path: str, domain: str, *, plain_http: bool = False) -> list[RegistryHost]:
    import tomllib  # only when a hosts.toml exists: ~2 ms of every command's start-up

    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise HostsConfigError(f"{path}: invalid TOML: {e}") from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise HostsConfigError(f"{path}: invalid TOML: nested too deeply") from None
    except OSError as e:
        raise HostsConfigError(f"{path}: {e.strerror or e}") from None
    base = os.path.dirname(path)
    out: list[RegistryHost] = []
    tables = doc.get("host", {})
    if not isinstance(tables, dict):
        raise HostsConfigError(f"{path}: 'host' must be a table of [host.\"<url>\"] tables")
    for key, table in tables.items():
        if not isinstance(table, dict):
            raise HostsConfigError(f"{path}: [host.{key!r}] must be a table")
        out.append(_host(path, base, key, table))
    server = doc.get("server")
    if server is not None:
        if not isinstance(server, str) or not server:
            raise HostsConfigError(f"{path}: 'server' must be a URL string")
        out.append(_host(path, base, server, doc))
    else:
        out.append(_default_upstream(path, base, domain, doc, plain_http))
    return out


def _default_upstream(
    path: str, base: str, domain: str, doc: Mapping[str, Any], plain_http: bool
) -> RegistryHost:
    """The upstream when the file names no ``server``: the registry itself,
    with the file's top-level settings. Loopback is plain HTTP by default, but
    a file giving TLS material for it clearly means HTTPS."""
    up = default_hosts(domain, plain_http=plain_http)[0]
    tls_keys = any(k in doc for k in ("ca", "client", "skip_verify"))
    scheme = "https" if tls_keys and not plain_http and domain != DOCKER_HUB else up.scheme
    return _host(path, base, f"{scheme}://{up.host}", doc)


def _host(path: str, base: str, url: str, table: Mapping[str, Any]) -> RegistryHost:
    where = f"{path}: {url}"
    if "://" not in url:
        url = "https://" + url
    from urllib.parse import urlsplit  # only with a hosts.toml: ~3 ms of start-up

    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.netloc:
        raise HostsConfigError(f"{where}: not an http(s) URL")
    override = _bool(table, "override_path", where)
    p = u.path.rstrip("/")
    if p and not override and not p.endswith("/v2"):
        p += "/v2"
    return RegistryHost(
        host=u.netloc,
        scheme=u.scheme,
        path=p or "/v2",
        capabilities=_capabilities(table, where),
        tls=_tls(table, base, where),
        headers=_headers(table, where),
        ranges=_ranges(table, where),
    )


def _ranges(table: Mapping[str, Any], where: str) -> Tuning | None:
    """ocidist's own keys (containerd ignores them): ``max_ranges``,
    ``range_threshold`` and ``range_size`` in bytes, as the flags of the
    same names (content/parallel.py)."""
    keys = ("max_ranges", "range_threshold", "range_size")
    if not any(k in table for k in keys):
        return None
    for k in keys:
        v = table.get(k, 0)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise HostsConfigError(f"{where}: '{k}' must be a whole number >= 0")
    return tuning_from(*(table.get(k) for k in keys))


def _bool(table: Mapping[str, Any], key: str, where: str) -> bool:
    v = table.get(key, False)
    if not isinstance(v, bool):
        raise HostsConfigError(f"{where}: '{key}' must be true or false")
    return v


def _capabilities(table: Mapping[str, Any], where: str) -> frozenset[str]:
    caps = table.get("capabilities")
    if caps is None:
        return ALL_CAPABILITIES
    if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
        raise HostsConfigError(f"{where}: 'capabilities' must be a list of strings")
    unknown = set(caps) - ALL_CAPABILITIES
    if unknown:
        raise HostsConfigError(f"{where}: unknown capabilities {sorted(unknown)}")
    return frozenset(caps)


def _path(base: str, p: str) -> str:
    return p if os.path.isabs(p) else os.path.join(base, p)


def _tls(table: Mapping[str, Any], base: str, where: str) -> TLSConfig:
    ca = table.get("ca", [])
    if isinstance(ca, str):
        ca = [ca]
    if not isinstance(ca, list) or not all(isinstance(c, str) for c in ca):
        raise HostsConfigError(f"{where}: 'ca' must be a file name or a list of them")
    cert, key = _client(table.get("client"), where)
    return TLSConfig(
        insecure=_bool(table, "skip_verify", where),
        ca_files=tuple(_path(base, c) for c in ca),
        client_cert=_path(base, cert) if cert else None,
        client_key=_path(base, key) if key else None,
    )


def _client(value: Any, where: str) -> tuple[str | None, str | None]:
    """containerd accepts a file, a list of files (key inside), or a list of
    [cert, key] pairs; our transport presents one, so the first one wins."""
    if value is None:
        return None, None
    first = value[0] if isinstance(value, list) and value else value
    if isinstance(first, str) and first:
        return first, None
    if (
        isinstance(first, list)
        and 1 <= len(first) <= 2
        and all(isinstance(x, str) and x for x in first)
    ):
        return first[0], (first[1] if len(first) == 2 else None)
    raise HostsConfigError(f"{where}: 'client' must be a file, files, or [cert, key] pairs")


def _headers(table: Mapping[str, Any], where: str) -> dict[str, str]:
    hdrs = table.get("header", {})
    if not isinstance(hdrs, dict):
        raise HostsConfigError(f"{where}: 'header' must be a table")
    out: dict[str, str] = {}
    for k, v in hdrs.items():
        if isinstance(v, str):
            out[k] = v
        elif isinstance(v, list) and all(isinstance(x, str) for x in v):
            out[k] = ", ".join(v)
        else:
            raise HostsConfigError(f"{where}: header {k!r} must be a string or strings")
    return out


def _legacy(d: str, domain: str, *, plain_http: bool) -> list[RegistryHost]:
    """Docker-style ``certs.d/<host>/``: ``*.crt`` CAs, ``x.cert`` + ``x.key``."""
    names = sorted(os.listdir(d))
    cas = tuple(os.path.join(d, n) for n in names if n.endswith(".crt"))
    cert = next((n for n in names if n.endswith(".cert") and n[:-5] + ".key" in names), None)
    up = default_hosts(domain, plain_http=plain_http)[0]
    if not cas and cert is None:
        return [up]
    tls = TLSConfig(
        ca_files=cas,
        client_cert=os.path.join(d, cert) if cert else None,
        client_key=os.path.join(d, cert[:-5] + ".key") if cert else None,
    )
    # TLS files for a host mean HTTPS, even on loopback (plain HTTP by default).
    return [up.replace(scheme="http" if plain_http else "https", tls=tls)]
