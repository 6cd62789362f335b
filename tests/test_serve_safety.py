"""`dist serve` as a daemon safe to run as root: each hole of issue 16 shown
closed against a real daemon process.

- Unpack writes only below the operator's ``--unpack-root`` directories
  (``..``, symlinks and paths outside refused with PERMISSION_DENIED; a path
  swapped for a symlink after the check changes nothing).
- Credentials belong to their registry: ``--user`` only with
  ``--user-registry`` and only for that host; a client-named host gets its
  own config.json entry or nothing; a ``credHelpers`` helper's password goes
  to its registry alone (not to that registry's mirror, nor to another).
- TCP as root needs ``--unauthenticated-tcp``; the unix socket is 0600 from
  the instant it exists, whatever the umask.
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from ocidist.api.client import Daemon
from ocidist.api.unpack_roots import UnpackRoots
from ocidist.errors import DistError, InvalidArgument, PermissionDenied
from tests.dist_cli import one_error_line, run_dist
from tests.harness import BuiltImage, FaultProxy, Registry, push_image, simple_image
from tests.harness.authfixtures import docker_config, install_helper
from tests.harness.recording import Recorded, RecordingServer, Reply
from tests.test_serve import Served, ok, sockdir, start_serve
from tests.test_user_binding import REPO, Site, hosts_toml, image, leaked, site_a, site_b

__all__ = ["docker_config", "image", "site_a", "site_b", "sockdir"]  # fixtures

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the TCP rule is about running as root")


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# -- Unpack confinement --------------------------------------------------------------


@pytest.fixture
def confined(tmp_path: Path, sockdir: str) -> Iterator[tuple[Served, Path, Path]]:
    """A daemon whose only unpack root is tmp/allowed; tmp/outside is a
    directory it must never write to."""
    allowed, outside = private_dir(tmp_path / "allowed"), private_dir(tmp_path / "outside")
    s = start_serve(
        tmp_path / "root", os.path.join(sockdir, "d.sock"), "--unpack-root", str(allowed)
    )
    try:
        yield s, allowed, outside
    finally:
        assert s.stop() == 0


def test_unpack_writes_only_below_the_unpack_roots(
    confined: tuple[Served, Path, Path], registry: Registry, repo_name: str
) -> None:
    served, allowed, outside = confined
    img = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", img)
    ref = f"{registry.host}/{repo_name}:v1"
    (allowed / "link").symlink_to(outside)
    (allowed / "final-link").symlink_to(outside)
    (allowed / "full").mkdir()
    (allowed / "full" / "x").write_text("taken")
    d = Daemon(served.sock)
    try:
        list(d.pull(ref))
        refused = {
            str(outside / "x"): "not below an unpack root",
            str(allowed): "not below an unpack root",  # the root itself is shared
            str(allowed / ".." / "outside" / "x"): "'..' is not allowed",
            f"{allowed}/sub/../../outside/y": "'..' is not allowed",
            str(allowed / "link" / "x"): "is a symlink",
            str(allowed / "final-link"): "is a symlink",
            "/etc/cron.d/x": "not below an unpack root",
        }
        for path, why in refused.items():
            with pytest.raises(PermissionDenied, match=re.escape(why)):
                list(d.unpack(ref, path))
        with pytest.raises(DistError, match="not empty"):
            list(d.unpack(ref, str(allowed / "full")))
        with pytest.raises(InvalidArgument, match="absolute"):
            list(d.unpack(ref, "relative/dir"))
        assert tree(outside) == []
        # Allowed: a new directory (and its parents) below the root.
        events = list(d.unpack(ref, str(allowed / "team" / "app")))
        assert events[-1].event == "complete"
        assert (allowed / "team" / "app" / "etc" / "os-release").is_file()
        # Through the operator's own spelling of a root and its real path alike.
        events = list(d.unpack(ref, f"{allowed}//./again"))
        assert (allowed / "again" / "app" / "main.py").is_file()
    finally:
        d.close()
    # A refusal is the PERMISSION_DENIED code on the wire.
    with grpc.insecure_channel(f"unix://{served.sock}") as ch:
        from ocidist.api.gen import ocidist_pb2 as opb

        call = ch.unary_stream(
            "/ocidist.v1.Distribution/Unpack",
            request_serializer=opb.UnpackRequest.SerializeToString,
            response_deserializer=opb.ProgressEvent.FromString,
        )
        with pytest.raises(grpc.RpcError) as err:
            list(call(opb.UnpackRequest(name=ref, dir=str(outside / "y"))))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    assert tree(outside) == []


def test_a_daemon_without_unpack_roots_refuses_every_unpack(
    tmp_path: Path, sockdir: str, registry: Registry, repo_name: str
) -> None:
    img = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", img)
    s = start_serve(tmp_path / "root", os.path.join(sockdir, "d.sock"))
    d = Daemon(s.sock)
    try:
        with pytest.raises(PermissionDenied, match="--unpack-root"):
            list(d.unpack(f"{registry.host}/{repo_name}:v1", str(tmp_path / "anywhere")))
        assert not (tmp_path / "anywhere").exists()
    finally:
        d.close()
        assert s.stop() == 0


def test_a_path_swapped_for_a_symlink_after_the_check_changes_nothing(tmp_path: Path) -> None:
    allowed, outside = private_dir(tmp_path / "allowed"), private_dir(tmp_path / "outside")
    roots = UnpackRoots([str(allowed)])
    with roots.open(str(allowed / "victim")) as dest:
        # The attacker moves the checked directory away and puts a link to
        # where they want the daemon to write.
        (allowed / "victim").rename(allowed / "moved")
        (allowed / "victim").symlink_to(outside)
        (Path(dest.path) / "written").write_text("by the unpack")
    assert tree(outside) == []
    assert (allowed / "moved" / "written").read_text() == "by the unpack"


def open_dest(roots: UnpackRoots, path: str) -> None:
    with roots.open(path):
        pass


def private_dir(path: Path) -> Path:
    """An unpack root as the daemon requires it: its user's, mode 0700."""
    path.mkdir(parents=True)
    path.chmod(0o700)
    return path


def test_an_unpack_root_swapped_after_start_is_refused(tmp_path: Path) -> None:
    """Whoever can write in a root's parent could replace the root with a
    symlink to /etc after the daemon checked it at start-up: the root's path
    is walked again for every unpack, following no link."""
    allowed, outside = private_dir(tmp_path / "top" / "allowed"), private_dir(tmp_path / "outside")
    roots = UnpackRoots([str(allowed)])
    allowed.rename(tmp_path / "top" / "kept")
    allowed.symlink_to(outside)  # the root itself
    with pytest.raises(PermissionDenied, match="symlink"):
        open_dest(roots, str(allowed / "x"))
    allowed.unlink()
    (tmp_path / "top" / "kept").rename(allowed)
    (tmp_path / "top").rename(tmp_path / "moved")
    (tmp_path / "top").symlink_to(tmp_path / "moved")  # a parent: even to the same place
    with pytest.raises(PermissionDenied, match="symlink"):
        open_dest(roots, str(allowed / "x"))
    assert tree(outside) == []
    assert tree(tmp_path / "moved" / "allowed") == []


def test_unpack_roots_must_be_private_to_the_daemons_user(tmp_path: Path, sockdir: str) -> None:
    """Anyone who can write in a root could plant the directories an unpack
    then fills; as root, anyone who can enter one could run the setuid files
    and open the device nodes an image unpacks there."""
    root = private_dir(tmp_path / "r")
    UnpackRoots([str(root)])  # 0700, ours: fine
    root.chmod(0o777)
    with pytest.raises(InvalidArgument, match="writable by other users"):
        UnpackRoots([str(root)])
    if os.geteuid() == 0:
        root.chmod(0o755)
        with pytest.raises(InvalidArgument, match=r"reachable by other users .*chmod 700"):
            UnpackRoots([str(root)])
        root.chmod(0o700)
        os.chown(root, 65534, 65534)
        with pytest.raises(InvalidArgument, match="owned by uid 65534"):
            UnpackRoots([str(root)])
        os.chown(root, 0, 0)
        root.chmod(0o755)
    proc = run_dist("--root", str(tmp_path / "store"), "serve", "--unpack-root", str(root))
    assert proc.returncode == 2
    assert f"unpack root {root}:" in one_error_line(proc)


def test_a_directory_below_a_root_someone_else_can_write_is_refused(tmp_path: Path) -> None:
    """An earlier unpack's /tmp (1777), or a directory another user owns:
    whoever can write there could swap what the unpack makes."""
    allowed = private_dir(tmp_path / "allowed")
    roots = UnpackRoots([str(allowed)])
    (allowed / "shared").mkdir()
    (allowed / "shared").chmod(0o1777)
    for path in (allowed / "shared" / "x", allowed / "shared"):
        with pytest.raises(PermissionDenied, match="writable by other users"):
            open_dest(roots, str(path))
    if os.geteuid() == 0:
        (allowed / "theirs").mkdir()
        os.chown(allowed / "theirs", 65534, 65534)
        for path in (allowed / "theirs" / "x", allowed / "theirs"):
            with pytest.raises(PermissionDenied, match="owned by uid 65534"):
                open_dest(roots, str(path))
    assert tree(allowed / "shared") == []


def test_unpack_roots_from_a_config_file(
    tmp_path: Path, sockdir: str, registry: Registry, repo_name: str
) -> None:
    img = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", img)
    allowed = private_dir(tmp_path / "from-config")
    config = tmp_path / "serve.toml"
    config.write_text(f"unpack_roots = [{json.dumps(str(allowed))}]\n")
    s = start_serve(tmp_path / "root", os.path.join(sockdir, "d.sock"), "--config", str(config))
    d = Daemon(s.sock)
    try:
        list(d.unpack(f"{registry.host}/{repo_name}:v1", str(allowed / "x")))
        assert (allowed / "x" / "etc" / "os-release").is_file()
    finally:
        d.close()
        assert s.stop() == 0
    for text, why in (
        ("unpack_root = ['/x']\n", "unknown key 'unpack_root'"),
        ("unpack_roots = '/x'\n", "must be a list of directory paths"),
        ("unpack_roots = [\n", "not TOML"),
        ("a = " + "[" * 100_000 + "]" * 100_000 + "\n", "nested too deeply"),
        (f"unpack_roots = [{json.dumps(str(tmp_path / 'absent'))}]\n", "not an existing"),
    ):
        config.write_text(text)
        proc = run_dist("--root", str(tmp_path / "root"), "serve", "--config", str(config))
        assert proc.returncode == 2
        assert why in one_error_line(proc)


# -- credentials ---------------------------------------------------------------------


def _asks_for_basic(req: Recorded) -> Reply:
    return Reply(401, {"WWW-Authenticate": 'Basic realm="test"'}, b'{"errors":[]}')


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_credentials_go_only_to_their_registry(tmp_path: Path, sockdir: str) -> None:
    bound, configured, other = (RecordingServer(responder=_asks_for_basic) for _ in range(3))
    for server in (bound, configured, other):
        server.start()
    try:
        docker = tmp_path / "docker"
        docker.mkdir()
        carol = base64.b64encode(b"carol:carol-pw").decode()
        (docker / "config.json").write_text(
            json.dumps({"auths": {configured.host: {"auth": carol}}})
        )
        env = {**os.environ, "DOCKER_CONFIG": str(docker)}
        sock = os.path.join(sockdir, "d.sock")
        args = [sys.executable, "-m", "ocidist", "--root", str(tmp_path / "root"), "serve"]
        proc = subprocess.Popen(
            [*args, "--address", sock, "-u", "alice:alice-pw", "--user-registry", bound.host],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        served = Served(tmp_path / "root", sock, proc)
        from tests.test_serve import wait_connectable

        wait_connectable(sock, proc)
        d = Daemon(sock)
        try:
            for server in (bound, configured, other):
                with pytest.raises(DistError):
                    list(d.pull(f"{server.host}/some/app:1"))
        finally:
            d.close()
            assert served.stop() == 0

        def sent(server: RecordingServer) -> set[str]:
            return {r.header("Authorization") or "" for r in server.requests()}

        assert _basic("alice", "alice-pw") in sent(bound)
        assert sent(configured) - {""} == {_basic("carol", "carol-pw")}
        assert sent(other) == {""}  # asked, and given nothing
        for server in (configured, other):
            assert all("alice" not in r.text() for r in server.requests())
        assert all("carol" not in r.text() for r in bound.requests())
    finally:
        for server in (bound, configured, other):
            server.stop()


def test_a_mirror_of_the_bound_registry_gets_none_of_its_password(
    tmp_path: Path, sockdir: str
) -> None:
    """hosts.toml lists a mirror for the --user-registry host: the daemon asks
    the mirror first, and gives it nothing of --user (its own entries only)."""
    bound, mirror = (RecordingServer(responder=_asks_for_basic) for _ in range(2))
    for server in (bound, mirror):
        server.start()
    try:
        hosts = tmp_path / "certs.d" / bound.host
        hosts.mkdir(parents=True)
        (hosts / "hosts.toml").write_text(
            f'server = "{bound.url().rstrip("/")}"\n\n[host."{mirror.url().rstrip("/")}"]\n'
            '  capabilities = ["pull", "resolve"]\n'
        )
        docker = tmp_path / "docker"
        docker.mkdir()
        env = {**os.environ, "DOCKER_CONFIG": str(docker)}
        sock = os.path.join(sockdir, "d.sock")
        args = [sys.executable, "-m", "ocidist", "--root", str(tmp_path / "root"), "serve"]
        proc = subprocess.Popen(
            [*args, "--address", sock, "--hosts-dir", str(tmp_path / "certs.d"),
             "-u", "alice:alice-pw", "--user-registry", bound.host],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        served = Served(tmp_path / "root", sock, proc)
        from tests.test_serve import wait_connectable

        wait_connectable(sock, proc)
        d = Daemon(sock)
        try:
            with pytest.raises(DistError):
                list(d.pull(f"{bound.host}/some/app:1"))
        finally:
            d.close()
            assert served.stop() == 0
        assert mirror.requests(), "the mirror was not asked"
        assert all("alice" not in r.text() for r in mirror.requests())
        assert {r.header("Authorization") for r in mirror.requests()} == {None}
        assert _basic("alice", "alice-pw") in {r.header("Authorization") for r in bound.requests()}
    finally:
        for server in (bound, mirror):
            server.stop()


def test_a_credential_helper_serves_its_registry_alone(
    site_a: Site,
    site_b: Site,
    image: BuiltImage,
    fault_proxy: FaultProxy,
    tmp_path: Path,
    sockdir: str,
    docker_config: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """config.json's credHelpers names a docker-credential-<name> for A (an
    htpasswd registry): the daemon pulls A's image with the password the
    helper gives, and neither A's hosts.toml mirror (an anonymous registry,
    asked first, which lacks the image) nor B (another htpasswd registry a
    client names) sees any of it."""
    helper = install_helper(tmp_path / "bin", "vault", monkeypatch)
    helper.write_text(
        json.dumps({site_a.host: {"Username": site_a.user, "Secret": site_a.password}})
    )
    (docker_config / "config.json").write_text(json.dumps({"credHelpers": {site_a.host: "vault"}}))
    mirror = fault_proxy.url.rstrip("/")
    hosts = hosts_toml(tmp_path, site_a.host, f"http://{site_a.host}", mirror)
    for site in (site_a, site_b):
        site.proxy.recorder.clear()
    # The daemon inherits PATH (the helper) and DOCKER_CONFIG from os.environ.
    served = start_serve(tmp_path / "root", os.path.join(sockdir, "d.sock"), "--hosts-dir", hosts)
    d = Daemon(served.sock)
    try:
        events = list(d.pull(f"{site_a.host}/{REPO}:v1"))
        last = events[-1]
        assert last.event == "complete" and last.descriptor is not None
        assert str(last.descriptor.digest) == image.digest
        with pytest.raises(DistError, match="unauthorized"):
            list(d.pull(f"{site_b.host}/{REPO}:v1"))
    finally:
        d.close()
        assert served.stop() == 0
    assert "get" in Path(f"{helper}.log").read_text().split()
    assert site_a.basic_users() == {site_a.user}
    asked = [r for r in fault_proxy.recorder.log if f"/{REPO}/" in r.path]
    assert asked, "the mirror was not asked first"
    assert {r.header("Authorization") for r in fault_proxy.recorder.log} == {None}
    assert all(not leaked(f"{r.path}?{r.query} {r.headers}", site_a.password) for r in asked)
    assert site_b.proxy.recorder.log, "B was not asked"
    assert site_b.basic_users() == set()
    assert not leaked(site_b.sent(), site_a.password)


def test_user_without_a_registry_is_refused(tmp_path: Path) -> None:
    proc = run_dist("--root", str(tmp_path), "serve", "-u", "alice:pw")
    assert proc.returncode == 2
    assert "--user needs --user-registry" in one_error_line(proc)
    proc = run_dist("--root", str(tmp_path), "serve", "--user-registry", "example.com")
    assert proc.returncode == 2
    assert "--user-registry needs --user" in one_error_line(proc)


# -- how the API is reached ----------------------------------------------------------


@as_root
def test_tcp_as_root_needs_the_explicit_flag(tmp_path: Path) -> None:
    args = ("--root", str(tmp_path / "root"), "serve", "--address", "tcp://127.0.0.1:0")
    proc = run_dist(*args)
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "refusing to serve on TCP as root" in line and "--unauthenticated-tcp" in line
    assert not (tmp_path / "root").exists()  # refused before touching anything
    daemon = subprocess.Popen(
        [sys.executable, "-m", "ocidist", *args, "--unauthenticated-tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert daemon.stderr is not None
        line = daemon.stderr.readline().decode()
        m = re.search(r"listening on (tcp://127\.0\.0\.1:\d+)", line)
        assert m, line
        ok(run_dist("--address", m.group(1), "content", "ls"))
    finally:
        daemon.terminate()
        assert daemon.wait(timeout=15) == 0


def test_the_socket_is_0600_when_bind_returns_under_umask_0(tmp_path: Path, sockdir: str) -> None:
    from ocidist.api import address
    from ocidist.api.server import Server

    sock = os.path.join(sockdir, "bound.sock")
    server = Server(str(tmp_path / "root"), address.parse(sock), lambda: None)  # type: ignore[arg-type, return-value]
    old = os.umask(0)
    try:
        server.bind()
        mode = stat.S_IMODE(os.lstat(sock).st_mode)  # before anything else runs
    finally:
        os.umask(old)
        server.stop()
    assert mode == 0o600


def test_the_socket_is_private_from_the_first_instant(tmp_path: Path, sockdir: str) -> None:
    sock = os.path.join(sockdir, "d.sock")
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        # As fast as we can: the first mode the socket is ever seen with.
        while not stop.is_set():
            try:
                seen.append(stat.S_IMODE(os.lstat(sock).st_mode))
                return
            except FileNotFoundError:
                continue

    watcher = threading.Thread(target=watch)
    watcher.start()
    argv = [sys.executable, "-m", "ocidist", "--root", str(tmp_path / "root"), "serve"]
    daemon = subprocess.Popen(
        [*argv, "--address", sock],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        # The laxest umask there is: a socket bound under it is 0777. Set by
        # Popen itself, not by a preexec_fn: one forces a plain fork(), whose
        # at-fork handlers grpc (loaded in this process by earlier tests)
        # restarts its pollers with in the child, and they abort it (SIGABRT,
        # "epoll_wait error: Bad file descriptor") before it runs dist.
        umask=0,
    )
    try:
        watcher.join(timeout=30)
        assert seen == [0o600]
        from tests.test_serve import wait_connectable

        wait_connectable(sock, daemon)
        assert stat.S_IMODE(os.lstat(sock).st_mode) == 0o600
        # (Only the socket: the store's own files follow the process umask,
        # as every dist command's do.)
    finally:
        stop.set()
        watcher.join()
        daemon.terminate()
        assert daemon.wait(timeout=15) == 0
