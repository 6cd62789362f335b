"""Run one child process and measure it: wall time, CPU seconds, peak RSS.

CPU comes from ``os.wait4``'s rusage of that child (its own reaped children
included), so the bench's own work and other runs never leak into a sample.
Peak RSS cannot come from there: Linux counts the RSS a child had between
fork and exec, i.e. a copy of the bench's own (measured: a 200 MB parent made
``/bin/true`` report 211 MB), and posix_spawn does the same. So the child is
started by GNU time, a small process, which reports its child's ``%M``. The
child is killed by PID if the bench is interrupted while it runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

GNU_TIME = "/usr/bin/time"


class CommandFailed(RuntimeError):
    """A measured command exited non-zero (its stderr tail is in the message)."""


@dataclass(frozen=True)
class Sample:
    wall: float  # seconds
    cpu: float  # user + system seconds of the child and its reaped children
    rss_mb: float  # peak resident set size, MiB (Linux ru_maxrss is KiB)
    stdout: bytes = b""


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 900.0,
) -> Sample:
    """Run ``argv`` to completion; raise ``CommandFailed`` on a non-zero exit."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile() as rss,
    ):
        full = list(argv)
        if os.access(GNU_TIME, os.X_OK):
            full = [GNU_TIME, "-q", "-o", rss.name, "-f", "%M", *full]
        start = time.perf_counter()
        proc = subprocess.Popen(
            full,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
        # A hung child must not hang the bench: a timer kills it by PID.
        timer = threading.Timer(timeout, _kill, (proc.pid,))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            _kill(proc.pid)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc.pid, 0)
            raise
        finally:
            timer.cancel()
            proc.returncode = -1  # reaped by wait4: keep Popen from waiting again
        wall = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err.seek(0)
            tail = err.read()[-1500:].decode(errors="replace").strip()
            raise CommandFailed(f"{' '.join(argv[:5])} … exited {code}: {tail}")
        out.seek(0)
        # Without GNU time this is an over-estimate (see the module docstring).
        rss_kib = usage.ru_maxrss
        with contextlib.suppress(ValueError):
            rss_kib = int(rss.read().split()[-1])
        return Sample(
            wall=wall,
            cpu=usage.ru_utime + usage.ru_stime,
            rss_mb=rss_kib / 1024.0,
            stdout=out.read(),
        )


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def median_sample(samples: Sequence[Sample]) -> Sample:
    """Medians per metric (wall, CPU and RSS may come from different runs)."""
    return Sample(
        wall=statistics.median(s.wall for s in samples),
        cpu=statistics.median(s.cpu for s in samples),
        rss_mb=statistics.median(s.rss_mb for s in samples),
    )


def wall_median(argv: Sequence[str], runs: int, env: Mapping[str, str] | None = None) -> float:
    run(argv, env=env)  # warm-up, untimed
    return statistics.median(run(argv, env=env).wall for _ in range(runs))
