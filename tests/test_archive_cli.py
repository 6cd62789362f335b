"""`dist apply` through a real subprocess."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from tests.archive_helpers import compress, dir_, reg, sym, tar_bytes
from tests.dist_cli import json_doc, run_dist

RAW = tar_bytes([dir_("etc"), reg("etc/os-release", b"ID=test\n"), sym("link", "etc")])
DIFF_ID = "sha256:" + hashlib.sha256(RAW).hexdigest()


def dist(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return run_dist(*args, input=stdin, timeout=60)


def test_apply_file_prints_diff_id_and_size(tmp_path: Path) -> None:
    layer = tmp_path / "layer.tar.gz"
    layer.write_bytes(compress(RAW, "gzip"))
    root = tmp_path / "root"
    root.mkdir()
    p = dist("apply", str(root), str(layer))
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert DIFF_ID in out and str(len(RAW)) in out
    assert (root / "etc/os-release").read_bytes() == b"ID=test\n"
    assert (root / "link").is_symlink()


def test_apply_stdin_json_and_expected_diff_id(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    p = dist(
        "apply", "--json", "--expected-diff-id", DIFF_ID, str(root), stdin=compress(RAW, "zstd")
    )
    assert p.returncode == 0, p.stderr
    assert json_doc(p.stdout) == {"diffID": DIFF_ID, "size": len(RAW)}
    assert (root / "etc/os-release").exists()


def test_apply_errors_are_one_line_exit_1(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    data = compress(RAW, "gzip")
    layer = tmp_path / "cut.tar.gz"
    layer.write_bytes(data[: len(data) - 10])
    p = dist("apply", str(root), str(layer))
    err = p.stderr.decode()
    assert p.returncode == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"dist: layer {layer}: ") and "truncated gzip stream" in err

    wrong = "sha256:" + "0" * 64
    p = dist("apply", "--expected-diff-id", wrong, str(root), "-", stdin=RAW)
    err = p.stderr.decode()
    assert p.returncode == 1 and err.count("\n") == 1
    assert "digest mismatch" in err and "<stdin>" in err
