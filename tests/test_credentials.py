"""Docker config.json and credential helpers, with real helper programs on PATH."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from ocidist.errors import CredentialError
from ocidist.remotes.docker import credentials as creds
from ocidist.remotes.docker.auth import Credential
from tests.harness.authfixtures import docker_config, install_helper

__all__ = ["docker_config"]


def write_config(d: Path, obj: dict[str, object]) -> None:
    (d / "config.json").write_text(json.dumps(obj))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_auths_entries_basic_identity_token_and_hub_key(docker_config: Path) -> None:
    write_config(
        docker_config,
        {
            "auths": {
                "reg.example:5000": {"auth": b64("bob:pa:ss")},
                "https://old.example/v1/": {"auth": b64("carol:pw")},
                "tok.example": {"auth": b64("dave:"), "identitytoken": "id-token-1"},
                creds.DOCKER_HUB_KEY: {"auth": b64("hubuser:hubpw")},
            }
        },
    )
    assert creds.lookup("reg.example:5000") == Credential("bob", "pa:ss")
    assert creds.lookup("old.example") == Credential("carol", "pw")
    assert creds.lookup("tok.example") == Credential("dave", identity_token="id-token-1")
    for hub in ("docker.io", "registry-1.docker.io", "index.docker.io"):
        assert creds.lookup(hub) == Credential("hubuser", "hubpw")
    assert creds.lookup("nothing.example") is None


def test_missing_config_is_no_credentials(docker_config: Path) -> None:
    assert creds.lookup("reg.example") is None


def test_broken_config_error_does_not_quote_it(docker_config: Path) -> None:
    (docker_config / "config.json").write_text('{"auths": {"r": {"auth": "c2VjcmV0LXh5eg=="')
    with pytest.raises(CredentialError) as ei:
        creds.lookup("r")
    assert "c2VjcmV0" not in str(ei.value)


@pytest.mark.parametrize("value", ["é", "not base64!", b64("no-colon"), "gA=="])
def test_bad_auth_value_is_one_clear_error(docker_config: Path, value: str) -> None:
    """A non-ASCII ``auth`` raised a bare ValueError (a traceback from `dist`)."""
    write_config(docker_config, {"auths": {"r.example": {"auth": value}}})
    with pytest.raises(CredentialError, match=r"config.json: bad 'auth' value for r\.example"):
        creds.lookup("r.example")


def test_cred_helpers_beat_creds_store_beat_auths(
    docker_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    per_host = install_helper(tmp_path / "bin", "perhost", monkeypatch)
    per_host.write_text(json.dumps({"a.example": {"Username": "ann", "Secret": "s-a"}}))
    global_store = install_helper(tmp_path / "bin", "global", monkeypatch)
    global_store.write_text(
        json.dumps({"b.example": {"Username": "<token>", "Secret": "identity-b"}})
    )
    write_config(
        docker_config,
        {
            "credsStore": "global",
            "credHelpers": {"a.example": "perhost"},
            "auths": {"c.example": {"auth": b64("cid:cpw")}},
        },
    )
    assert creds.lookup("a.example") == Credential("ann", "s-a")
    assert creds.lookup("b.example") == Credential(identity_token="identity-b")
    # Not in the store: the file's own entry still counts.
    assert creds.lookup("c.example") == Credential("cid", "cpw")
    assert creds.lookup("d.example") is None


def test_missing_helper_is_a_clear_error(docker_config: Path) -> None:
    write_config(docker_config, {"credsStore": "does-not-exist-here"})
    with pytest.raises(CredentialError, match="docker-credential-does-not-exist-here not found"):
        creds.lookup("a.example")


def test_store_and_erase_keep_other_keys_and_mode(docker_config: Path) -> None:
    write_config(docker_config, {"auths": {"x.example": {"auth": b64("x:y")}}, "psFormat": "t"})
    creds.store("docker.io", Credential("hub", "hubpw"))
    creds.store("reg.example:5000", Credential("u", "p"))
    cfg = json.loads((docker_config / "config.json").read_text())
    assert cfg["psFormat"] == "t"
    assert cfg["auths"][creds.DOCKER_HUB_KEY] == {"auth": b64("hub:hubpw")}
    assert cfg["auths"]["reg.example:5000"] == {"auth": b64("u:p")}
    assert cfg["auths"]["x.example"] == {"auth": b64("x:y")}
    assert stat.S_IMODE((docker_config / "config.json").stat().st_mode) == 0o600
    assert creds.erase("registry-1.docker.io")
    assert not creds.erase("registry-1.docker.io")
    assert creds.lookup("docker.io") is None
    assert creds.lookup("reg.example:5000") == Credential("u", "p")


def test_store_goes_to_the_helper_when_one_is_configured(
    docker_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = install_helper(tmp_path / "bin", "vault", monkeypatch)
    write_config(docker_config, {"credsStore": "vault"})
    creds.store("reg.example", Credential("u", "helper-secret"))
    assert "helper-secret" not in (docker_config / "config.json").read_text()
    assert json.loads(store.read_text())["reg.example"]["Secret"] == "helper-secret"
    assert creds.lookup("reg.example") == Credential("u", "helper-secret")
    assert creds.erase("reg.example")
    assert creds.lookup("reg.example") is None


def test_parse_user() -> None:
    assert creds.parse_user("a") == ("a", None)
    assert creds.parse_user("a:b:c") == ("a", "b:c")
    assert creds.parse_user("a:") == ("a", "")


DEEP = "[" * 100_000 + "]" * 100_000  # past the interpreter's recursion limit


def test_deeply_nested_config_is_one_clear_error(docker_config: Path) -> None:
    """json raised RecursionError (a traceback in dist) for a nested file."""
    (docker_config / "config.json").write_text(DEEP)
    with pytest.raises(CredentialError, match="cannot read Docker config"):
        creds.lookup("r.example")


def test_deeply_nested_helper_answer_is_one_clear_error(
    docker_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-deep"
    (bindir / "deep.json").write_text(DEEP)
    helper.write_text(f"#!/bin/sh\ncat {bindir / 'deep.json'}\n")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    write_config(docker_config, {"credHelpers": {"r.example": "deep"}})
    with pytest.raises(CredentialError, match="bad answer"):
        creds.lookup("r.example")
