"""Parallel requests that meet a 401 at the same moment, against the real
htpasswd+TLS registry and the real token-auth registry.

Each ``dist`` process starts with no auth state. A copy from an anonymous
registry sends its first requests to the authenticated destination in
parallel (blob checks, at the default concurrency), so they all get a 401
together: every one must end with credentials sent and accepted, whatever
order their challenges and retries interleave in. A push asks about the
image first, then uploads in parallel. 20 runs each of push and copy; one
failure in any run fails the test.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
from pathlib import Path

import pytest

from ocidist.errors import NotFound
from ocidist.remotes.docker import credentials as creds
from ocidist.remotes.docker.auth import Credential
from ocidist.remotes.docker.resolver import DockerResolver, ResolverOptions
from tests.dist_cli import run_dist
from tests.harness import (
    BuiltImage,
    Registry,
    inspect_raw,
    many_small_layers,
    push_image,
    write_layout,
)
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

RUNS = 20
# 40 dist processes per test: allow for a machine shared with other work.
# One worker runs the module (under `make test`'s xdist): one set of its
# registries, and the 20-run tests not racing each other for the CPU.
pytestmark = [pytest.mark.timeout(900), pytest.mark.xdist_group("auth-concurrency")]
# Enough blobs to keep the default concurrency (at least 4) busy, small
# enough that 40 runs take a few seconds each.
LAYERS = 12
SOURCE = "conc/source"


@pytest.fixture(scope="module")
def image(registry: Registry) -> BuiltImage:
    img = many_small_layers(count=LAYERS, file_size=2048, seed=15)
    push_image(registry, SOURCE, "v1", img)
    return img


@pytest.fixture
def store(image: BuiltImage, tmp_path: Path) -> Path:
    root = tmp_path / "root"
    layout = write_layout(tmp_path / "layout", image, tag="v1")
    out = run_dist("--root", str(root), "import", "--name", "local/conc", str(layout))
    assert out.returncode == 0, out.stderr.decode()
    return root


def tls_hosts(tmp_path: Path, env: TLSEnv) -> str:
    d = tmp_path / "certs.d" / env.registry.host
    d.mkdir(parents=True)
    shutil.copy(env.ca.cert_path, d / "ca.pem")
    (d / "hosts.toml").write_text(f'server = "https://{env.registry.host}"\nca = "ca.pem"\n')
    return str(tmp_path / "certs.d")


def push_and_copy_runs(
    runs: int,
    prefix: list[str],
    src: Registry,
    dst_host: str,
    repo: str,
    store: Path,
    creds: str | None = None,
) -> list[str]:
    """``runs`` pushes from the store and copies from the anonymous ``src``
    registry (``creds`` as --user, --dest-user for a copy); the stderr of
    each run that failed."""
    failures: list[str] = []
    push_user = ["--user", creds] if creds else []
    copy_user = ["--dest-user", creds] if creds else []
    for i in range(runs):
        out = run_dist(
            *prefix, *push_user, "--root", str(store), "push", "local/conc:v1",
            f"{dst_host}/{repo}/push{i}:v1",
        )  # fmt: skip
        if out.returncode != 0:
            failures.append(f"push {i}: {out.stderr.decode().strip()}")
        out = run_dist(
            *prefix, "copy", *copy_user, f"{src.host}/{SOURCE}:v1", f"{dst_host}/{repo}/copy{i}:v1"
        )
        if out.returncode != 0:
            failures.append(f"copy {i}: {out.stderr.decode().strip()}")
    return failures


def test_basic_auth_push_and_copy_in_parallel_20_runs(
    registry: Registry,
    tls_env: TLSEnv,
    image: BuiltImage,
    store: Path,
    tmp_path: Path,
    docker_config: Path,
) -> None:
    prefix = ["--hosts-dir", tls_hosts(tmp_path, tls_env)]
    failures = push_and_copy_runs(
        RUNS, prefix, registry, tls_env.registry.host, "conc/basic", store, tls_env.creds
    )
    assert not failures, f"{len(failures)} of {2 * RUNS} runs failed:\n" + "\n".join(failures)
    for kind in ("push", "copy"):
        got = inspect_raw(tls_env.registry, f"conc/basic/{kind}{RUNS - 1}:v1", creds=tls_env.creds)
        assert got == image.raw


def test_basic_auth_from_a_credential_helper_in_parallel(
    registry: Registry,
    tls_env: TLSEnv,
    image: BuiltImage,
    store: Path,
    tmp_path: Path,
    docker_config: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same race with the password from a credential helper (fewer runs:
    only the credential source differs)."""
    helper_store = install_helper(tmp_path / "bin", "conc", monkeypatch)
    host = tls_env.registry.host
    secret = {"Username": tls_env.user, "Secret": tls_env.password}
    helper_store.write_text(json.dumps({host: secret}))
    (docker_config / "config.json").write_text(json.dumps({"credHelpers": {host: "conc"}}))
    prefix = ["--hosts-dir", tls_hosts(tmp_path, tls_env)]
    failures = push_and_copy_runs(5, prefix, registry, host, "conc/helper", store)
    assert not failures, "\n".join(failures)
    # One helper call per command and host, however many requests ran at once.
    log = (tmp_path / "bin" / "conc.store.json.log").read_text().split()
    assert log == ["get"] * 10


def test_token_auth_push_and_copy_in_parallel_20_runs(
    registry: Registry, token_env: TokenEnv, image: BuiltImage, store: Path, docker_config: Path
) -> None:
    # The token server grants push under "private/" only.
    failures = push_and_copy_runs(
        RUNS, [], registry, token_env.registry.host, "private/conc", store, token_env.creds
    )
    assert not failures, f"{len(failures)} of {2 * RUNS} runs failed:\n" + "\n".join(failures)
    for kind in ("push", "copy"):
        got = inspect_raw(
            token_env.registry, f"private/conc/{kind}{RUNS - 1}:v1", creds=token_env.creds
        )
        assert got == image.raw


def test_token_auth_copy_between_repositories_in_parallel(
    registry: Registry, token_env: TokenEnv, image: BuiltImage, docker_config: Path
) -> None:
    """Mixed scopes: mounting from one repository into another needs pull on
    the source and push on the destination, while other requests of the
    same command hold tokens for one repository only."""
    host, user = token_env.registry.host, ["--user", token_env.creds]
    src = f"{host}/private/conc/mixed-src:v1"
    out = run_dist("copy", "--dest-user", token_env.creds, f"{registry.host}/{SOURCE}:v1", src)
    assert out.returncode == 0, out.stderr.decode()
    failures = []
    for i in range(5):
        out = run_dist(*user, "copy", src, f"{host}/private/conc/mixed{i}:v1")
        if out.returncode != 0:
            failures.append(f"copy {i}: {out.stderr.decode().strip()}")
    assert not failures, "\n".join(failures)
    mounts = [
        e for e in token_env.registry.access_log()
        if e.method == "POST" and "mount=" in e.uri and "/private/conc/mixed" in e.path
    ]  # fmt: skip
    assert mounts and {e.status for e in mounts} == {201}


def test_a_dead_token_shared_by_parallel_requests_is_fetched_again_once(
    token_env: TokenEnv, image: BuiltImage, store: Path, docker_config: Path
) -> None:
    """Eight requests send the same token, which the registry no longer
    accepts: each gets a 401, and between them one new token is fetched
    (a 401 for the old token must not throw away the new one)."""
    host = token_env.registry.host
    out = run_dist(
        "--user", token_env.creds, "--root", str(store), "push", "local/conc:v1",
        f"{host}/private/conc/dead:v1",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr.decode()
    cred = Credential(token_env.user, token_env.password)
    res = DockerResolver(ResolverOptions(credentials=creds.static(cred)))
    ref = f"{host}/private/conc/dead:v1"
    try:
        with contextlib.suppress(NotFound):  # learns the challenge, another scope
            res.resolve(f"{host}/private/conc/elsewhere:v1")
        ts = token_env.tokens
        ts.stale_next = 1  # the next token issued is already expired
        before = ts.count()
        barrier = threading.Barrier(8)
        results: list[str] = []

        def resolve() -> None:
            barrier.wait()
            try:
                results.append(str(res.resolve(ref.replace(":v1", "@" + image.digest))[1].digest))
            except Exception as e:  # reported below, with the others
                results.append(repr(e))

        threads = [threading.Thread(target=resolve) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        token_env.tokens.stale_next = 0
        res.close()
    assert results == [image.digest] * 8, results
    assert ts.count() == before + 2, [r.scopes for r in ts.log[before:]]
