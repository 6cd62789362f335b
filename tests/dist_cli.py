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
