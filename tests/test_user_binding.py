"""``--user`` goes to the registry the command names and nowhere else.

Real htpasswd registries (alice's A, bob's B), each behind a recording
proxy that logs every header it is sent, and hosts.toml mirrors that ask
for a password. A password typed for A must not reach a mirror of A (nor
its token realm), a hosts.toml ``server`` under another name, or B on the
other side of a copy; a mirror gets credentials from its own config.json
entry. skopeo behaves so: it drops ``--creds`` for a mirror, and ``copy``
takes ``--src-creds``/``--dest-creds``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.dist_cli import json_doc, one_error_line, run_dist
from tests.harness import BuiltImage, FaultProxy, Registry, push_image, simple_image
from tests.harness.authfixtures import bcrypt_hash, docker_config, new_password
from tests.harness.push import inspect_raw
from tests.harness.recording import Recorded, RecordingServer, Reply
from tests.harness.registry import REGISTRY_BIN

__all__ = ["docker_config"]

REPO = "bind/app"


@dataclass
class Site:
    """An htpasswd registry and the recording proxy clients reach it through."""

    registry: Registry
    proxy: FaultProxy
    user: str
    password: str = field(repr=False)

    @property
    def host(self) -> str:
        return self.proxy.host

    @property
    def creds(self) -> str:
        return f"{self.user}:{self.password}"

    def sent(self) -> str:
        """Every header the proxy was sent, one per line."""
        return "\n".join(f"{k}: {v}" for r in self.proxy.recorder.log for k, v in r.headers)

    def basic_users(self) -> set[str]:
        return basic_users(
            v for r in self.proxy.recorder.log for k, v in r.headers if k.lower() == "authorization"
        )


def basic_users(values: Iterator[str] | list[str]) -> set[str]:
    users = set()
    for v in values:
        if v.lower().startswith("basic "):
            users.add(base64.b64decode(v[6:]).decode().partition(":")[0])
    return users


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def leaked(text: str, password: str) -> bool:
    return password in text or any(b64(f"{u}:{password}") in text for u in ("alice", "bob"))


def _site(tmp: Path, user: str) -> Iterator[Site]:
    import shutil

    if shutil.which(REGISTRY_BIN) is None:
        pytest.skip(f"{REGISTRY_BIN} is not installed (run `make deps`)")
    password = new_password()
    (tmp / "htpasswd").write_text(f"{user}:{bcrypt_hash(password)}\n")
    reg = Registry(tmp / "reg", htpasswd=tmp / "htpasswd").start()
    proxy = FaultProxy(reg).start()
    try:
        yield Site(reg, proxy, user, password)
    finally:
        proxy.stop()
        reg.stop()


@pytest.fixture(scope="module")
def site_a(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    yield from _site(tmp_path_factory.mktemp("site-a"), "alice")


@pytest.fixture(scope="module")
def site_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    yield from _site(tmp_path_factory.mktemp("site-b"), "bob")


@pytest.fixture(scope="module")
def image(site_a: Site) -> BuiltImage:
    img = simple_image(tag="user-binding")
    push_image(site_a.registry, REPO, "v1", img, creds=site_a.creds)
    return img


@pytest.fixture(autouse=True)
def _clean_logs(request: pytest.FixtureRequest) -> None:
    for name in ("site_a", "site_b"):
        if name in request.fixturenames:
            request.getfixturevalue(name).proxy.recorder.clear()


def hosts_toml(tmp: Path, domain: str, server: str, *mirrors: str) -> str:
    d = tmp / "certs.d"
    (d / domain).mkdir(parents=True)
    text = f'server = "{server}"\n'
    for url in mirrors:
        text += f'\n[host."{url}"]\n  capabilities = ["pull", "resolve"]\n'
    (d / domain / "hosts.toml").write_text(text)
    return str(d)


def challenging_mirror(kind: str) -> RecordingServer:
    """A mirror that asks for a password on every request (Basic, or Bearer
    with a token realm of its own that hands out an anonymous token)."""
    srv = RecordingServer()

    def respond(req: Recorded) -> Reply:
        if req.path.startswith("/token"):
            return Reply(200, {"Content-Type": "application/json"}, b'{"token": "anonymous"}')
        if kind == "Basic":
            challenge = 'Basic realm="mirror"'
        else:
            challenge = f'Bearer realm="http://{srv.host}/token",service="mirror"'
        body = b'{"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}'
        return Reply(401, {"WWW-Authenticate": challenge, "Content-Type": "application/json"}, body)

    srv.responder = respond
    return srv


@pytest.mark.parametrize("kind", ["Basic", "Bearer"])
def test_user_password_never_reaches_a_mirror(
    site_a: Site, image: BuiltImage, kind: str, tmp_path: Path, docker_config: Path
) -> None:
    with challenging_mirror(kind) as mirror:
        d = hosts_toml(tmp_path, site_a.host, f"http://{site_a.host}", mirror.url().rstrip("/"))
        ref = f"{site_a.host}/{REPO}:v1"
        resolved = run_dist("--hosts-dir", d, "-u", site_a.creds, "--json", "resolve", ref)
        root = str(tmp_path / "root")
        pulled = run_dist("--hosts-dir", d, "-u", site_a.creds, "--root", root, "pull", ref)
        seen = mirror.requests()
    assert seen, "the mirror was not tried first"
    for req in seen:
        assert not leaked(req.text(), site_a.password), req.text()
    assert not basic_users([req.header("Authorization") or "" for req in seen])
    # The registry itself did get them: it answered the resolve.
    assert resolved.returncode == 0, resolved.stderr.decode()
    assert json_doc(resolved.stdout)["digest"] == image.digest
    assert site_a.basic_users() == {"alice"}
    # Blobs too are asked of the mirror first, and a mirror's 401 there ends
    # the pull (as containerd's fetcher: only a 404 moves on), in words.
    assert pulled.returncode == 1
    line = one_error_line(pulled)
    assert "unauthorized" in line, line
    if kind == "Basic":
        assert f"{mirror.host}: unauthorized (no credentials for this host" in line, line


def test_a_mirror_gets_its_own_config_entry_not_user(
    site_a: Site, site_b: Site, tmp_path: Path, docker_config: Path
) -> None:
    """B mirrors A, with bob's login in config.json: dist -u alice (for A)
    reads from B as bob, and B never sees alice's password."""
    img = simple_image(tag="user-binding-mirror")
    push_image(site_a.registry, f"{REPO}-m", "v1", img, creds=site_a.creds)
    push_image(site_b.registry, f"{REPO}-m", "v1", img, creds=site_b.creds)
    auths = {site_b.host: {"auth": b64(site_b.creds)}}
    (docker_config / "config.json").write_text(json.dumps({"auths": auths}))
    site_a.proxy.recorder.clear()
    site_b.proxy.recorder.clear()
    d = hosts_toml(tmp_path, site_a.host, f"http://{site_a.host}", f"http://{site_b.host}")
    ref = f"{site_a.host}/{REPO}-m:v1"
    proc = run_dist(
        "--hosts-dir", d, "-u", site_a.creds, "--root", str(tmp_path / "root"), "--debug",
        "pull", ref,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    assert site_b.basic_users() == {"bob"}
    assert not leaked(site_b.sent(), site_a.password)
    served = [e for e in site_b.registry.access_log() if f"/{REPO}-m/" in e.path]
    assert any(e.status == 200 and "/manifests/" in e.path for e in served)
    # Everything came from the mirror: A was not asked for the image.
    assert not [r for r in site_a.proxy.recorder.log if f"/{REPO}-m/" in r.path]


def test_a_hosts_toml_server_under_another_name_does_not_get_user(
    site_a: Site, image: BuiltImage, tmp_path: Path, docker_config: Path
) -> None:
    """The password is for the name the user typed; hosts.toml may send that
    name's requests to another host, which gets its own entries' credentials."""
    with RecordingServer() as elsewhere:
        elsewhere.responder = lambda req: Reply(
            401, {"WWW-Authenticate": 'Basic realm="elsewhere"'}, b""
        )
        name = "registry.example:5000"
        d = hosts_toml(tmp_path, name, elsewhere.url().rstrip("/"))
        proc = run_dist(
            "--hosts-dir", d, "-u", site_a.creds, "--timeout", "30s", "resolve",
            f"{name}/{REPO}:v1",
        )  # fmt: skip
        assert proc.returncode == 1
        assert "unauthorized" in one_error_line(proc)
        seen = elsewhere.requests()
    assert seen
    for req in seen:
        assert not leaked(req.text(), site_a.password), req.text()


# -- copy: two registries ------------------------------------------------------


def test_copy_refuses_user_between_two_registries(
    site_a: Site, site_b: Site, image: BuiltImage, docker_config: Path
) -> None:
    proc = run_dist(
        "-u", site_a.creds, "copy", f"{site_a.host}/{REPO}:v1", f"{site_b.host}/{REPO}:copied"
    )
    assert not leaked(site_b.sent(), site_a.password)
    # Refused before anything was sent to either.
    assert not site_b.proxy.recorder.log
    assert not site_a.proxy.recorder.log
    assert proc.returncode == 2, proc.stderr.decode()
    line = one_error_line(proc)
    assert "--src-user" in line and site_a.host in line and site_b.host in line, line
    assert not leaked(line, site_a.password)


def test_copy_src_and_dest_user_each_go_to_their_own_registry(
    site_a: Site, site_b: Site, image: BuiltImage, docker_config: Path
) -> None:
    dst = f"{site_b.host}/{REPO}:copied"
    proc = run_dist(
        "copy", "--src-user", site_a.creds, "--dest-user", site_b.creds,
        f"{site_a.host}/{REPO}:v1", dst,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    assert site_a.basic_users() == {"alice"}
    assert site_b.basic_users() == {"bob"}
    assert not leaked(site_b.sent(), site_a.password)
    assert not leaked(site_a.sent(), site_b.password)
    assert inspect_raw(site_b.registry, f"{REPO}:copied", creds=site_b.creds) == image.raw


def test_copy_one_side_from_user_the_other_from_config(
    site_a: Site, site_b: Site, image: BuiltImage, docker_config: Path
) -> None:
    """--dest-user for B (its password on stdin), A's from config.json."""
    auths = {site_a.host: {"auth": b64(site_a.creds)}}
    (docker_config / "config.json").write_text(json.dumps({"auths": auths}))
    proc = run_dist(
        "copy", "--dest-user", site_b.user, "--password-stdin",
        f"{site_a.host}/{REPO}:v1", f"{site_b.host}/{REPO}:from-config",
        input=site_b.password.encode() + b"\n",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    assert site_a.basic_users() == {"alice"}
    assert site_b.basic_users() == {"bob"}


def test_copy_user_within_one_registry(
    site_a: Site, image: BuiltImage, docker_config: Path
) -> None:
    proc = run_dist(
        "-u", site_a.creds, "copy", f"{site_a.host}/{REPO}:v1", f"{site_a.host}/{REPO}-2:v1"
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert site_a.basic_users() == {"alice"}


def test_copy_from_a_layout_binds_user_to_the_one_registry(
    site_a: Site, site_b: Site, image: BuiltImage, tmp_path: Path, docker_config: Path
) -> None:
    layout = f"oci:{tmp_path / 'layout'}:v1"
    proc = run_dist("-u", site_a.creds, "copy", f"{site_a.host}/{REPO}:v1", layout)
    assert proc.returncode == 0, proc.stderr.decode()
    proc = run_dist("-u", site_b.creds, "copy", layout, f"{site_b.host}/{REPO}:from-layout")
    assert proc.returncode == 0, proc.stderr.decode()
    assert site_b.basic_users() == {"bob"}


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["-u", "a:b", "copy", "--src-user", "c:d", "{A}", "{B}"], "exclude each other"),
        (["copy", "--src-user", "c:d", "oci:/nonexistent:v1", "{B}"], "--src-user: SRC is not a"),
        (["copy", "--dest-user", "c:d", "{A}", "oci:/nonexistent:v1"], "--dest-user: DST is not"),
        (["copy", "--src-user", "a", "--dest-user", "b", "--password-stdin", "{A}", "{B}"],
         "reads one password"),
        (["copy", "--src-user", ":x", "{A}", "{B}"], "--src-user needs a user name"),
        (["copy", "--src-user", "a:1", "--dest-user", "a:2", "{A}", "{A}"], "one set of"),
        (["artifact", "push", "{B}", "--subject", "{A}", "-u", "a:b"], "talks to"),
    ],
)  # fmt: skip
def test_credential_options_misused(
    site_a: Site, site_b: Site, args: list[str], words: str, docker_config: Path
) -> None:
    refs = {"{A}": f"{site_a.host}/{REPO}:v1", "{B}": f"{site_b.host}/{REPO}:x"}
    proc = run_dist(*(refs.get(a, a) for a in args), input=b"")
    assert proc.returncode == 2, proc.stderr.decode()
    assert words in one_error_line(proc)
    assert not site_a.proxy.recorder.log and not site_b.proxy.recorder.log


def test_login_sends_the_password_to_the_registry_named_only(
    site_a: Site, tmp_path: Path, docker_config: Path
) -> None:
    """dist login REGISTRY checks the password with REGISTRY: a hosts.toml
    that sends REGISTRY's requests to a server under another name does not
    get it (nor its token realm), and nothing is stored."""
    with challenging_mirror("Basic") as elsewhere, challenging_mirror("Bearer") as realm_host:
        for i, server in enumerate((elsewhere, realm_host)):
            name = f"registry-{i}.example:5000"
            d = hosts_toml(tmp_path / str(i), name, server.url().rstrip("/"))
            proc = run_dist(
                "--hosts-dir", d, "--timeout", "30s", "login", name, "-u", site_a.user,
                "--password-stdin", input=site_a.password.encode() + b"\n",
            )  # fmt: skip
            seen = server.requests()
            assert seen, "the server hosts.toml names was not asked"
            for req in seen:
                assert not leaked(req.text(), site_a.password), req.text()
            assert proc.returncode == 1, proc.stderr.decode()
            line = one_error_line(proc)
            assert "unauthorized" in line, line
            if server is elsewhere:  # Basic: says which host wants a login
                assert f"dist login {server.host}" in line, line
            assert not leaked(line, site_a.password)
    assert (
        not (docker_config / "config.json").exists()
        or site_a.password not in (docker_config / "config.json").read_text()
    )


# -- the library: Client(credentials=...) ---------------------------------------


def test_client_credentials_are_bound_to_their_registry(
    site_a: Site, site_b: Site, image: BuiltImage, tmp_path: Path, docker_config: Path
) -> None:
    """Client(credentials={registry: (user, password)}) as dist -u: A's pair
    never reaches a mirror of A, and a copy gives each side its own."""
    from ocidist import Client

    given = {
        site_a.host: (site_a.user, site_a.password),
        site_b.host: (site_b.user, site_b.password),
    }
    with challenging_mirror("Basic") as mirror:
        d = hosts_toml(tmp_path, site_a.host, f"http://{site_a.host}", mirror.url().rstrip("/"))
        with Client(tmp_path / "root", credentials=given, hosts_dir=d) as client:
            _, desc = client.resolve(f"{site_a.host}/{REPO}:v1")
        seen = mirror.requests()
    # (A blob asked of a mirror that answers 401 ends a transfer: copy without it.)
    with Client(tmp_path / "root", credentials=given) as client:
        client.copy(f"{site_a.host}/{REPO}:v1", f"{site_b.host}/{REPO}:from-client")
    assert str(desc.digest) == image.digest
    assert seen, "the mirror was not tried first"
    for req in seen:
        assert not leaked(req.text(), site_a.password), req.text()
    assert site_a.basic_users() == {"alice"}
    assert site_b.basic_users() == {"bob"}
    assert not leaked(site_b.sent(), site_a.password)
    assert inspect_raw(site_b.registry, f"{REPO}:from-client", creds=site_b.creds) == image.raw


def test_client_refuses_one_password_for_every_host(site_a: Site, tmp_path: Path) -> None:
    """credentials=(user, password) went to every host a Client talked to."""
    from ocidist import Client
    from ocidist.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match=r"\{registry: \(user, password\)\}") as err:
        Client(tmp_path / "root", credentials=(site_a.user, site_a.password))  # type: ignore[arg-type]
    assert site_a.password not in str(err.value)
    assert not site_a.proxy.recorder.log


def test_client_reads_registry_auth_file_alone(
    site_a: Site,
    image: BuiltImage,
    tmp_path: Path,
    docker_config: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ocidist import Client
    from ocidist.errors import Unauthorized

    auths = {site_a.host: {"auth": b64(site_a.creds)}}
    (docker_config / "config.json").write_text(json.dumps({"auths": auths}))
    ref = f"{site_a.host}/{REPO}:v1"
    with Client(tmp_path / "root") as client:
        assert str(client.resolve(ref)[1].digest) == image.digest
    job = tmp_path / "job-auth.json"
    job.write_text(json.dumps({"auths": {"other.example": {"auth": b64("x:y")}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(job))
    with Client(tmp_path / "root") as client, pytest.raises(Unauthorized):
        client.resolve(ref)
    job.write_text(json.dumps({"auths": auths}))
    with Client(tmp_path / "root") as client:
        assert str(client.resolve(ref)[1].digest) == image.digest


def test_a_namespace_login_is_not_used_for_the_whole_host(
    site_a: Site, image: BuiltImage, tmp_path: Path, docker_config: Path
) -> None:
    """A config.json key naming a namespace (podman/skopeo write them:
    ``skopeo login host/team``) holds for that namespace: dist chooses
    credentials per host, so it uses none of them, as with auth.json,
    rather than offer the team's password for every repository of the host.
    dist logout HOST leaves them too."""
    host = site_a.host
    cfg = docker_config / "config.json"
    scoped = {f"{host}/team": {"auth": b64(site_a.creds)}}
    cfg.write_text(json.dumps({"auths": scoped}))
    proc = run_dist("resolve", f"{host}/{REPO}:v1")
    assert not site_a.basic_users(), "the namespace's password was sent for another repository"
    assert proc.returncode == 1 and "unauthorized" in one_error_line(proc)
    # Nor is a helper named for a namespace asked for the host.
    cfg.write_text(json.dumps({"auths": scoped, "credHelpers": {f"{host}/team": "absent"}}))
    proc = run_dist("resolve", f"{host}/{REPO}:v1")
    assert proc.returncode == 1 and "unauthorized" in one_error_line(proc)
    proc = run_dist("logout", host)
    assert json.loads(cfg.read_text())["auths"] == scoped
    # A host key, Docker's own or its URL form, holds for the host.
    cfg.write_text(
        json.dumps({"auths": {**scoped, f"http://{host}/v1/": {"auth": b64(site_a.creds)}}})
    )
    proc = run_dist("--json", "resolve", f"{host}/{REPO}:v1")
    assert proc.returncode == 0, proc.stderr.decode()
    assert json_doc(proc.stdout)["digest"] == image.digest
    assert site_a.basic_users() == {"alice"}
