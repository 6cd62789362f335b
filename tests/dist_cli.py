"""Running the real `dist` command in a subprocess, as users and CI do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from typing import Any


def run_dist(
    *args: str,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[bytes]:
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "ocidist", *args],
        input=input,
        capture_output=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


# Runs `dist` and, as it exits, writes its peak RSS (VmHWM, KiB) to the file
# $DIST_TEST_PEAK_FILE names. wait4's ru_maxrss cannot be used: Linux keeps,
# across exec, the RSS the child had as a fork of its parent, so a child of
# a pytest process grown to 300 MiB reports 300 MiB even for `python -c pass`.
_PEAK_WRAPPER = """
import atexit, os, sys

def _report():
    with open("/proc/self/status") as f:
        hwm = next(line for line in f if line.startswith("VmHWM:")).split()[1]
    with open(os.environ["DIST_TEST_PEAK_FILE"], "w") as out:
        out.write(hwm)

atexit.register(_report)
from ocidist.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def run_dist_peak(
    *args: str, cwd: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> tuple[int, str, int]:
    """Run `dist ARGS` (stdout discarded); (exit code, stderr, its own peak RSS in bytes)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        peak_file = os.path.join(tmp, "peak")
        err_file = os.path.join(tmp, "stderr")
        with open(err_file, "wb") as err:
            proc = subprocess.run(
                [sys.executable, "-c", _PEAK_WRAPPER, *args],
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=cwd,
                env={**os.environ, **(env or {}), "DIST_TEST_PEAK_FILE": peak_file},
                check=False,
            )
        with open(err_file, encoding="utf-8", errors="replace") as f:
            text = f.read()
        with open(peak_file) as f:
            return proc.returncode, text, int(f.read()) * 1024


def one_error_line(proc: subprocess.CompletedProcess[bytes]) -> str:
    """The single `dist: …` line a failure must print (no traceback); progress
    lines for objects that did finish may come before it."""
    err = proc.stderr.decode()
    lines = [ln for ln in err.splitlines() if ln.startswith("dist: ")]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert err.rstrip().endswith(lines[0]), err
    return lines[0]


def json_list(out: bytes | str) -> list[dict[str, Any]]:
    """`--json` output (one object per line, docs/JSON.md) as the objects,
    each without its ``event`` field."""
    text = out.decode() if isinstance(out, bytes) else out
    docs = [json.loads(line) for line in text.splitlines() if line.strip()]
    for doc in docs:
        assert isinstance(doc, dict) and "event" in doc, doc
        del doc["event"]
    return docs


def json_doc(out: bytes | str) -> dict[str, Any]:
    """The last line of `--json` output (a command's result, or the ``done``
    event of a streaming command), without its ``event`` field."""
    docs = json_list(out)
    assert docs, "no JSON output"
    return docs[-1]
