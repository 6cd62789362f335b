"""A platform the index lists but the local copy does not hold.

An index pulled for one platform keeps only that platform's manifest. A
command that reads the image from the store (push, export, copy store:,
inspect store:) or from a layout exported from it (copy oci:, inspect oci:)
with ``--platform`` naming another of the index's platforms must say which
platforms it does hold, as
the walker does for a platform the index lacks ("the index has …"), and
write nothing. Real registry, real `dist`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dist_cli import one_error_line, run_dist
from tests.harness import Registry, multiplatform_index, push_image

MISSING = "no manifest for platform linux/arm64/v8 in"
INDEX_HAS = "the index has linux/amd64, linux/arm/v7, linux/arm64/v8"


def _pulled_amd64(registry: Registry, repo_name: str, root: Path) -> str:
    push_image(registry, repo_name, "multi", multiplatform_index(tag=repo_name))
    ref = f"{registry.host}/{repo_name}:multi"
    proc = run_dist("--root", str(root), "pull", "--platform", "linux/amd64", ref)
    assert proc.returncode == 0, proc.stderr
    return ref


@pytest.mark.parametrize(
    "command",
    [
        "push",
        "export-oci",
        "export-docker",
        "copy-store",
        "copy-layout",
        "inspect-store",
        "inspect-layout",
    ],
)
def test_a_platform_the_store_lacks_names_what_it_holds(
    tmp_path: Path, registry: Registry, repo_name: str, command: str
) -> None:
    root = tmp_path / "root"
    ref = _pulled_amd64(registry, repo_name, root)
    layout = tmp_path / "layout"
    if command.endswith("-layout"):  # the layout holds what the store holds: amd64
        proc = run_dist("--root", str(root), "export", ref, str(layout))
        assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    args = {
        "push": ["push", "--platform", "linux/arm64", ref, f"{registry.host}/{repo_name}-p:x"],
        "export-oci": ["export", "--platform", "linux/arm64", ref, str(out)],
        "export-docker": ["export", "--format", "docker", "--platform", "linux/arm64", ref,
                          str(out)],
        "copy-store": ["copy", "--platform", "linux/arm64", f"store:{ref}", f"oci:{out}:x"],
        "copy-layout": ["copy", "--platform", "linux/arm64", f"oci:{layout}:multi",
                        f"oci:{out}:x"],
        "inspect-store": ["inspect", "--platform", "linux/arm64", f"store:{ref}"],
        "inspect-layout": ["inspect", "--platform", "linux/arm64", f"oci:{layout}:multi"],
    }[command]  # fmt: skip
    before = len(registry.access_log())
    proc = run_dist("--root", str(root), *args)
    assert proc.returncode == 1, proc.stderr
    line = one_error_line(proc)
    where = "the layout" if command.endswith("-layout") else "the store"
    assert f"{MISSING} {where} ({where} has linux/amd64; {INDEX_HAS})" in line, line
    assert not out.exists()
    assert not [e for e in registry.access_log()[before:] if e.method in ("PUT", "POST")]


def test_inspect_config_of_an_index_pulled_for_another_platform(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    """`inspect --config` of an index shows this machine's platform's config:
    when the store holds only another platform, it says which."""
    root = tmp_path / "root"
    push_image(registry, repo_name, "multi", multiplatform_index(tag=repo_name))
    ref = f"{registry.host}/{repo_name}:multi"
    # Whatever this machine is, s390x is not among the index's platforms but
    # the stored one is: pull arm/v7 and ask for this machine's (amd64/arm64).
    proc = run_dist("--root", str(root), "pull", "--platform", "linux/arm/v7", ref)
    assert proc.returncode == 0, proc.stderr
    proc = run_dist("--root", str(root), "inspect", "--config", f"store:{ref}")
    assert proc.returncode == 1, proc.stderr
    line = one_error_line(proc)
    assert " in the store (the store has linux/arm/v7; " + INDEX_HAS + ")" in line, line
