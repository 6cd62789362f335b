"""`dist unpack` takes the same tar-bomb limits as `dist apply`."""

from __future__ import annotations

from pathlib import Path

from tests.dist_cli import one_error_line, run_dist
from tests.harness import Registry, push_image, simple_image


def test_unpack_limits(tmp_path: Path, registry: Registry, repo_name: str) -> None:
    push_image(registry, repo_name, "v1", simple_image())
    ref = f"{registry.host}/{repo_name}:v1"
    root = str(tmp_path / "root")
    out = run_dist("--root", root, "unpack", "--max-entries", "2", ref, str(tmp_path / "a"))
    assert out.returncode == 1
    assert "entries" in one_error_line(out)
    assert not (tmp_path / "a").exists()
    out = run_dist("--root", root, "unpack", "--max-size", "0", ref, str(tmp_path / "b"))
    assert out.returncode == 2 and "--max-size" in one_error_line(out)
    # Generous limits change nothing.
    out = run_dist("--root", root, "unpack", "--max-entries", "1000", ref, str(tmp_path / "c"))
    assert out.returncode == 0, out.stderr.decode()
    assert (tmp_path / "c" / "app" / "main.py").exists()
