"""What a plain `pip install ocidist` gives: a fresh virtual environment, the
package installed from this tree without extras, then used as a user would.

Marked ``packaging`` (a venv and a wheel build, ~10 s with pip's cache)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Registry, push_image, simple_image

ROOT = Path(__file__).resolve().parent.parent

# One xdist worker builds the venv (a module fixture) for all of them.
pytestmark = [pytest.mark.packaging, pytest.mark.xdist_group("packaging")]


class Venv:
    def __init__(self, path: Path, install_log: str) -> None:
        self.path = path
        self.install_log = install_log

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.path / "bin" / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            # Nothing of the test run's environment leaks in (no PYTHONPATH
            # pointing at this tree, no DIST_* settings).
            env={"PATH": "/usr/bin:/bin", "HOME": str(self.path)},
        )


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venv]:
    base = tmp_path_factory.mktemp("packaging")
    # A copy of what a source distribution holds, so the build writes nothing
    # into the work tree (build/, *.egg-info) while other tests run.
    src = base / "src-tree"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    env_dir = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=120)
    proc = subprocess.run(
        [str(env_dir / "bin" / "pip"), "install", "-v", "--disable-pip-version-check", str(src)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    yield Venv(env_dir, proc.stdout + proc.stderr)


def test_no_build_warnings(venv: Venv) -> None:
    log = venv.install_log
    assert "BuildBackendWarning" not in log
    assert "deprecated" not in log.lower(), [ln for ln in log.splitlines() if "deprecat" in ln]


def test_plain_install_has_no_grpc(venv: Venv) -> None:
    proc = venv.run("python", "-c", "import grpc")
    assert proc.returncode != 0
    proc = venv.run("python", "-c", "import zstandard, ocidist.cli.main")
    assert proc.returncode == 0, proc.stderr


def test_plain_install_unpacks_a_zstd_image(
    venv: Venv, registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    image = simple_image(compression="zstd", tag=repo_name)
    assert all(layer.blob.media_type.endswith("+zstd") for layer in image.layers)
    push_image(registry, repo_name, "v1", image)
    ref = f"{registry.host}/{repo_name}:v1"
    root = tmp_path / "root"
    proc = venv.run("dist", "--root", str(root), "pull", ref)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "rootfs"
    proc = venv.run("dist", "--root", str(root), "unpack", ref, str(out))
    assert proc.returncode == 0, proc.stderr
    assert (out / "app/main.py").read_bytes() == f"print({repo_name!r})\n".encode()


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (["serve"], "dist: serve: "),
        (["--address", "unix:///nowhere.sock", "images", "ls"], "dist: --address "),
    ],
)
def test_without_the_serve_extra_the_error_names_it(
    venv: Venv, tmp_path: Path, args: list[str], what: str
) -> None:
    proc = venv.run("dist", "--root", str(tmp_path), *args, timeout=30)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(what), lines
    # Named as pip knows them (not "google", protobuf's module).
    assert "needs the 'serve' extra (grpcio and protobuf are not installed)" in lines[0]
    assert lines[0].endswith("pip install 'ocidist[serve]'")
