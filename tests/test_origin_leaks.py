"""Each credential leak of issue 15, replayed against real sockets with the
real `dist`: an HTTPS registry redirecting to plain HTTP on its own host and
port, hosts.toml headers following a redirect to another host, a request
body redirected to another origin. (The token request's redirects are in
test_token_redirect.py; the policy's table in test_origin.py.)

The registries here are ``RecordingServer``s (tests/harness/recording.py):
one port speaking TLS and plain HTTP, recording every request with its
scheme, headers and body, so a test can grep what crossed where.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from pathlib import Path

from tests.dist_cli import one_error_line, run_dist
from tests.harness.authfixtures import pki
from tests.harness.certs import CA
from tests.harness.recording import Recorded, RecordingServer, Reply

__all__ = ["pki"]

USER, PASSWORD = "alice", "pw-origin-leak-93b1d2"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
BLOB = b"blob bytes " * 100
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
API_KEY, COOKIE = "key-origin-leak-55e0c1", "session=cookie-origin-leak-0d9e"


def _hosts_toml(tmp_path: Path, host: str, text: str) -> str:
    d = tmp_path / "certs.d" / host
    d.mkdir(parents=True)
    (d / "hosts.toml").write_text(text)
    return str(tmp_path / "certs.d")


def _secrets_in(req: Recorded) -> list[str]:
    text = req.text()
    return [s for s in (PASSWORD, BASIC.split()[1], API_KEY, COOKIE) if s in text]


def test_https_registry_redirect_to_plain_http_on_its_own_port(tmp_path: Path, pki: CA) -> None:
    """Same host, same port, plain HTTP: the old host:port comparison sent
    Authorization there in clear."""

    def registry(req: Recorded) -> Reply:
        if req.scheme == "http":
            return Reply(200, {"Content-Type": "application/octet-stream"}, BLOB)
        if req.header("Authorization") != BASIC:
            return Reply(401, {"WWW-Authenticate": 'Basic realm="r"'})
        if req.path.startswith(f"/v2/a/blobs/{DIGEST}"):
            return Reply(307, {"Location": f"http://{srv.host}/plain/{DIGEST}"})
        return Reply(200, {"Content-Type": "application/json"}, b"{}")

    with RecordingServer(tls=pki.server("origin-leak"), responder=registry) as srv:
        hosts = _hosts_toml(
            tmp_path, srv.host, f'server = "https://{srv.host}"\nca = "{pki.cert_path}"\n'
        )
        out = run_dist("--hosts-dir", hosts, "-u", f"{USER}:{PASSWORD}", "fetch-object",
                       f"{srv.host}/a:v1", DIGEST)  # fmt: skip
        assert out.returncode == 0, out.stderr.decode()
        assert out.stdout == BLOB
        plain = [r for r in srv.requests() if r.scheme == "http"]
        assert plain, "the redirect was not followed"
        assert all(not _secrets_in(r) and r.header("Authorization") is None for r in plain)
        # The registry itself did get the credential (the test exercised auth).
        assert any(r.header("Authorization") == BASIC for r in srv.requests())


def test_hosts_toml_headers_stay_with_their_origin(tmp_path: Path) -> None:
    """hosts.toml [header] values (an API key, a cookie) went to a
    cross-host redirect target."""
    with RecordingServer(
        "127.0.0.2", responder=lambda req: Reply(200, {}, BLOB)
    ) as other, RecordingServer(
        responder=lambda req: (
            Reply(307, {"Location": f"http://{other.host}/cdn/{DIGEST}?sig=1"})
            if "/blobs/" in req.path
            else Reply(200, {"Content-Type": "application/json"}, b"{}")
        )
    ) as srv:  # fmt: skip
        toml = f'server = "http://{srv.host}"\n[header]\nX-Api-Key = "{API_KEY}"\n'
        hosts = _hosts_toml(tmp_path, srv.host, toml + f'Cookie = "{COOKIE}"\n')
        out = run_dist("--debug", "--hosts-dir", hosts, "fetch-object", f"{srv.host}/a:v1", DIGEST)
        assert out.returncode == 0, out.stderr.decode()
        assert out.stdout == BLOB
        assert other.requests(), "the redirect was not followed"
        # The trace says what happened, without the secrets or the signed query.
        trace = out.stderr.decode()
        assert "redirect 307 to http://127.0.0.2" in trace and "credentials dropped" in trace
        assert "X-Api-Key: <redacted>" in trace and "Cookie: <redacted>" in trace
        assert "sig=1" not in trace and API_KEY not in trace and COOKIE not in trace
        assert all(not _secrets_in(r) for r in other.requests())
        # The registry's own origin did get them.
        mine = [r for r in srv.requests() if "/blobs/" in r.path]
        assert mine and all(r.header("X-Api-Key") == API_KEY for r in mine)


def test_upload_body_is_never_redirected_to_another_origin(tmp_path: Path) -> None:
    """A push whose upload is answered 307 to another host: the blob is not
    sent there, and the command says why in one line."""
    with RecordingServer("127.0.0.2", responder=lambda req: Reply(201)) as other, RecordingServer(
        responder=lambda req: (
            Reply(404) if req.method == "HEAD"
            else Reply(307, {"Location": f"http://{other.host}/steal"}) if req.body
            else Reply(202, {"Location": "/v2/a/blobs/uploads/1"}) if req.method == "POST"
            else Reply(200, {"Content-Type": "application/json"}, b"{}")
        )
    ) as srv:  # fmt: skip
        src = tmp_path / "blob"
        src.write_bytes(BLOB)
        out = run_dist("push-object", f"{srv.host}/a", str(src))
        assert out.returncode == 1, out.stderr.decode()
        assert "another origin" in one_error_line(out)
        assert all(BLOB not in r.body for r in other.requests())
        assert not [r for r in other.requests() if r.method in ("POST", "PUT", "PATCH")]


def _evil_challenger(holder: list[RecordingServer]) -> Callable[[Recorded], Reply]:
    """A redirect target (a CDN, an object store) that answers 401 with a
    challenge naming its own token realm."""

    def answer(req: Recorded) -> Reply:
        if req.path.startswith("/token"):
            return Reply(200, {"Content-Type": "application/json"}, b'{"token":"evil"}')
        realm = f"http://{holder[0].host}/token"
        return Reply(401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="evil"'})

    return answer


def test_a_redirect_targets_challenge_gets_no_credentials(tmp_path: Path) -> None:
    """A blob GET redirected to another origin that answers 401 with its own
    Bearer realm: the registry's password was POSTed to that realm (the
    challenge was taken as the registry's, remembered for its origin, and
    answered with the registry's credentials)."""
    holder: list[RecordingServer] = []
    with RecordingServer("127.0.0.2", responder=_evil_challenger(holder)) as other:
        holder.append(other)

        def registry(req: Recorded) -> Reply:
            if req.header("Authorization") != BASIC:
                return Reply(401, {"WWW-Authenticate": 'Basic realm="r"'})
            if "/blobs/" in req.path:
                return Reply(307, {"Location": f"http://{other.host}/cdn/{DIGEST}?sig=1"})
            return Reply(200, {"Content-Type": "application/json"}, b"{}")

        with RecordingServer(responder=registry) as srv:
            out = run_dist("-u", f"{USER}:{PASSWORD}", "--timeout", "30s", "fetch-object",
                           f"{srv.host}/a:v1", DIGEST)  # fmt: skip
            # The challenge was not answered with the registry's credentials.
            assert other.requests(), "the redirect was not followed"
            assert all(not _secrets_in(r) for r in other.requests())
            assert not [r for r in other.requests() if r.path.startswith("/token")]
            line = one_error_line(out)
            assert out.returncode == 1
            assert "unauthorized" in line and str(other.host) in line, line
            # Nor did it become the registry's challenge for later requests.
            assert all(r.header("Authorization") in (None, BASIC) for r in srv.requests())


def test_an_upload_location_on_another_origin_gets_no_credentials(tmp_path: Path) -> None:
    """A registry may hand out an absolute upload Location on another host
    (a storage front end): the PATCH/PUT go there, with the blob (the
    registry chose where its upload goes) but without the registry's
    Authorization."""
    blob = b"u" * (5 << 20)  # over the monolithic maximum: PATCH, then PUT
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()

    held = [0]

    def storage(req: Recorded) -> Reply:
        held[0] += len(req.body)
        if req.method == "PATCH":
            return Reply(202, {"Location": req.path, "Range": f"0-{held[0] - 1}"})
        return Reply(201, {"Docker-Content-Digest": digest})

    with RecordingServer("127.0.0.2", responder=storage) as other:

        def registry(req: Recorded) -> Reply:
            if req.header("Authorization") != BASIC:
                return Reply(401, {"WWW-Authenticate": 'Basic realm="r"'})
            if req.method == "HEAD":
                return Reply(404)
            if req.method == "POST":
                return Reply(202, {"Location": f"http://{other.host}/upload/1?_state=x"})
            return Reply(200, {"Content-Type": "application/json"}, b"{}")

        with RecordingServer(responder=registry) as srv:
            src = tmp_path / "blob"
            src.write_bytes(blob)
            out = run_dist("-u", f"{USER}:{PASSWORD}", "push-object", f"{srv.host}/a", str(src))
            assert out.returncode == 0, out.stderr.decode()
            sent = other.requests()
            assert {r.method for r in sent} >= {"PATCH", "PUT"}, sent
            assert all(not _secrets_in(r) and r.header("Authorization") is None for r in sent)
            assert any(r.header("Authorization") == BASIC for r in srv.requests())
