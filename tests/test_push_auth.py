"""Push, mount and delete scopes against the token-auth registry.

The token server records the scopes of every token it issues; the registry
itself enforces them (a token without push on the target, or without pull on
a mount source, gets 401 insufficient_scope).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dist_cli import one_error_line, run_dist
from tests.harness import BuiltImage, inspect_raw, push_image, simple_image
from tests.harness.authfixtures import TokenEnv, docker_config, pki, token_env

__all__ = ["docker_config", "pki", "token_env"]

SRC = "private/push/src"


@pytest.fixture(scope="module")
def image(token_env: TokenEnv) -> BuiltImage:
    img = simple_image(tag="push-auth")
    push_image(token_env.registry, SRC, "v1", img, creds=token_env.creds)
    return img


@pytest.fixture
def env(token_env: TokenEnv, image: BuiltImage, docker_config: Path) -> TokenEnv:
    return token_env


def granted(env: TokenEnv, since: int) -> set[str]:
    return {s for r in env.tokens.log[since:] if r.status == 200 for s in r.scopes}


def test_push_and_mount_scopes(env: TokenEnv, image: BuiltImage, tmp_path: Path) -> None:
    host = env.registry.host
    root = tmp_path / "root"
    user = ("--user", env.creds)
    out = run_dist("--root", str(root), *user, "pull", f"{host}/{SRC}:v1")
    assert out.returncode == 0, out.stderr.decode()

    # Same registry, another repository: mounted, with pull on the source.
    before = len(env.tokens.log)
    out = run_dist("--root", str(root), *user, "push", f"{host}/{SRC}:v1",
                   f"{host}/private/push/mounted:v1")  # fmt: skip
    assert out.returncode == 0, out.stderr.decode()
    scopes = granted(env, before)
    assert "repository:private/push/mounted:pull,push" in scopes
    assert f"repository:{SRC}:pull" in scopes
    mounts = [
        e for e in env.registry.access_log()
        if e.method == "POST" and "mount=" in e.uri and "private/push/mounted" in e.path
    ]  # fmt: skip
    assert {e.status for e in mounts} == {201} and len(mounts) == len(image.blobs())
    assert inspect_raw(env.registry, "private/push/mounted:v1", creds=env.creds) == image.raw

    # A plain upload (the store's labels name no source for push-object).
    data = b"uploaded with a push token\n"
    out = run_dist(*user, "push-object", f"{host}/private/push/objects", input=data)
    assert out.returncode == 0, out.stderr.decode()
    got = run_dist(
        *user, "fetch-object", f"{host}/private/push/objects", out.stdout.decode().strip()
    )
    assert got.stdout == data

    # Delete needs its own action in the token.
    before = len(env.tokens.log)
    out = run_dist(*user, "rm", f"{host}/private/push/mounted:v1")
    assert out.returncode == 0, out.stderr.decode()
    assert "repository:private/push/mounted:delete" in granted(env, before)


def test_push_without_credentials_is_refused(env: TokenEnv, tmp_path: Path) -> None:
    out = run_dist("push-object", f"{env.registry.host}/private/push/anon", input=b"x")
    assert out.returncode == 1
    assert "unauthorized" in one_error_line(out) or "denied" in one_error_line(out)
    # Anonymous pull of a public repository is fine, pushing to it is not.
    out = run_dist("push-object", f"{env.registry.host}/public/push/anon", input=b"x")
    assert out.returncode == 1
    line = one_error_line(out)
    assert "unauthorized" in line or "denied" in line
