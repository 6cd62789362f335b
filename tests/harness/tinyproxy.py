"""A real HTTP proxy for the tests: Debian's tinyproxy, started on a free
loopback port with a configuration of the test's own, stopped by its PID."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

TINYPROXY = "/usr/bin/tinyproxy"


def loopback_name() -> str | None:
    """A host name (not ``localhost``, not an address) that resolves to a
    loopback address: the proxy is never used for ``localhost`` or loopback
    addresses (proxy.py), so tests reach the local registry by this name.
    The machine's own name does it where /etc/hosts maps it to 127.0.0.1."""
    for name in (socket.gethostname(), socket.getfqdn()):
        if not name or name == "localhost" or name.replace(".", "").isdigit():
            continue
        try:
            addrs = {a[4][0] for a in socket.getaddrinfo(name, None, socket.AF_INET)}
        except OSError:
            continue
        if addrs and all(a.startswith("127.") for a in addrs):
            return name
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TinyProxy:
    def __init__(self, workdir: Path, *, user: str = "", password: str = "") -> None:
        self.workdir = workdir
        self.port = free_port()
        self.log = workdir / "tinyproxy.log"
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            "Timeout 60",
            "Allow 127.0.0.1",
            "MaxClients 50",
            "LogLevel Info",
            f'LogFile "{self.log}"',
            "DisableViaHeader Yes",
        ]
        if user:
            lines.append(f"BasicAuth {user} {password}")
        self.conf = workdir / "tinyproxy.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which(TINYPROXY) is not None

    def url(self, user: str = "", password: str = "") -> str:
        cred = f"{user}:{password}@" if user else ""
        return f"http://{cred}127.0.0.1:{self.port}"

    def start(self) -> TinyProxy:
        self.proc = subprocess.Popen(
            [TINYPROXY, "-d", "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"tinyproxy did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def requests(self) -> list[str]:
        """The request lines tinyproxy logged ("GET http://…", "CONNECT host:port")."""
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if "]: Request (file descriptor" in line:
                out.append(line.split("): ", 1)[1])
        return out

    def __enter__(self) -> TinyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
