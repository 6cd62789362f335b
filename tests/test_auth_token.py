"""Token auth against a real registry process and the test token server.

The registry (``auth.token``) trusts ES256 JWTs carrying an ``x5c`` chain to
the test CA; ``public/…`` repositories may be pulled anonymously, the rest
need credentials. Token requests are counted at the token server.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocidist.digest import Digest
from ocidist.errors import Unauthorized
from ocidist.remotes.docker import credentials as creds
from ocidist.remotes.docker.auth import Credential
from ocidist.remotes.docker.resolver import DockerResolver, ResolverOptions
from tests.dist_cli import one_error_line, run_dist
from tests.harness import BuiltImage, push_image, simple_image
from tests.harness.authfixtures import (
    TokenEnv,
    docker_config,
    install_helper,
    pki,
    token_env,
)

__all__ = ["docker_config", "pki", "token_env"]


@pytest.fixture(scope="module")
def images(token_env: TokenEnv) -> dict[str, BuiltImage]:
    """One public and one private image, pushed with credentials by skopeo."""
    out = {"public/auth/app": simple_image(tag="pub"), "private/auth/app": simple_image(tag="prv")}
    for repo, img in out.items():
        push_image(token_env.registry, repo, "v1", img, creds=token_env.creds)
    return out


@pytest.fixture
def env(token_env: TokenEnv, images: dict[str, BuiltImage], docker_config: Path) -> TokenEnv:
    return token_env


def ref(env: TokenEnv, repo: str) -> str:
    return f"{env.registry.host}/{repo}:v1"


@pytest.fixture
def knobs(token_env: TokenEnv) -> Iterator[None]:
    """Tests that turn token-server knobs get them reset afterwards."""
    yield
    ts = token_env.tokens
    ts.expires_in, ts.stale_next, ts.allow_post = 300, 0, True


def resolver(cred: Credential | None = None) -> DockerResolver:
    return DockerResolver(
        ResolverOptions(credentials=creds.static(cred) if cred else creds.from_docker_config())
    )


def test_anonymous_resolve_and_fetch_object_on_public_repo(
    env: TokenEnv, images: dict[str, BuiltImage]
) -> None:
    img = images["public/auth/app"]
    r = ref(env, "public/auth/app")
    before = env.tokens.count(grant="anonymous")
    proc = run_dist("resolve", "--json", r)
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout)["digest"] == img.digest
    proc = run_dist("fetch-object", r, img.digest)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == img.raw
    assert env.tokens.count(grant="anonymous") > before


def test_second_fetch_of_same_scope_makes_no_token_request(
    env: TokenEnv, images: dict[str, BuiltImage]
) -> None:
    img = images["public/auth/app"]
    r = ref(env, "public/auth/app")
    before = env.tokens.count()
    res = resolver()
    try:
        _, desc = res.resolve(r)
        assert env.tokens.count() == before + 1
        assert res.fetcher(r).fetch(desc).read() == img.raw
        assert img.config is not None
        cfg = res.describe(r, Digest.parse(img.config.digest))
        assert res.fetcher(r).fetch(cfg).read() == img.config.read()
        res.resolve(r)
    finally:
        res.close()
    assert env.tokens.count() == before + 1
    assert res.tokens.requests == 1


def test_private_repo_denied_without_credentials(env: TokenEnv) -> None:
    proc = run_dist("resolve", ref(env, "private/auth/app"))
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "unauthorized" in line or "denied" in line, line


@pytest.mark.parametrize("how", ["flag", "flag+stdin", "config-auths", "identity-token", "helper"])
def test_private_repo_allowed_with_credentials_from_each_source(
    env: TokenEnv,
    images: dict[str, BuiltImage],
    docker_config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    host = env.registry.host
    args: list[str] = []
    stdin = None
    if how == "flag":
        args = ["--user", env.creds]
    elif how == "flag+stdin":
        args, stdin = ["-u", env.user, "--password-stdin"], (env.password + "\n").encode()
    elif how == "config-auths":
        creds.store(host, Credential(env.user, env.password))
    elif how == "identity-token":
        rt = env.tokens.issue_refresh_token(env.user)
        (docker_config / "config.json").write_text(
            json.dumps({"auths": {host: {"identitytoken": rt}}})
        )
    else:
        store = install_helper(tmp_path / "bin", "testhelper", monkeypatch)
        store.write_text(json.dumps({host: {"Username": env.user, "Secret": env.password}}))
        (docker_config / "config.json").write_text(
            json.dumps({"credHelpers": {host: "testhelper"}})
        )
    grants_before = env.tokens.count(grant="refresh_token")
    proc = run_dist(*args, "resolve", "--json", ref(env, "private/auth/app"), input=stdin)
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout)["digest"] == images["private/auth/app"].digest
    if how == "identity-token":
        assert env.tokens.count(grant="refresh_token") == grants_before + 1


def test_wrong_password_rejected_in_words(env: TokenEnv) -> None:
    wrong = "wrong-" + env.password
    proc = run_dist(
        "--debug", "--user", f"{env.user}:{wrong}", "resolve", ref(env, "private/auth/app")
    )
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert "unauthorized" in err
    assert wrong not in err and wrong not in proc.stdout.decode()


def test_debug_output_contains_no_secret(env: TokenEnv, caplog: pytest.LogCaptureFixture) -> None:
    proc = run_dist("--debug", "--user", env.creds, "resolve", ref(env, "private/auth/app"))
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode() + proc.stderr.decode()
    assert env.password not in out
    # And the library's own logs (urllib3 included) at DEBUG within one process.
    issued_before = len(env.tokens.issued)
    caplog.set_level(logging.DEBUG)
    res = resolver(Credential(env.user, env.password))
    try:
        res.resolve(ref(env, "private/auth/app"))
    finally:
        res.close()
    tokens = env.tokens.issued[issued_before:]
    assert tokens and caplog.records
    text = caplog.text
    assert env.password not in text
    assert not [t for t in tokens if t in text or t.split(".")[2] in text]


def test_rejected_token_is_refreshed_once(env: TokenEnv, knobs: None) -> None:
    res = resolver(Credential(env.user, env.password))
    try:
        res.resolve(ref(env, "public/auth/app"))  # learns the challenge
        env.tokens.stale_next = 1
        before = env.tokens.count()
        # The token fetched up front is already dead at the registry: the
        # 401 drops it, and one fresh token makes the retry pass.
        res.resolve(ref(env, "private/auth/app"))
        assert env.tokens.count() == before + 2
        env.tokens.stale_next = 2
        with pytest.raises(Unauthorized, match="unauthorized"):
            res.resolve(ref(env, "private/auth/other"))  # a new scope: new tokens, both dead
    finally:
        res.close()


def test_token_past_expires_in_is_fetched_again(env: TokenEnv, knobs: None) -> None:
    env.tokens.expires_in = 2  # fresh for 1.5 s after a quarter of slack
    r = ref(env, "public/auth/app")
    before = env.tokens.count()
    res = resolver()
    try:
        res.resolve(r)
        res.resolve(r)
        assert env.tokens.count() == before + 1
        time.sleep(1.7)
        res.resolve(r)
        assert env.tokens.count() == before + 2
    finally:
        res.close()


def test_get_with_basic_when_post_is_refused(env: TokenEnv, knobs: None) -> None:
    env.tokens.allow_post = False
    post_404 = env.tokens.count(method="POST", status=404)
    basic = env.tokens.count(method="GET", grant="basic", status=200)
    res = resolver(Credential(env.user, env.password))
    try:
        res.resolve(ref(env, "private/auth/app"))
    finally:
        res.close()
    assert env.tokens.count(method="POST", status=404) == post_404 + 1
    assert env.tokens.count(method="GET", grant="basic", status=200) == basic + 1


def test_library_error_after_refused_credentials_says_unauthorized(env: TokenEnv) -> None:
    res = resolver(Credential(env.user, "not-the-password"))
    try:
        with pytest.raises(Unauthorized, match="unauthorized") as ei:
            res.resolve(ref(env, "private/auth/app"))
    finally:
        res.close()
    assert "not-the-password" not in str(ei.value)
