"""A private Docker daemon (Debian ``docker.io`` 20.10's ``dockerd``) for the
tests that run the real ``docker load`` and ``docker save``.

Everything it keeps is under the test's directory: ``--data-root`` (images,
layers, and its containerd's content store), ``--exec-root`` (sockets and
pid files, its containerd's among them), ``--pidfile``, the API socket
(``-H unix://…/docker.sock``), and a ``--config-file`` of our own, so that an
``/etc/docker/daemon.json`` on the machine changes nothing here and the trust
key (``deprecated-key-path``, which 20.10 otherwise creates as
``/etc/docker/key.json``) is written beside the rest. No networking is set up
(``--bridge=none``, no iptables rules). A container the tests run gets its
cgroups under a ``--cgroup-parent`` named for this daemon (not the shared
``/docker``), removed again at stop. dockerd starts a containerd of its own
(no ``--containerd``), configured under the exec root and stopped with it;
a system docker or containerd, if any, is never addressed: the ``docker``
client only ever gets ``DOCKER_HOST=unix://<our socket>``, and its own
``DOCKER_CONFIG`` directory. The one thing outside it: dockerd 20.10 creates
an empty ``/run/docker/plugins`` (a fixed plugin-discovery path) if missing.

Stopped by PID: SIGTERM (dockerd stops its containerd and unmounts its
overlays), SIGKILL if it lingers, then its containerd, by the PID dockerd
recorded, if that is still running, and any mount left under the data root.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

DOCKERD = "/usr/sbin/dockerd"
# The client packaged with that daemon: another ``docker`` earlier on PATH
# (a newer static CLI, say) would negotiate a different API version.
DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else (shutil.which("docker") or "")

# sun_path holds 108 bytes; containerd's ttrpc socket is the longest path
# under the exec root.
_LONGEST_SOCKET = "exec/containerd/containerd.sock.ttrpc"


class DockerdStartError(RuntimeError):
    """dockerd exited or never answered on its socket."""


def unavailable_reason() -> str | None:
    """Why a private dockerd cannot run here, or None when it can."""
    if not os.path.exists(DOCKERD) or not DOCKER:
        return "dockerd or the docker client is not installed (run `make deps`: docker.io)"
    if os.geteuid() != 0:
        return "dockerd needs root (mounts, cgroups), and the tests run as a normal user"
    return None


class Dockerd:
    """One ``dockerd`` with all its state under ``workdir``.

    ``storage_drivers`` are tried in order: overlay2 needs a data root on a
    file system that supports it as an upper layer (not overlayfs itself);
    vfs works anywhere, copying every layer in full.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        storage_drivers: tuple[str, ...] = ("overlay2", "vfs"),
        start_timeout: float = 60.0,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        if len(str(self.workdir / _LONGEST_SOCKET)) > 100:
            raise ValueError(f"{self.workdir}: too long for the daemon's unix sockets")
        self.data_root = self.workdir / "data"
        self.exec_root = self.workdir / "exec"
        self.pidfile = self.workdir / "docker.pid"
        self.socket = self.workdir / "docker.sock"
        self.config_file = self.workdir / "daemon.json"
        self.client_config = self.workdir / "client-config"
        self.log_path = self.workdir / "dockerd.log"
        self.storage_drivers = storage_drivers
        self.start_timeout = start_timeout
        self.storage_driver: str | None = None
        # A cgroup parent of this daemon's own: with cgroupfs (cgroup v1 here)
        # docker otherwise makes /docker in every hierarchy, shared with any
        # system docker, and leaves it behind.
        self.cgroup_parent = (
            "ocidist-test-dockerd-" + hashlib.sha256(str(self.workdir).encode()).hexdigest()[:12]
        )
        self._proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle -------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Dockerd:
        if self.running():
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.client_config.mkdir(exist_ok=True)
        self.config_file.write_text(
            json.dumps({"deprecated-key-path": str(self.workdir / "key.json")}) + "\n"
        )
        failures = []
        for driver in self.storage_drivers:
            try:
                self._spawn(driver)
                self.storage_driver = driver
                return self
            except DockerdStartError as e:
                failures.append(f"--storage-driver {driver}: {e}")
        raise DockerdStartError("\n\n".join(failures))

    def _spawn(self, driver: str) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            # The registry it pulls from is on loopback: no proxy in between.
            if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
            and not k.startswith("DOCKER_")
        }
        argv = [
            DOCKERD,
            "--config-file", str(self.config_file),
            "--data-root", str(self.data_root),
            "--exec-root", str(self.exec_root),
            "--pidfile", str(self.pidfile),
            "-H", f"unix://{self.socket}",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--storage-driver", driver,
            "--cgroup-parent", self.cgroup_parent,
        ]  # fmt: skip
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.workdir,
                env=env,
            )
        finally:
            log.close()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self.stop()
                raise DockerdStartError(f"exited with {code}; log:\n{self._log_since(log_start)}")
            if self._answers():
                return
            time.sleep(0.1)
        self.stop()
        raise DockerdStartError(
            f"no answer on {self.socket} in {self.start_timeout} s; log:\n"
            f"{self._log_since(log_start)}"
        )

    def _answers(self) -> bool:
        """``GET /_ping`` on the socket answers 200 ``OK``."""
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2)
                s.connect(str(self.socket))
                s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                reply = b""
                while chunk := s.recv(4096):
                    reply += chunk
        except OSError:
            return False
        return reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n", 1)[0]

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
        return text[-3000:]

    def _containerd_pid(self) -> int | None:
        try:
            return int((self.exec_root / "containerd" / "containerd.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM our dockerd by PID (SIGKILL if it lingers); then its
        containerd, only if still running with our config, and mounts left."""
        proc, self._proc = self._proc, None
        containerd = self._containerd_pid()
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        if containerd is not None and self._is_our_containerd(containerd):
            os.kill(containerd, signal.SIGTERM)
            for _ in range(100):
                if not self._is_our_containerd(containerd):
                    break
                time.sleep(0.1)
            else:
                os.kill(containerd, signal.SIGKILL)
        self._unmount_leftovers()
        self._remove_cgroups()

    def _remove_cgroups(self) -> None:
        """rmdir our cgroup parent in each hierarchy (containers' own are
        gone once they are removed; rmdir fails on a cgroup still in use)."""
        for parent in Path("/sys/fs/cgroup").glob(f"*/{self.cgroup_parent}"):
            for sub in sorted(parent.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if sub.is_dir():
                    with contextlib.suppress(OSError):
                        sub.rmdir()
            with contextlib.suppress(OSError):
                parent.rmdir()
        unified = Path("/sys/fs/cgroup") / self.cgroup_parent
        with contextlib.suppress(OSError):
            unified.rmdir()

    def _is_our_containerd(self, pid: int) -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return str(self.exec_root).encode() in cmdline

    def _unmount_leftovers(self) -> None:
        try:
            lines = Path("/proc/self/mounts").read_text().splitlines()
        except OSError:
            return
        prefix = str(self.workdir) + "/"
        points = [
            line.split()[1].replace("\\040", " ")
            for line in lines
            if len(line.split()) > 1 and line.split()[1].startswith(prefix)
        ]
        for point in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)

    def __enter__(self) -> Dockerd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the client ------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """The environment for a ``docker`` client that talks to this daemon only."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_HOST"] = f"unix://{self.socket}"
        env["DOCKER_CONFIG"] = str(self.client_config)
        return env

    def docker(
        self,
        *args: str,
        input: bytes | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 120,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``docker ARGS`` against this daemon; raises with its stderr on failure."""
        proc = subprocess.run(
            [DOCKER, *args],
            input=input,
            capture_output=True,
            env={**self.env, **(env or {})},
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} exited {proc.returncode}: {proc.stderr.decode()[-2000:]}"
            )
        return proc

    def inspect(self, ref: str) -> dict[str, Any]:
        """``docker image inspect REF`` as a dict."""
        [doc] = json.loads(self.docker("image", "inspect", ref).stdout)
        assert isinstance(doc, dict)
        return doc

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __repr__(self) -> str:
        return f"Dockerd({self.socket}, pid={self.pid}, driver={self.storage_driver})"
