"""A containerd daemon of the bench's own: its root, state dir and socket
under the bench's scratch directory, never the system's ``/run/containerd``.

``ctr`` is only a client: in containerd 1.6 it talks to the registry itself
and streams the blobs to the daemon over gRPC, and the daemon hashes, writes
and (for ``images pull``) unpacks them into the snapshotter. So a ctr
measurement has to add the daemon's CPU, read from ``/proc/<pid>/stat``
around each run, and the daemon's peak RSS, whose high-water mark is reset
through ``/proc/<pid>/clear_refs`` before each run. Cold runs need more than a
fresh namespace: the content store is shared across namespaces (a blob
present in one is linked into another without a download), so after each run
the image is removed with a synchronous garbage collection and the store and
snapshotter are checked to be empty.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from benchlib.measure import CommandFailed, Sample, run

CONTAINERD = shutil.which("containerd") or "/usr/bin/containerd"
CTR = shutil.which("ctr") or "/usr/bin/ctr"

# Plugins that need hardware, kernel modules or services this bench neither
# has nor uses; CRI would also try to set up CNI and its streaming server.
DISABLED_PLUGINS = (
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
)

# Preferred first. containerd's overlayfs plugin mounts a test overlay in its
# root when it loads, so "ok" in `ctr plugins ls` means overlay works here.
SNAPSHOTTERS = ("overlayfs", "native")

_CONTENT = "io.containerd.content.v1.content"
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path, less the terminating NUL


class ContainerdUnavailable(RuntimeError):
    """containerd cannot run here (missing binary, not root, no answer)."""


def unavailable_reason() -> str | None:
    """Why the daemon cannot even be tried here, or None."""
    for prog in (CONTAINERD, CTR):
        if not os.access(prog, os.X_OK):
            return f"{Path(prog).name} not installed"
    if os.geteuid() != 0:
        # Rootless containerd needs rootlesskit and a user namespace.
        return "containerd needs root (snapshotter mounts)"
    return None


class Containerd:
    """One daemon: ``start()``, ``ctr(ns, ...)`` argv, usage counters,
    ``clean(ns, ref)`` between runs, ``stop()`` by PID (``with`` does both)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.root = workdir / "root"
        self.state = workdir / "state"
        self.address = str(workdir / "containerd.sock")
        self._sock_dir: Path | None = None
        if len(self.address) > _SUN_PATH_MAX - len(".ttrpc"):
            # A deep --workdir would not fit in a unix socket address.
            self._sock_dir = Path(tempfile.mkdtemp(prefix="bench-ctr-"))
            self.address = str(self._sock_dir / "containerd.sock")
        self.config_path = workdir / "config.toml"
        self.log_path = workdir / "containerd.log"
        self.snapshotter = ""
        self.version = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._tick = os.sysconf("SC_CLK_TCK")

    @property
    def pid(self) -> int:
        assert self._proc is not None, "containerd is not running"
        return self._proc.pid

    # -- lifecycle -------------------------------------------------------

    def start(self, timeout: float = 30.0) -> Containerd:
        why = unavailable_reason()
        if why:
            raise ContainerdUnavailable(why)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self._config())
        with self.log_path.open("ab") as log:
            # Its own session: a Ctrl-C at the terminal reaches the bench,
            # which then stops the daemon itself after its cleanup.
            try:
                self._proc = subprocess.Popen(
                    [CONTAINERD, "--config", str(self.config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            except OSError as e:
                raise ContainerdUnavailable(f"cannot start containerd: {e}") from e
        try:
            self.version = _server_version(self._wait_until_answering(timeout))
            self.snapshotter = self._pick_snapshotter()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM our own daemon by PID (SIGKILL if it lingers), undo any
        mount it left under its root, and remove its directories."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        self._unmount_leftovers()
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.state, ignore_errors=True)
        if self._sock_dir is not None:
            shutil.rmtree(self._sock_dir, ignore_errors=True)

    def __enter__(self) -> Containerd:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- commands ----------------------------------------------------------

    def ctr(self, namespace: str, *args: str) -> list[str]:
        return [CTR, "--address", self.address, "--namespace", namespace, *args]

    def measure(self, argv: list[str]) -> tuple[Sample, float, float | None]:
        """Run a ctr command: its own sample (wall, client CPU, client peak
        RSS), the daemon's CPU seconds during it, and the daemon's peak RSS
        in MiB during it (None where the high-water mark cannot be reset)."""
        reset = self._reset_peak_rss()
        before = self.cpu_seconds()
        sample = run(argv)
        cpu = self.cpu_seconds() - before
        return sample, cpu, self._peak_rss_mb() if reset else None

    def clean(self, namespace: str, ref: str) -> None:
        """Remove ``ref`` and ``namespace`` with a synchronous GC, then check
        that no blob, ingest or snapshot is left: the next run starts cold."""
        run(self.ctr(namespace, "images", "rm", "--sync", ref))
        run([CTR, "--address", self.address, "namespaces", "rm", namespace])
        left = {
            "blobs": _count(self.root / _CONTENT / "blobs" / "sha256"),
            "ingests": _count(self.root / _CONTENT / "ingest"),
            "snapshots": _count(
                self.root / f"io.containerd.snapshotter.v1.{self.snapshotter}" / "snapshots"
            ),
        }
        if any(left.values()):
            raise CommandFailed(f"containerd kept content after removing {ref}: {left}")

    # -- usage -----------------------------------------------------------

    def cpu_seconds(self) -> float:
        """utime+stime of all the daemon's threads, plus reaped children
        (unpigz, where installed, runs as one), from /proc/<pid>/stat."""
        text = Path(f"/proc/{self.pid}/stat").read_text()
        fields = text.rsplit(")", 1)[1].split()  # comm may hold spaces
        # fields[0] is field 3 (state); utime..cstime are fields 14..17.
        return sum(int(x) for x in fields[11:15]) / self._tick

    def _reset_peak_rss(self) -> bool:
        # "5" resets VmHWM to the current RSS (Linux >= 4.0; needs ownership).
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def _peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
        raise CommandFailed("no VmHWM in /proc/<pid>/status")

    # -- internals -------------------------------------------------------

    def _config(self) -> str:
        # TOML basic strings take JSON's escapes: paths are quoted exactly.
        q = json.dumps
        disabled = ", ".join(q(p) for p in DISABLED_PLUGINS)
        return (
            "version = 2\n"
            f"root = {q(str(self.root))}\n"
            f"state = {q(str(self.state))}\n"
            f"disabled_plugins = [{disabled}]\n"
            "[grpc]\n"
            f"  address = {q(self.address)}\n"
            "[ttrpc]\n"
            f"  address = {q(self.address + '.ttrpc')}\n"
            "[debug]\n"
            '  level = "warn"\n'
            # The opt plugin would otherwise create /opt/containerd.
            '[plugins."io.containerd.internal.v1.opt"]\n'
            f"  path = {q(str(self.root / 'opt'))}\n"
        )

    def _ctr_out(self, *args: str) -> str:
        """stdout of a short ctr command against this daemon."""
        try:
            proc = subprocess.run(
                [CTR, "--address", self.address, *args],
                capture_output=True,
                check=False,
                text=True,
                timeout=10,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ContainerdUnavailable(f"ctr {args[0]}: {e}") from e
        if proc.returncode != 0:
            raise ContainerdUnavailable(f"ctr {args[0]}: {proc.stderr.strip()[-300:]}")
        return proc.stdout

    def _wait_until_answering(self, timeout: float) -> str:
        """``ctr version``'s output once the daemon answers on its socket."""
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._ctr_out("version")
            except ContainerdUnavailable:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise ContainerdUnavailable(
                        f"containerd did not answer: {self._log_tail()}"
                    ) from None
            time.sleep(0.05)

    def _pick_snapshotter(self) -> str:
        out = self._ctr_out("plugins", "ls")
        ok = {
            cols[1]
            for cols in (line.split() for line in out.splitlines())
            if len(cols) >= 4 and cols[0] == "io.containerd.snapshotter.v1" and cols[-1] == "ok"
        }
        for name in SNAPSHOTTERS:
            if name in ok:
                return name
        raise ContainerdUnavailable(f"no usable snapshotter (loaded: {sorted(ok) or 'none'})")

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1][-300:] if lines else "no output"

    def _unmount_leftovers(self) -> None:
        # Apply mounts are temporary, but a killed daemon may leave one; an
        # rmtree through a live mount would delete inside it.
        root = str(self.root.resolve()) + "/"
        with contextlib.suppress(OSError):
            points = [
                line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            ]
            for point in sorted((p for p in points if p.startswith(root)), reverse=True):
                subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def _server_version(ctr_version: str) -> str:
    # "Client: ... Server:\n  Version:  1.6.20~ds1\n ..." — the server's.
    server = ctr_version.split("Server:", 1)[-1]
    for line in server.splitlines():
        if line.strip().startswith("Version:"):
            return line.split(":", 1)[1].strip()
    return "?"


def _count(directory: Path) -> int:
    """Files and directories below ``directory`` (0 if it is absent)."""
    return sum(len(dirs) + len(files) for _, dirs, files in os.walk(directory))
