"""podman/skopeo's auth.json (containers-auth.json(5)): read after Docker's
config.json, from the same places the containers tools look; `dist login
--authfile` writes one that skopeo reads."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest

from ocidist.remotes.docker import authfile
from ocidist.remotes.docker.auth import Credential
from ocidist.remotes.docker.credentials import store as docker_store
from tests.dist_cli import json_doc, one_error_line, run_dist
from tests.harness import BuiltImage, push_image, run_skopeo, simple_image
from tests.harness.authfixtures import TokenEnv, docker_config, pki, token_env

__all__ = ["docker_config", "pki", "token_env"]


def write_auth(path: Path, auths: dict[str, str]) -> None:
    """``auths`` maps key -> "user:password"."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"auths": {k: {"auth": base64.b64encode(v.encode()).decode()} for k, v in auths.items()}}
    path.write_text(json.dumps(doc))


def test_paths_follow_the_containers_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert authfile.paths() == [
        str(tmp_path / "run/containers/auth.json"),
        str(tmp_path / "cfg/containers/auth.json"),
    ]
    # An explicit file is the only one (containers/image#1751, podman 4.4).
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "mine.json"))
    assert authfile.paths() == [str(tmp_path / "mine.json")]
    monkeypatch.setenv("REGISTRY_AUTH_FILE", "")  # empty is unset, as Go's Getenv
    assert len(authfile.paths()) == 2
    monkeypatch.delenv("REGISTRY_AUTH_FILE")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert authfile.paths()[0] == f"/run/containers/{os.getuid()}/auth.json"


def test_keys_as_podman_files_them(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    write_auth(
        path,
        {
            "docker.io": "hub:a",
            "quay.io/team/app": "scoped:b",  # a namespace: not the whole host
            "https://legacy.example:5000/v1/": "old:c",
            "plain.example": "plain:d",
        },
    )
    get = authfile.from_auth_files([str(path)])
    for hub in ("docker.io", "registry-1.docker.io", "index.docker.io"):
        assert get(hub) == Credential(username="hub", secret="a"), hub
    assert get("quay.io") is None
    assert get("legacy.example:5000") == Credential(username="old", secret="c")
    assert get("plain.example") == Credential(username="plain", secret="d")
    assert get("plain.example:5000") is None


def test_read_after_docker_config_first_file_first(
    tmp_path: Path, docker_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ocidist.cli.context import Context
    from ocidist.cli.main import parse

    docker_store("both.example", Credential(username="docker", secret="1"))
    primary = tmp_path / "xdg-runtime/containers/auth.json"
    write_auth(primary, {"both.example": "podman:2", "podman.example": "podman:3"})
    write_auth(
        tmp_path / "xdg-config/containers/auth.json",
        {"podman.example": "second:4", "second.example": "second:5"},
    )
    get = Context(parse(["images", "ls"])).credentials()
    assert get("both.example") == Credential(username="docker", secret="1")
    assert get("podman.example") == Credential(username="podman", secret="3")
    assert get("second.example") == Credential(username="second", secret="5")
    assert get("nobody.example") is None


@pytest.fixture(scope="module")
def private_image(token_env: TokenEnv) -> BuiltImage:
    img = simple_image(tag="authfile")
    push_image(token_env.registry, "private/authfile/app", "v1", img, creds=token_env.creds)
    return img


def test_skopeo_login_is_enough_for_dist(
    token_env: TokenEnv, private_image: BuiltImage, docker_config: Path, tmp_path: Path
) -> None:
    """skopeo login (no --authfile) writes $XDG_RUNTIME_DIR/containers/auth.json;
    dist pulls with it. With REGISTRY_AUTH_FILE, that file."""
    host = token_env.registry.host
    ref = f"{host}/private/authfile/app:v1"
    proc = run_dist("resolve", ref)
    assert proc.returncode == 1 and "unauthorized" in one_error_line(proc)
    (tmp_path / "xdg-runtime").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_CONFIG"}
    login = subprocess.run(
        ["skopeo", "login", "--tls-verify=false", "-u", token_env.user, "--password-stdin", host],
        input=token_env.password.encode(), capture_output=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert login.returncode == 0, login.stderr.decode()
    assert (tmp_path / "xdg-runtime/containers/auth.json").exists()
    proc = run_dist("--json", "--root", str(tmp_path / "root"), "pull", ref)
    assert proc.returncode == 0, proc.stderr.decode()
    assert json_doc(proc.stdout)["digest"] == private_image.digest

    moved = tmp_path / "elsewhere.json"
    (tmp_path / "xdg-runtime/containers/auth.json").rename(moved)
    assert run_dist("resolve", ref).returncode == 1
    proc = run_dist("resolve", ref, env={"REGISTRY_AUTH_FILE": str(moved)})
    assert proc.returncode == 0, proc.stderr.decode()


def test_dist_login_authfile_is_read_by_skopeo(
    token_env: TokenEnv, private_image: BuiltImage, docker_config: Path, tmp_path: Path
) -> None:
    host = token_env.registry.host
    ref = f"{host}/private/authfile/app:v1"
    path = tmp_path / "podman-auth.json"
    proc = run_dist(
        "--json", "login", host, "-u", token_env.user, "--password-stdin", "--authfile", str(path),
        input=token_env.password.encode() + b"\n",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    assert json_doc(proc.stdout) == {"registry": host, "stored": str(path)}
    assert path.stat().st_mode & 0o777 == 0o600
    assert not (docker_config / "config.json").exists()  # not Docker's file
    raw = run_skopeo(
        "inspect", "--raw", "--tls-verify=false", "--authfile", str(path), f"docker://{ref}"
    ).stdout
    assert raw == private_image.raw
    proc = run_dist("logout", host, "--authfile", str(path))
    assert proc.returncode == 0 and b"Removing login credentials" in proc.stdout
    assert json.loads(path.read_text())["auths"] == {}


def test_registry_auth_file_is_the_only_file_read(
    token_env: TokenEnv, private_image: BuiltImage, docker_config: Path, tmp_path: Path
) -> None:
    """With $REGISTRY_AUTH_FILE set, podman (4.4 on) and skopeo (1.11 on) read
    that file and no other: a job pointing it at its own logins gets those,
    never the home directory's (which would win or fill in otherwise)."""
    host = token_env.registry.host
    ref = f"{host}/private/authfile/app:v1"
    good, wrong = token_env.creds, f"{token_env.user}:not-the-password"
    write_auth(tmp_path / "xdg-config/containers/auth.json", {host: good})
    write_auth(docker_config / "config.json", {host: good})
    assert run_dist("resolve", ref).returncode == 0  # the home files work
    job = tmp_path / "job-auth.json"
    write_auth(job, {"other.example": "x:y"})
    only_job = {"REGISTRY_AUTH_FILE": str(job)}
    proc = run_dist("resolve", ref, env=only_job)
    assert proc.returncode == 1, "fell back to a file other than REGISTRY_AUTH_FILE"
    assert "unauthorized" in one_error_line(proc)

    # Its entry is used even where Docker's config.json holds another.
    write_auth(docker_config / "config.json", {host: wrong})
    write_auth(job, {host: good})
    proc = run_dist("--json", "resolve", ref, env=only_job)
    assert proc.returncode == 0, proc.stderr.decode()
    assert json_doc(proc.stdout)["digest"] == private_image.digest

    # dist login and logout write the file dist reads: that one.
    fresh = tmp_path / "fresh-auth.json"
    before = (docker_config / "config.json").read_text()
    proc = run_dist(
        "--json", "login", host, "-u", token_env.user, "--password-stdin",
        input=token_env.password.encode() + b"\n", env={"REGISTRY_AUTH_FILE": str(fresh)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    assert json_doc(proc.stdout) == {"registry": host, "stored": str(fresh)}
    assert (docker_config / "config.json").read_text() == before
    assert run_dist("resolve", ref, env={"REGISTRY_AUTH_FILE": str(fresh)}).returncode == 0
    proc = run_dist("logout", host, env={"REGISTRY_AUTH_FILE": str(fresh)})
    assert proc.returncode == 0 and b"Removing login credentials" in proc.stdout
    assert json.loads(fresh.read_text())["auths"] == {}
