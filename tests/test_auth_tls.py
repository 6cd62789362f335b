"""htpasswd + TLS registry with a CA the tests generate: trusted through the
hosts file's ``ca``, rejected without it, accepted with ``--insecure``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.dist_cli import one_error_line, run_dist
from tests.harness import BuiltImage, push_image, simple_image
from tests.harness.authfixtures import TLSEnv, docker_config, pki, tls_env

__all__ = ["docker_config", "pki", "tls_env"]

REPO = "tls/app"


@pytest.fixture(scope="module")
def image(tls_env: TLSEnv) -> BuiltImage:
    img = simple_image(tag="tls")
    push_image(tls_env.registry, REPO, "v1", img, creds=tls_env.creds)
    return img


def hosts_dir(tmp_path: Path, env: TLSEnv, *, with_ca: bool) -> str:
    """``certs.d/<host>/hosts.toml`` naming the CA by a relative path."""
    d = tmp_path / "certs.d" / env.registry.host
    d.mkdir(parents=True)
    text = f'server = "https://{env.registry.host}"\n'
    if with_ca:
        shutil.copy(env.ca.cert_path, d / "test-ca.pem")
        text += 'ca = "test-ca.pem"\n'
    (d / "hosts.toml").write_text(text)
    return str(tmp_path / "certs.d")


def resolve(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    proc = run_dist(*args, input=stdin)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def test_trusted_through_hosts_ca_with_user(
    tls_env: TLSEnv, image: BuiltImage, tmp_path: Path, docker_config: Path
) -> None:
    d = hosts_dir(tmp_path, tls_env, with_ca=True)
    ref = f"{tls_env.registry.host}/{REPO}:v1"
    rc, out, err = resolve("--hosts-dir", d, "--user", tls_env.creds, "resolve", "--json", ref)
    assert rc == 0, err
    assert json.loads(out)["digest"] == image.digest
    rc, out, err = resolve(
        "--hosts-dir", d, "--debug", "-u", tls_env.user, "--password-stdin",
        "fetch-object", ref, image.digest, stdin=tls_env.password.encode() + b"\n",
    )  # fmt: skip
    assert rc == 0, err
    assert tls_env.password not in out + err


def test_rejected_without_the_ca(tls_env: TLSEnv, image: BuiltImage, tmp_path: Path) -> None:
    d = hosts_dir(tmp_path, tls_env, with_ca=False)
    proc = run_dist(
        "--hosts-dir", d, "--user", tls_env.creds, "resolve", f"{tls_env.registry.host}/{REPO}:v1"
    )
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "TLS certificate verification failed" in line, line
    assert "local issuer" in line and "gave up" not in line, line  # the reason, at once
    assert tls_env.password not in line


def test_accepted_with_insecure(tls_env: TLSEnv, image: BuiltImage, tmp_path: Path) -> None:
    d = hosts_dir(tmp_path, tls_env, with_ca=False)
    rc, out, err = resolve(
        "--hosts-dir", d, "--insecure", "--user", tls_env.creds, "resolve", "--json",
        f"{tls_env.registry.host}/{REPO}:v1",
    )  # fmt: skip
    assert rc == 0, err
    assert json.loads(out)["digest"] == image.digest


def test_basic_auth_without_or_with_wrong_credentials_is_unauthorized(
    tls_env: TLSEnv, image: BuiltImage, tmp_path: Path, docker_config: Path
) -> None:
    d = hosts_dir(tmp_path, tls_env, with_ca=True)
    ref = f"{tls_env.registry.host}/{REPO}:v1"
    proc = run_dist("--hosts-dir", d, "resolve", ref)
    assert proc.returncode == 1
    assert "unauthorized" in one_error_line(proc)
    wrong = "wrong-" + tls_env.password
    proc = run_dist(
        "--hosts-dir", d, "--debug", "--user", f"{tls_env.user}:{wrong}", "resolve", ref
    )
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert "unauthorized" in err
    assert wrong not in err


def test_tls_registry_on_loopback_without_hosts_file_says_https(
    tls_env: TLSEnv, image: BuiltImage
) -> None:
    # Loopback means plain HTTP by default; a TLS registry there answers 400.
    proc = run_dist("resolve", f"{tls_env.registry.host}/{REPO}:v1")
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "speaks HTTPS" in line and "hosts.toml" in line, line
