"""`dist login` / `dist logout` write Docker's config.json, which skopeo reads."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.dist_cli import one_error_line, run_dist
from tests.harness import BuiltImage, push_image, run_skopeo, simple_image
from tests.harness.authfixtures import (
    TLSEnv,
    TokenEnv,
    docker_config,
    install_helper,
    pki,
    tls_env,
    token_env,
)

__all__ = ["docker_config", "pki", "tls_env", "token_env"]


@pytest.fixture(scope="module")
def private_image(token_env: TokenEnv) -> BuiltImage:
    img = simple_image(tag="login")
    push_image(token_env.registry, "private/login/app", "v1", img, creds=token_env.creds)
    return img


def config(d: Path) -> dict[str, object]:
    return dict(json.loads((d / "config.json").read_text()))


def test_login_then_pull_then_logout_token_registry(
    token_env: TokenEnv, private_image: BuiltImage, docker_config: Path
) -> None:
    host = token_env.registry.host
    ref = f"{host}/private/login/app:v1"
    proc = run_dist(
        "login", host, "-u", token_env.user, "--password-stdin",
        input=token_env.password.encode() + b"\n",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"Login Succeeded" in proc.stdout
    auth = config(docker_config)["auths"][host]["auth"]  # type: ignore[index]
    assert base64.b64decode(auth).decode() == token_env.creds
    # Another tool reads the same file.
    raw = run_skopeo(
        "inspect", "--raw", "--tls-verify=false", "--authfile",
        str(docker_config / "config.json"), f"docker://{ref}",
    ).stdout  # fmt: skip
    assert raw == private_image.raw
    proc = run_dist("resolve", "--json", ref)
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout)["digest"] == private_image.digest

    proc = run_dist("logout", host)
    assert proc.returncode == 0 and b"Removing login credentials" in proc.stdout
    assert host not in config(docker_config)["auths"]  # type: ignore[operator]
    assert b"Not logged in" in run_dist("logout", host).stdout
    proc = run_dist("resolve", ref)
    assert proc.returncode == 1 and "unauthorized" in one_error_line(proc)


def test_login_with_wrong_password_stores_nothing(token_env: TokenEnv, docker_config: Path) -> None:
    wrong = "wrong-" + token_env.password
    proc = run_dist("--debug", "login", token_env.registry.host, "-u", f"{token_env.user}:{wrong}")
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert "unauthorized" in err
    assert wrong not in err + proc.stdout.decode()
    assert not (docker_config / "config.json").exists()


def test_login_over_tls_with_hosts_ca_and_basic_auth(
    tls_env: TLSEnv, docker_config: Path, tmp_path: Path
) -> None:
    host = tls_env.registry.host
    d = tmp_path / "certs.d" / host
    d.mkdir(parents=True)
    (d / "hosts.toml").write_text(f'server = "https://{host}"\nca = "{tls_env.ca.cert_path}"\n')
    args = ("--hosts-dir", str(tmp_path / "certs.d"), "login", host, "-u", tls_env.user)
    proc = run_dist(*args, "-p", "wrong-" + tls_env.password)
    assert proc.returncode == 1 and "unauthorized" in proc.stderr.decode()
    proc = run_dist(*args, "-p", tls_env.password)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"insecure" in proc.stderr  # the -p warning
    assert host in config(docker_config)["auths"]  # type: ignore[operator]


def test_login_stores_into_the_configured_helper(
    token_env: TokenEnv,
    docker_config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = install_helper(tmp_path / "bin", "logintest", monkeypatch)
    (docker_config / "config.json").write_text(json.dumps({"credsStore": "logintest"}))
    host = token_env.registry.host
    proc = run_dist("login", host, "-u", token_env.creds)
    assert proc.returncode == 0, proc.stderr.decode()
    assert token_env.password not in (docker_config / "config.json").read_text()
    assert json.loads(store.read_text())[host]["Secret"] == token_env.password


def test_login_needs_a_user_when_not_on_a_terminal(docker_config: Path) -> None:
    proc = run_dist("login", "127.0.0.1:1", "--password-stdin", input=b"x\n")
    assert proc.returncode == 2
    assert "--user" in one_error_line(proc)


def test_docker_hub_names_share_the_legacy_key(docker_config: Path) -> None:
    (docker_config / "config.json").write_text(
        json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": "eDp5"}}})
    )
    proc = run_dist("logout", "registry-1.docker.io")
    assert proc.returncode == 0 and b"docker.io" in proc.stdout
    assert config(docker_config)["auths"] == {}
