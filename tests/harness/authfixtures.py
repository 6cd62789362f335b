"""pytest fixtures for the auth/TLS/mirror tests: a token-auth registry with
its token server, an htpasswd+TLS registry, and an isolated Docker config.

Import the fixtures you use into a test module (``from
tests.harness.authfixtures import token_env``); tests/conftest.py stays as is.
Registries here are module-scoped and shared, so each test keeps to its own
repository names (``repo_name``) and counts token requests as differences.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.harness.certs import CA
from tests.harness.registry import REGISTRY_BIN, Registry, TokenAuth
from tests.harness.tokenserver import TokenServer

USER = "alice"


def _require_registry() -> None:
    if shutil.which(REGISTRY_BIN) is None:
        pytest.skip(f"{REGISTRY_BIN} is not installed (run `make deps`)")


def new_password() -> str:
    # Distinctive, so a test can grep any output for it.
    return "pw-" + secrets.token_hex(12)


def bcrypt_hash(password: str) -> str:
    """An htpasswd bcrypt line value; the registry accepts only bcrypt."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # deprecated, but the only bcrypt in the stdlib of 3.11

    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    if not hashed or not hashed.startswith("$2"):
        pytest.skip("libc crypt() has no bcrypt here")
    return hashed


@dataclass
class TokenEnv:
    registry: Registry
    tokens: TokenServer
    ca: CA
    user: str
    password: str = field(repr=False)

    @property
    def creds(self) -> str:
        return f"{self.user}:{self.password}"


@dataclass
class TLSEnv:
    registry: Registry
    ca: CA
    user: str
    password: str = field(repr=False)

    @property
    def creds(self) -> str:
        return f"{self.user}:{self.password}"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> CA:
    return CA(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def token_env(tmp_path_factory: pytest.TempPathFactory, pki: CA) -> Iterator[TokenEnv]:
    """A registry with ``auth.token``, trusting JWTs from our token server."""
    _require_registry()
    password = new_password()
    ts = TokenServer(signer=pki.signer(), users={USER: password}).start()
    auth = TokenAuth(
        realm=ts.realm, service=ts.service, issuer=ts.issuer, rootcertbundle=pki.cert_path
    )
    reg = Registry(tmp_path_factory.mktemp("token-registry"), token=auth)
    try:
        reg.start()
        yield TokenEnv(reg, ts, pki, USER, password)
    finally:
        reg.stop()
        ts.stop()


@pytest.fixture(scope="module")
def tls_env(tmp_path_factory: pytest.TempPathFactory, pki: CA) -> Iterator[TLSEnv]:
    """A registry with htpasswd auth, served over TLS by a cert from ``pki``."""
    _require_registry()
    password = new_password()
    work = tmp_path_factory.mktemp("tls-registry")
    htpasswd = work / "htpasswd"
    htpasswd.write_text(f"{USER}:{bcrypt_hash(password)}\n")
    server = pki.server("registry-tls")
    reg = Registry(work, htpasswd=htpasswd, tls_cert=server.cert_path, tls_key=server.key_path)
    try:
        reg.start()
        yield TLSEnv(reg, pki, USER, password)
    finally:
        reg.stop()


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``$DOCKER_CONFIG`` directory for this test only."""
    d = tmp_path / "docker-config"
    d.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(d))
    # Nor may a developer's own hosts directory change what the test sees.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.delenv("DIST_HOSTS_DIR", raising=False)
    # Nor podman's or skopeo's logins (auth.json is read after config.json).
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg-runtime"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    return d


def install_helper(bindir: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A docker-credential-<name> that keeps its store in a JSON file beside it
    and logs every action, like the real helpers (protocol on stdin/stdout)."""
    bindir.mkdir(exist_ok=True)
    store = bindir / f"{name}.store.json"
    script = bindir / f"docker-credential-{name}"
    script.write_text(
        f"""#!{sys.executable}
import json, sys
action, path = sys.argv[1], {str(store)!r}
data = sys.stdin.read()
try:
    db = json.load(open(path))
except FileNotFoundError:
    db = {{}}
open(path + ".log", "a").write(action + "\\n")
if action == "get":
    key = data.strip()
    if key not in db:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps({{"ServerURL": key, **db[key]}}))
elif action == "store":
    obj = json.loads(data)
    db[obj["ServerURL"]] = {{"Username": obj["Username"], "Secret": obj["Secret"]}}
    json.dump(db, open(path, "w"))
elif action == "erase":
    if db.pop(data.strip(), None) is None:
        print("credentials not found in native keychain")
        sys.exit(1)
    json.dump(db, open(path, "w"))
"""
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return store
