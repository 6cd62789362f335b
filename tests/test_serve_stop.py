"""However `dist serve` is stopped, it ends cleanly: one line, a documented
exit code, never a traceback or an abort (a service manager reports those as
crashes). SIGTERM after start-up is test_serve.py's; these stop it while it
starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_serve import sockdir

__all__ = ["sockdir"]

CRASH_WORDS = ("Traceback", "Fatal", "abort", "not installed")


def _signal_when_grpc_loads(proc: subprocess.Popen[bytes], sig: int) -> bool:
    """Send ``sig`` the moment the daemon has begun importing grpc (its
    extension module is mapped): in the middle of its start-up."""
    maps = f"/proc/{proc.pid}/maps"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with open(maps) as f:
                if "cygrpc" in f.read():
                    proc.send_signal(sig)
                    return True
        except OSError:
            pass
    return False


@pytest.mark.parametrize(
    ("sig", "name"), [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")], ids=["TERM", "INT"]
)
def test_a_stop_while_starting_is_a_clean_stop(
    tmp_path: Path, sockdir: str, sig: int, name: str
) -> None:
    """A signal while grpc is being imported, the store opened or the socket
    bound: the daemon stops as it does once running (exit 0), three times in
    a row. It used to raise mid-import: `dist: terminated` (143), or grpc's
    interrupted import read as "grpcio is not installed" (exit 1)."""
    for run in range(3):
        sock = os.path.join(sockdir, f"{run}.sock")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ocidist",
                "--root",
                str(tmp_path / "root"),
                "serve",
                "--address",
                sock,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            assert _signal_when_grpc_loads(proc, sig), f"{name}: grpc never loaded"
            code = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        assert code == 0, f"{name} #{run}: exit {code}: {err}"
        assert not any(w in err for w in CRASH_WORDS), err
        assert err.rstrip().endswith("dist serve: shutting down"), err
        assert not os.path.exists(sock)  # stopped through the one shutdown path


def test_a_signal_while_the_command_line_is_parsed_is_one_line() -> None:
    """SIGTERM before a command starts (while its command line is parsed)
    ends as it does later: `dist: terminated`, 143; it used to escape as a
    traceback. The signal is sent from inside parse, the one seam: a timed
    signal from outside would hit this ~1 ms window too rarely to test."""
    code = (
        "import os, signal\n"
        "from ocidist.cli import main\n"
        "real = main.parse\n"
        "def parse(words):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(words)\n"
        "main.parse = parse\n"
        "main.run()\n"
    )
    for words, want in (([], "dist: terminated\n"), (["--json"], '"exitCode":143')):
        proc = subprocess.run(
            [sys.executable, "-c", code, *words, "images", "ls"],
            capture_output=True,
            timeout=60,
        )
        err = proc.stderr.decode(errors="replace")
        assert proc.returncode == 143, err
        assert want in err and "Traceback" not in err, err
