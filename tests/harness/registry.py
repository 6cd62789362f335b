"""A real CNCF Distribution registry process (Debian ``docker-registry``).

The config is written as JSON: YAML is a superset of JSON and the registry's
YAML parser accepts it (checked against 2.8.2), so we need no YAML library and
quoting of paths/secrets is exact. Optional modes (htpasswd, TLS, token auth,
pull-through proxy) are just more keys in the same document.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import signal
import ssl
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.net import free_port, wait_until

REGISTRY_BIN = "/usr/bin/docker-registry"

# The registry writes its access log in Apache combined format on stderr.
_ACCESS_RE = re.compile(r'"(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) ')


class RegistryStartError(RuntimeError):
    """The registry process exited or never answered ``GET /v2/``."""


@dataclass(frozen=True)
class TokenAuth:
    """``auth.token`` settings: the registry trusts JWTs signed by a key in
    ``rootcertbundle`` and sends clients to ``realm`` for them."""

    realm: str
    service: str
    issuer: str
    rootcertbundle: Path
    autoredirect: bool = False


@dataclass(frozen=True)
class AccessEntry:
    method: str
    uri: str
    status: int

    @property
    def path(self) -> str:
        return self.uri.split("?", 1)[0]


def build_config(
    *,
    root: Path,
    addr: str,
    secret: str,
    log_level: str = "info",
    htpasswd: Path | None = None,
    htpasswd_realm: str = "ocidist-test",
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    token: TokenAuth | None = None,
    proxy_remote_url: str | None = None,
    proxy_username: str | None = None,
    proxy_password: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The registry config as a plain dict (serialised as JSON by ``Registry``)."""
    if htpasswd is not None and token is not None:
        raise ValueError("the registry supports one auth method at a time")
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("tls_cert and tls_key go together")
    http_cfg: dict[str, Any] = {"addr": addr, "secret": secret}
    if tls_cert is not None and tls_key is not None:
        http_cfg["tls"] = {"certificate": str(tls_cert), "key": str(tls_key)}
    cfg: dict[str, Any] = {
        "version": "0.1",
        "log": {"level": log_level, "formatter": "text", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(root)},
            "delete": {"enabled": True},
        },
        "http": http_cfg,
    }
    if htpasswd is not None:
        cfg["auth"] = {"htpasswd": {"realm": htpasswd_realm, "path": str(htpasswd)}}
    if token is not None:
        cfg["auth"] = {
            "token": {
                "realm": token.realm,
                "service": token.service,
                "issuer": token.issuer,
                "rootcertbundle": str(token.rootcertbundle),
                "autoredirect": token.autoredirect,
            }
        }
    if proxy_remote_url is not None:
        proxy: dict[str, Any] = {"remoteurl": proxy_remote_url}
        if proxy_username is not None:
            proxy["username"] = proxy_username
            proxy["password"] = proxy_password or ""
        cfg["proxy"] = proxy
    if extra:
        _deep_merge(cfg, extra)
    return cfg


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            _deep_merge(base[k], v)
        else:
            base[k] = v


class Registry:
    """One ``docker-registry serve`` process on a free loopback port.

    Storage lives in ``workdir/storage``; config and log beside it. ``restart``
    keeps both port and storage, so content survives it.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        bind_host: str = "127.0.0.1",
        port: int | None = None,
        start_timeout: float = 15.0,
        log_level: str = "info",
        htpasswd: Path | None = None,
        htpasswd_realm: str = "ocidist-test",
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        token: TokenAuth | None = None,
        proxy_remote_url: str | None = None,
        proxy_username: str | None = None,
        proxy_password: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage_dir = self.workdir / "storage"
        self.config_path = self.workdir / "config.yml"
        self.log_path = self.workdir / "registry.log"
        self.bind_host = bind_host
        self.tls = tls_cert is not None
        self._fixed_port = port
        self.port = port or 0
        self.start_timeout = start_timeout
        self._config_args: dict[str, Any] = {
            "log_level": log_level,
            "htpasswd": htpasswd,
            "htpasswd_realm": htpasswd_realm,
            "tls_cert": tls_cert,
            "tls_key": tls_key,
            "token": token,
            "proxy_remote_url": proxy_remote_url,
            "proxy_username": proxy_username,
            "proxy_password": proxy_password,
            "extra": extra,
        }
        # One secret for the process's lifetime: upload state (_state=) in
        # Location URLs is signed with it, so uploads survive a restart.
        self._secret = secrets.token_hex(16)
        self._proc: subprocess.Popen[bytes] | None = None

    # -- addresses -------------------------------------------------------
    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``: the registry part of an image reference."""
        return f"{self.bind_host}:{self.port}"

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle -------------------------------------------------------
    def start(self) -> Registry:
        if self.running():
            return self
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            if not self.port:
                self.port = free_port(self.bind_host)
            try:
                self._spawn()
                return self
            except RegistryStartError:
                # Another process may have taken the probed port; pick again.
                if attempt == attempts - 1 or "address already in use" not in self.log_text():
                    raise
                self.port = 0
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        cfg = build_config(
            root=self.storage_dir,
            addr=self.host,
            secret=self._secret,
            **self._config_args,
        )
        self.config_path.write_text(json.dumps(cfg, indent=2) + "\n")
        log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                [REGISTRY_BIN, "serve", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.workdir,
            )
        finally:
            log.close()
        try:
            up = wait_until(self._answers, self.start_timeout)
        except RegistryStartError:
            self.stop()
            raise
        if not up:
            self.stop()
            raise RegistryStartError(
                f"registry on {self.host} did not start; log tail:\n{self.log_text()[-2000:]}"
            )

    def _answers(self) -> bool:
        if self._proc is None or self._proc.poll() is not None:
            # Exited: stop polling at once instead of waiting out the timeout.
            raise RegistryStartError(
                f"registry exited with {self._proc.returncode if self._proc else None}; "
                f"log tail:\n{self.log_text()[-2000:]}"
            )
        conn: http.client.HTTPConnection
        if self.tls:
            conn = http.client.HTTPSConnection(
                self.host, timeout=2, context=ssl._create_unverified_context()
            )
        else:
            conn = http.client.HTTPConnection(self.host, timeout=2)
        try:
            conn.request("GET", "/v2/")
            resp = conn.getresponse()
            resp.read()
            # 401 counts: an auth-enabled registry is up and challenging.
            return resp.status in (200, 401)
        except ssl.SSLError as e:
            # A registry demanding a client certificate (http.tls.clientcas)
            # is up once it refuses us for the lack of one.
            why = str(e).upper().replace(" ", "_")
            return "CERTIFICATE_REQUIRED" in why or "BAD_CERTIFICATE" in why
        except OSError:
            return False
        finally:
            conn.close()

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM our own process by PID, SIGKILL if it lingers."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    def restart(self) -> None:
        """Stop and start again on the same port with the same storage."""
        self.stop()
        self._fixed_port = self.port
        self.start()

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- observation -----------------------------------------------------
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def access_log(self) -> list[AccessEntry]:
        """Requests the registry served, in order, from its access log."""
        out = []
        for line in self.log_text().splitlines():
            if line.startswith("time="):
                continue  # structured app log, not the access log
            m = _ACCESS_RE.search(line)
            if m:
                out.append(AccessEntry(m["method"], m["uri"], int(m["status"])))
        return out

    def __repr__(self) -> str:
        return f"Registry({self.url}, pid={self.pid})"
