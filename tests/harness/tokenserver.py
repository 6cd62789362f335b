"""A small Docker-registry token server for tests (loopback HTTP).

It signs ES256 JWTs whose header carries the signing certificate in ``x5c``;
the registry trusts them through ``auth.token.rootcertbundle`` = the test CA.
Policy: users with the right password get pull+push everywhere; anonymous
callers get pull only on repositories under ``public_prefixes``. Every token
request is recorded, so tests can count them. Knobs (plain attributes, change
them mid-test): ``expires_in`` sent to clients, ``stale_next`` (sign that many
next tokens already past their ``exp`` while still advertising
``expires_in``: the registry rejects them, the client must refresh),
``allow_post`` (False answers the OAuth2 POST with 404, forcing the GET
fallback).
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from tests.harness.certs import Issued
from tests.harness.httpserve import TrackingServer


@dataclass(frozen=True)
class TokenRequest:
    method: str
    grant: str  # "password", "refresh_token", "basic" (GET + Basic) or "anonymous"
    user: str
    scopes: tuple[str, ...]
    status: int


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_es256(payload: Mapping[str, Any], signer: Issued) -> str:
    header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(signer.der()).decode()]}
    signing_input = (
        _b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(payload, separators=(",", ":")).encode())
    )
    der = signer.key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    # JWS wants the raw r||s pair, not the DER SEQUENCE cryptography produces.
    r, s = decode_dss_signature(der)
    return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


@dataclass
class TokenServer:
    signer: Issued = field(repr=False)
    service: str = "ocidist-test-registry"
    issuer: str = "ocidist-test-issuer"
    users: dict[str, str] = field(default_factory=dict, repr=False)
    public_prefixes: Sequence[str] = ("public/",)
    expires_in: int = 300
    stale_next: int = 0
    allow_post: bool = True
    bind_host: str = "127.0.0.1"
    log: list[TokenRequest] = field(default_factory=list, repr=False)
    refresh_tokens: dict[str, str] = field(default_factory=dict, repr=False)  # token -> user
    issued: list[str] = field(default_factory=list, repr=False)  # every token, to grep logs for
    tls: Issued | None = field(default=None, repr=False)  # serve HTTPS with this certificate

    def __post_init__(self) -> None:
        self._server: TrackingServer | None = None
        self._lock = threading.Lock()

    @property
    def host(self) -> str:
        assert self._server is not None, "token server not started"
        return self._server.host

    @property
    def realm(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.host}/token"

    def start(self) -> TokenServer:
        self._server = TrackingServer(self.bind_host, _Handler, self)
        if self.tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(self.tls.cert_path), str(self.tls.key_path))
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def issue_refresh_token(self, user: str) -> str:
        tok = "rt-" + secrets.token_hex(16)
        self.refresh_tokens[tok] = user
        return tok

    def count(self, **match: Any) -> int:
        with self._lock:
            return sum(1 for r in self.log if all(getattr(r, k) == v for k, v in match.items()))

    def record(self, req: TokenRequest) -> None:
        with self._lock:
            self.log.append(req)

    # -- policy ----------------------------------------------------------
    def grant(self, user: str, scopes: Sequence[str]) -> list[dict[str, Any]]:
        access: list[dict[str, Any]] = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) != 3:
                continue
            typ, name, actions = parts
            wanted = [a for a in actions.split(",") if a]
            if user:
                allowed = [a for a in wanted if a in ("pull", "push", "delete", "*")]
            elif typ == "repository" and name.startswith(tuple(self.public_prefixes)):
                allowed = [a for a in wanted if a == "pull"]
            else:
                allowed = []
            access.append({"type": typ, "name": name, "actions": allowed})
        return access

    def token_for(self, user: str, scopes: Sequence[str]) -> str:
        now = int(time.time())
        with self._lock:
            stale = self.stale_next > 0
            self.stale_next -= int(stale)
        # The registry allows 60 s of clock leeway past exp: go well beyond it.
        exp = now - 600 if stale else now + max(self.expires_in, 1) + 60
        claims = {
            "iss": self.issuer,
            "sub": user,
            "aud": self.service,
            "exp": exp,
            "nbf": now - 1200 if stale else now - 60,
            "iat": now - 1200 if stale else now,
            "jti": secrets.token_hex(8),
            "access": self.grant(user, scopes),
        }
        tok = sign_es256(claims, self.signer)
        with self._lock:
            self.issued.append(tok)
        return tok


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: TrackingServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean; requests are recorded in TokenServer.log

    @property
    def ts(self) -> TokenServer:
        owner = self.server.owner
        assert isinstance(owner, TokenServer)
        return owner

    def _send(self, status: int, obj: Mapping[str, Any]) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        q = parse_qs(urlsplit(self.path).query)
        scopes = tuple(s for v in q.get("scope", []) for s in v.split(" ") if s)
        user, grant = "", "anonymous"
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            try:
                raw = base64.b64decode(auth[6:].strip()).decode()
            except ValueError:
                raw = ":"
            name, _, password = raw.partition(":")
            grant = "basic"
            if self.ts.users.get(name) != password or not name:
                self.ts.record(TokenRequest("GET", grant, name, scopes, 401))
                self._send(401, {"details": "invalid username or password"})
                return
            user = name
        self.ts.record(TokenRequest("GET", grant, user, scopes, 200))
        self._send(
            200,
            {
                "token": self.ts.token_for(user, scopes),
                "expires_in": self.ts.expires_in,
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode())
        grant = (form.get("grant_type") or [""])[0]
        scopes = tuple(s for v in form.get("scope", []) for s in v.split(" ") if s)
        if not self.ts.allow_post:
            self.ts.record(TokenRequest("POST", grant, "", scopes, 404))
            self._send(404, {"details": "POST not supported here"})
            return
        user = ""
        if grant == "password":
            name = (form.get("username") or [""])[0]
            password = (form.get("password") or [""])[0]
            if not name or self.ts.users.get(name) != password:
                self.ts.record(TokenRequest("POST", grant, name, scopes, 401))
                self._send(401, {"error": "invalid_grant"})
                return
            user = name
        elif grant == "refresh_token":
            user = self.ts.refresh_tokens.get((form.get("refresh_token") or [""])[0], "")
            if not user:
                self.ts.record(TokenRequest("POST", grant, "", scopes, 401))
                self._send(401, {"error": "invalid_grant"})
                return
        else:
            self.ts.record(TokenRequest("POST", grant, "", scopes, 400))
            self._send(400, {"error": "unsupported_grant_type"})
            return
        self.ts.record(TokenRequest("POST", grant, user, scopes, 200))
        # OAuth2 answers say access_token (the GET path says token): clients need both.
        self._send(
            200,
            {
                "access_token": self.ts.token_for(user, scopes),
                "expires_in": self.ts.expires_in,
                "scope": " ".join(scopes),
            },
        )
