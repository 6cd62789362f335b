"""The token request never carries credentials to another origin.

A real Distribution registry (TLS, token auth) sends clients to a token
endpoint that misbehaves on purpose: it answers the credential POST (or the
GET with Basic that follows a refused POST) with a redirect — to another
host, or to plain HTTP on the same host and port (one listener speaks both).
Wherever it points, the password must never arrive there, in a body or a
header; the command fails in one line that says why. A redirect within the
token endpoint's own origin is still followed (the control case).
"""

from __future__ import annotations

import http.client
import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dist_cli import one_error_line, run_dist
from tests.harness import BuiltImage, push_image, simple_image
from tests.harness.authfixtures import pki
from tests.harness.certs import CA
from tests.harness.recording import Recorded, RecordingServer, Reply
from tests.harness.registry import Registry, TokenAuth
from tests.harness.tokenserver import TokenServer

__all__ = ["pki"]

USER, PASSWORD = "alice", "pw-token-redirect-6c1f0e"
REPO = "private/redirect/app"


class Front:
    """The hostile token endpoint's behaviour, set per test."""

    def __init__(self, ts: TokenServer, ca: CA) -> None:
        self.ts = ts
        self.ctx = ssl.create_default_context(cafile=str(ca.cert_path))
        self.post: Reply | None = None  # None: forward to the real token server
        self.get: Reply | None = None

    def __call__(self, req: Recorded) -> Reply:
        reply = self.post if req.method == "POST" else self.get
        if reply is not None and req.path.partition("?")[0] == "/token":
            return reply
        return self.forward(req)

    def forward(self, req: Recorded) -> Reply:
        conn = http.client.HTTPSConnection(self.ts.host, context=self.ctx, timeout=30)
        try:
            _, q, query = req.path.partition("?")
            path = "/token" + q + query
            headers = {k: v for k, v in req.headers if k.lower() not in ("host",)}
            conn.request(req.method, path, body=req.body or None, headers=headers)
            resp = conn.getresponse()
            ctype = resp.getheader("Content-Type") or "application/json"
            return Reply(resp.status, {"Content-Type": ctype}, resp.read())
        finally:
            conn.close()


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, pki: CA
) -> Iterator[tuple[Registry, RecordingServer, Front, RecordingServer, BuiltImage]]:
    ts = TokenServer(signer=pki.signer(), tls=pki.server("rt-token"), users={USER: PASSWORD})
    ts.start()
    front_state = Front(ts, pki)
    front = RecordingServer(tls=pki.server("rt-front"), responder=front_state).start()
    # Another host: 127.0.0.2 is loopback too, but not the same origin.
    other = RecordingServer(
        "127.0.0.2", responder=lambda req: Reply(200, {}, b'{"token":"from-elsewhere"}')
    ).start()
    server = pki.server("rt-registry")
    auth = TokenAuth(
        realm=front.url("/token"), service=ts.service, issuer=ts.issuer,
        rootcertbundle=pki.cert_path,
    )  # fmt: skip
    reg = Registry(
        tmp_path_factory.mktemp("rt-registry"),
        token=auth,
        tls_cert=server.cert_path,
        tls_key=server.key_path,
    )
    try:
        reg.start()
        img = simple_image(tag="token-redirect")
        push_image(reg, REPO, "v1", img, creds=f"{USER}:{PASSWORD}")
        yield reg, front, front_state, other, img
    finally:
        reg.stop()
        other.stop()
        front.stop()
        ts.stop()


def hosts_dir(tmp_path: Path, reg: Registry, ca: CA) -> str:
    d = tmp_path / "certs.d" / reg.host
    d.mkdir(parents=True)
    shutil.copy(ca.cert_path, d / "ca.pem")
    (d / "hosts.toml").write_text(f'server = "https://{reg.host}"\nca = "ca.pem"\n')
    return str(tmp_path / "certs.d")


def resolve(tmp_path: Path, reg: Registry, ca: CA) -> tuple[int, str]:
    out = run_dist(
        "--hosts-dir", hosts_dir(tmp_path, reg, ca), "--user", f"{USER}:{PASSWORD}",
        "--timeout", "60s", "resolve", f"{reg.host}/{REPO}:v1",
    )  # fmt: skip
    if out.returncode == 0:
        return 0, out.stdout.decode()
    return out.returncode, one_error_line(out)


def assert_no_secret(requests: list[Recorded]) -> None:
    for req in requests:
        assert PASSWORD not in req.text(), req
        assert (req.header("Authorization") or "") == "", req
        assert req.body == b"", req


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize("where", ["other-host", "plain-http-same-port"])
def test_token_post_redirected_off_origin_keeps_the_password(
    setup: tuple[Registry, RecordingServer, Front, RecordingServer, BuiltImage],
    pki: CA,
    tmp_path: Path,
    status: int,
    where: str,
) -> None:
    reg, front, state, other, _ = setup
    target = other.url("/token") if where == "other-host" else front.url("/token", "http")
    state.post = Reply(status, {"Location": target})
    state.get = None
    before_other, before_front = len(other.requests()), len(front.requests())
    try:
        rc, line = resolve(tmp_path, reg, pki)
    finally:
        state.post = None
    assert rc == 1, line
    assert "redirect" in line, line
    assert PASSWORD not in line
    assert_no_secret(other.requests()[before_other:])
    plain = [r for r in front.requests()[before_front:] if r.scheme == "http"]
    assert_no_secret(plain)


@pytest.mark.parametrize("status", [302, 307])
@pytest.mark.parametrize("where", ["other-host", "plain-http-same-port"])
def test_token_get_with_basic_redirected_off_origin_keeps_the_password(
    setup: tuple[Registry, RecordingServer, Front, RecordingServer, BuiltImage],
    pki: CA,
    tmp_path: Path,
    status: int,
    where: str,
) -> None:
    """A token endpoint that refuses the POST form: the GET with Basic that
    follows is redirected in turn."""
    reg, front, state, other, _ = setup
    target = other.url("/token") if where == "other-host" else front.url("/token", "http")
    state.post = Reply(404)
    state.get = Reply(status, {"Location": target})
    before_other, before_front = len(other.requests()), len(front.requests())
    try:
        rc, line = resolve(tmp_path, reg, pki)
    finally:
        state.post = state.get = None
    assert rc == 1, line
    assert "redirect" in line, line
    assert_no_secret(other.requests()[before_other:])
    plain = [r for r in front.requests()[before_front:] if r.scheme == "http"]
    assert_no_secret(plain)


def test_token_redirect_within_its_origin_is_followed(
    setup: tuple[Registry, RecordingServer, Front, RecordingServer, BuiltImage],
    pki: CA,
    tmp_path: Path,
) -> None:
    reg, front, state, _, img = setup
    state.post = Reply(307, {"Location": "/token-moved"})
    before = len(front.requests())
    try:
        rc, out = resolve(tmp_path, reg, pki)
    finally:
        state.post = None
    assert rc == 0, out
    assert img.digest in out
    moved = [r for r in front.requests()[before:] if r.path.startswith("/token-moved")]
    assert moved and moved[0].method == "POST" and moved[0].scheme == "https"
    assert b"password=" in moved[0].body


@pytest.fixture(scope="module")
def plain_realm_registry(
    tmp_path_factory: pytest.TempPathFactory,
    pki: CA,
    setup: tuple[Registry, RecordingServer, Front, RecordingServer, BuiltImage],
) -> Iterator[Registry]:
    """An HTTPS registry that sends clients to an ``http://`` token realm."""
    _, front, state, _, _ = setup
    server = pki.server("rt-plain-realm")
    auth = TokenAuth(
        realm=front.url("/token", "http"), service=state.ts.service, issuer=state.ts.issuer,
        rootcertbundle=pki.cert_path,
    )  # fmt: skip
    reg = Registry(
        tmp_path_factory.mktemp("rt-plain-realm"),
        token=auth,
        tls_cert=server.cert_path,
        tls_key=server.key_path,
    )
    try:
        reg.start()
        yield reg
    finally:
        reg.stop()


def test_plain_http_realm_for_an_https_registry_is_refused(
    setup: tuple[Registry, RecordingServer, Front, RecordingServer, BuiltImage],
    plain_realm_registry: Registry,
    pki: CA,
    tmp_path: Path,
) -> None:
    _, front, _, _, _ = setup
    before = len(front.requests())
    rc, line = resolve(tmp_path, plain_realm_registry, pki)
    assert rc == 1
    assert "plain HTTP" in line and "unauthorized" in line, line
    # Not even an anonymous request went there.
    assert front.requests()[before:] == []
