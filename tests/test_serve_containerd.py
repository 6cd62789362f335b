"""containerd 1.6's own content-store conformance suite
(``content/testsuite.ContentSuite``) and its lease client, against `dist
serve` through containerd's gRPC proxies: tests/containerd/suite_test.go.

The Go file is built once per run, in GOPATH mode against Debian's
containerd source (golang-github-containerd-containerd-dev, `make deps`),
into a temporary directory; Go's build cache lives in ``.cache/go-build`` of
the checkout, so a second run builds in seconds and a clean checkout needs
nothing but the packages. Every subtest must pass; the suite also fails when
a daemon logs a traceback or an internal error.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SUITE = REPO / "tests" / "containerd" / "suite_test.go"
GOCODE = Path("/usr/share/gocode")
CONTAINERD = GOCODE / "src" / "github.com" / "containerd" / "containerd"
GO = shutil.which("go")

pytestmark = [
    pytest.mark.skipif(
        GO is None or not (CONTAINERD / "content" / "testsuite").is_dir(),
        reason="go or containerd's Go source is not installed (run `make deps`)",
    ),
    # Both tests on one xdist worker: the binary (a module fixture) is built
    # once, not once per worker.
    pytest.mark.xdist_group("containerd"),
]

CONTENT_SUBTESTS = (
    "Writer",
    "UpdateStatus",
    "CommitExists",
    "Resume",
    "ResumeTruncate",
    "ResumeDiscard",
    "ResumeCopy",
    "ResumeCopySeeker",
    "ResumeCopyReaderAt",
    "SmallBlob",
    "Labels",
    "CommitErrorState",
)
LEASE_SUBTESTS = ("Create", "ListFilters", "Resources", "ContentUnderLease", "Namespaces", "Delete")

_RESULT = re.compile(r"^\s*--- (PASS|FAIL|SKIP): (\S+)", re.M)


def go_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GO111MODULE="off",
        GOPATH=f"{tmp / 'gopath'}:{GOCODE}",
        GOCACHE=str(REPO / ".cache" / "go-build"),
        GOENV="off",
        GOFLAGS="",
        # No C compiler needed: nothing here calls C.
        CGO_ENABLED="0",
    )
    return env


@pytest.fixture(scope="module")
def suite_binary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """tests/containerd/suite_test.go built in GOPATH mode (once per run)."""
    assert GO is not None
    tmp = tmp_path_factory.mktemp("containerd-suite")
    pkg = tmp / "gopath" / "src" / "ocidist.test" / "containerd"
    pkg.mkdir(parents=True)
    shutil.copy(SUITE, pkg / SUITE.name)
    binary = tmp / "suite.test"
    built = subprocess.run(
        [GO, "test", "-c", "-o", str(binary), "."],
        cwd=pkg,
        env=go_env(tmp),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, f"go test -c failed:\n{built.stdout}\n{built.stderr}"
    yield binary


def run_suite(binary: Path, test: str) -> tuple[int, str, dict[str, str]]:
    env = dict(os.environ)
    env["DIST_CMD"] = json.dumps([sys.executable, "-m", "ocidist"])
    proc = subprocess.run(
        [str(binary), "-test.v", "-test.run", f"^{test}$", "-test.timeout", "300s"],
        cwd=binary.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    out = proc.stdout + proc.stderr
    return proc.returncode, out, {name: verdict for verdict, name in _RESULT.findall(out)}


# A cold build (no .cache/go-build yet) compiles grpc and containerd's
# packages: about a minute on two idle cores, more on a busy machine.
@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("test", "subtests"),
    [("TestContentSuite", CONTENT_SUBTESTS), ("TestLeases", LEASE_SUBTESTS)],
)
def test_containerd_go_suite(suite_binary: Path, test: str, subtests: tuple[str, ...]) -> None:
    code, out, results = run_suite(suite_binary, test)
    want = {test: "PASS", **{f"{test}/{name}": "PASS" for name in subtests}}
    assert results == want, out[-20000:]
    assert code == 0, out[-20000:]
