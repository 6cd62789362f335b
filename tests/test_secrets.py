"""Credentials and tokens never leak: not on stdout or stderr (even with
--debug, even on failure), not in any file dist writes (store, metadata,
ingests, unpacked trees, temporary files) — only in the credential store.

Runs real `dist` processes against the token-auth registry (password, bearer
tokens, an identity/refresh token) and the htpasswd+TLS registry (Basic
auth), then greps every byte of output and every file under the test's
directories for each secret, raw and in the encodings a leak would take.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.dist_cli import run_dist
from tests.harness import BuiltImage, push_image, simple_image
from tests.harness.authfixtures import TLSEnv, TokenEnv, pki, tls_env, token_env

__all__ = ["pki", "tls_env", "token_env"]

PRIVATE = "private/secrets/app"


@pytest.fixture(scope="module")
def token_image(token_env: TokenEnv) -> BuiltImage:
    img = simple_image(tag="secrets")
    push_image(token_env.registry, PRIVATE, "v1", img, creds=token_env.creds)
    return img


@pytest.fixture(scope="module")
def tls_image(tls_env: TLSEnv) -> BuiltImage:
    img = simple_image(tag="secrets-tls")
    push_image(tls_env.registry, PRIVATE, "v1", img, creds=tls_env.creds)
    return img


class Sandbox:
    """Every directory dist may write to, under one test directory; the
    credential store is the one file allowed to hold a secret."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.docker_config = base / "docker-config"
        self.root = base / "root"
        self.tmp = base / "tmp"
        for d in (self.docker_config, self.root, self.tmp, base / "xdg-config", base / "home"):
            d.mkdir(parents=True, exist_ok=True)
        self.env = {
            "DOCKER_CONFIG": str(self.docker_config),
            "XDG_CONFIG_HOME": str(base / "xdg-config"),
            "XDG_DATA_HOME": str(base / "xdg-data"),
            "XDG_CACHE_HOME": str(base / "xdg-cache"),
            "HOME": str(base / "home"),
            "TMPDIR": str(self.tmp),
            "DIST_ROOT": str(self.root),
        }
        self.outputs: list[tuple[str, bytes]] = []

    def dist(self, *args: str, input: bytes | None = None, ok: bool = True) -> None:
        proc = run_dist("--debug", *args, input=input, env=self.env)
        self.outputs.append((f"dist {' '.join(args)}: stdout", proc.stdout))
        self.outputs.append((f"dist {' '.join(args)}: stderr", proc.stderr))
        if ok:
            assert proc.returncode == 0, proc.stderr.decode()[-3000:]
        else:
            assert proc.returncode != 0, proc.stdout.decode()

    def files(self) -> Iterable[Path]:
        store = self.docker_config / "config.json"
        for dirpath, _, filenames in os.walk(self.base):
            for name in filenames:
                p = Path(dirpath) / name
                # The credential store and the user's own hosts.toml hold
                # secrets by design; dist writes neither.
                if p != store and name != "hosts.toml" and not p.is_symlink():
                    yield p

    def assert_traced(self, *words: bytes) -> None:
        """`--debug` traced the requests (so the leak check covers the trace),
        with the credentials' schemes shown and their values redacted."""
        err = b"".join(data for what, data in self.outputs if what.endswith("stderr"))
        assert b"dist: debug: > GET " in err and b"dist: debug: < 200 " in err, err[-2000:]
        for w in words:
            assert w in err, (w, err[-2000:])

    def assert_no_leak(self, secrets: Iterable[str]) -> None:
        needles = set()
        for s in secrets:
            assert len(s) >= 8, "a short secret would match by accident"
            needles |= {s.encode(), quote(s, safe="").encode(), base64.b64encode(s.encode())}
        leaks = []
        for what, data in self.outputs:
            leaks += [f"{what}: {n!r}" for n in needles if n in data]
        scanned = 0
        for p in self.files():
            data = p.read_bytes()
            scanned += 1
            leaks += [f"{p.relative_to(self.base)}: {n!r}" for n in needles if n in data]
        assert not leaks, leaks
        assert scanned > 5  # the store, metadata and unpacked files were looked at


def _token_secrets(env: TokenEnv, issued_before: int, extra: Iterable[str] = ()) -> list[str]:
    tokens = env.tokens.issued[issued_before:]
    assert tokens, "no token was issued: the test did not exercise auth"
    out = [env.password, base64.b64encode(env.creds.encode()).decode(), *extra]
    for t in tokens:
        out += [t, t.split(".")[2]]  # the whole JWT and its signature alone
    return out


def test_token_registry_login_pull_unpack_leak_nothing(
    token_env: TokenEnv, token_image: BuiltImage, tmp_path: Path
) -> None:
    box = Sandbox(tmp_path)
    host = token_env.registry.host
    ref = f"{host}/{PRIVATE}:v1"
    issued_before = len(token_env.tokens.issued)
    box.dist("login", host, "-u", token_env.user, "--password-stdin",
             input=token_env.password.encode() + b"\n")  # fmt: skip
    box.dist("resolve", ref)
    box.dist("fetch", ref)
    box.dist("fetch-object", ref, token_image.digest)
    box.dist("unpack", ref, str(tmp_path / "rootfs"))
    box.dist("content", "ls")
    box.dist("images", "ls")
    # Credentials on the command line and on stdin, not from the store.
    box.dist("--user", token_env.creds, "fetch", "--all-platforms", ref)
    box.dist("-u", token_env.user, "--password-stdin", "resolve", ref,
             input=token_env.password.encode() + b"\n")  # fmt: skip
    # Failures print errors: a wrong password must not appear in them either.
    wrong = "wrong-" + token_env.password
    box.dist("--user", f"{token_env.user}:{wrong}", "fetch", ref, ok=False)
    box.dist("login", host, "-u", f"{token_env.user}:{wrong}", ok=False)
    box.dist("logout", host)
    box.assert_traced(b"Authorization: Bearer <redacted>", b"< 401 ")
    box.assert_no_leak([*_token_secrets(token_env, issued_before), wrong])


def test_identity_token_never_leaks(
    token_env: TokenEnv, token_image: BuiltImage, tmp_path: Path
) -> None:
    box = Sandbox(tmp_path)
    host = token_env.registry.host
    refresh = token_env.tokens.issue_refresh_token(token_env.user)
    (box.docker_config / "config.json").write_text(
        json.dumps({"auths": {host: {"identitytoken": refresh}}})
    )
    issued_before = len(token_env.tokens.issued)
    box.dist("fetch", f"{host}/{PRIVATE}:v1")
    box.dist("--timeout", "30s", "fetch-object", f"{host}/{PRIVATE}:v1", token_image.digest)
    box.assert_no_leak(_token_secrets(token_env, issued_before, [refresh]))


def test_basic_auth_over_tls_leaks_nothing(
    tls_env: TLSEnv, tls_image: BuiltImage, tmp_path: Path
) -> None:
    box = Sandbox(tmp_path)
    host = tls_env.registry.host
    ref = f"{host}/{PRIVATE}:v1"
    # Loopback hosts default to plain HTTP; hosts.toml says this one is TLS.
    certs = tmp_path / "xdg-config" / "ocidist" / "certs.d" / host
    certs.mkdir(parents=True)
    # A configured header is a secret too (an API key): redacted in the trace.
    api_key = "api-key-secrets-8d0c2f"
    (certs / "hosts.toml").write_text(
        f'server = "https://{host}"\n[header]\nX-Api-Key = "{api_key}"\n'
    )
    box.dist("--insecure", "login", host, "-u", tls_env.user, "--password-stdin",
             input=tls_env.password.encode() + b"\n")  # fmt: skip
    box.dist("--insecure", "fetch", ref)
    box.dist("--insecure", "unpack", ref, str(tmp_path / "rootfs"))
    box.dist("--insecure", "--user", tls_env.creds, "fetch-object", ref, tls_image.digest)
    wrong = "wrong-" + tls_env.password
    box.dist("--insecure", "--user", f"{tls_env.user}:{wrong}", "fetch-object", ref,
             tls_image.digest, ok=False)  # fmt: skip
    basic = base64.b64encode(tls_env.creds.encode()).decode()
    box.assert_traced(b"Authorization: Basic <redacted>", b"X-Api-Key: <redacted>")
    box.assert_no_leak([tls_env.password, basic, wrong, api_key])
    # The store itself holds them (that is its job), so the grep would find a leak there.
    assert basic.encode() in (box.docker_config / "config.json").read_bytes()
