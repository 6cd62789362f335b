"""`dist fetch-object`: exact bytes, verified, one object or many."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.dist_cli import one_error_line, run_dist
from tests.harness import Registry, multiplatform_index, push_image, simple_image


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_manifest_by_ref_is_byte_identical(registry: Registry, repo_name: str) -> None:
    img = simple_image()
    push_image(registry, repo_name, "v1", img)
    out = run_dist("fetch-object", f"{registry.host}/{repo_name}:v1")
    assert out.returncode == 0, out.stderr
    assert out.stdout == img.raw and sha(out.stdout) == img.digest


def test_index_and_child_manifest(registry: Registry, repo_name: str) -> None:
    idx = multiplatform_index()
    push_image(registry, repo_name, "multi", idx)
    ref = f"{registry.host}/{repo_name}:multi"
    out = run_dist("fetch-object", ref)
    assert out.returncode == 0 and out.stdout == idx.raw
    child = idx.children[0]
    out = run_dist("fetch-object", ref, child.digest, f"mediatype:{child.media_type}")
    assert out.returncode == 0, out.stderr
    assert out.stdout == child.raw


def test_blobs_by_digest_with_and_without_hints(registry: Registry, repo_name: str) -> None:
    img = simple_image()
    push_image(registry, repo_name, "v1", img)
    ref = f"{registry.host}/{repo_name}:v1"
    for layer in img.manifest["layers"]:
        out = run_dist("fetch-object", ref, layer["digest"])
        assert out.returncode == 0, out.stderr
        assert sha(out.stdout) == layer["digest"] and len(out.stdout) == layer["size"]
        hinted = run_dist(
            "fetch-object", ref, layer["digest"], f"mediatype:{layer['mediaType']}",
            f"size:{layer['size']}",
        )  # fmt: skip
        assert hinted.returncode == 0 and hinted.stdout == out.stdout


def test_wrong_size_hint_is_refused(registry: Registry, repo_name: str) -> None:
    img = simple_image()
    push_image(registry, repo_name, "v1", img)
    config = img.manifest["config"]
    out = run_dist(
        "fetch-object", f"{registry.host}/{repo_name}:v1", config["digest"],
        f"mediatype:{config['mediaType']}", f"size:{config['size'] + 1}",
    )  # fmt: skip
    assert out.returncode == 1
    assert "mismatch" in one_error_line(out)


def test_unknown_object_and_bad_hint(registry: Registry, repo_name: str) -> None:
    img = simple_image()
    push_image(registry, repo_name, "v1", img)
    ref = f"{registry.host}/{repo_name}:v1"
    out = run_dist("fetch-object", ref, "sha256:" + "0" * 64)
    assert out.returncode == 1 and "not found" in one_error_line(out)
    out = run_dist("fetch-object", ref, img.digest, "colour:blue")
    assert out.returncode == 2 and "hint" in one_error_line(out)
    out = run_dist("fetch-object", ref, "sha256:abc")
    assert out.returncode == 2 and "digest" in one_error_line(out)


def test_multi_fetch_from_stdin(tmp_path: Path, registry: Registry, repo_name: str) -> None:
    img = simple_image()
    push_image(registry, repo_name, "v1", img)
    m = img.manifest
    missing = "sha256:" + "1" * 64
    lines = [
        f"{m['config']['digest']} mediatype:{m['config']['mediaType']}",
        *(layer["digest"] for layer in m["layers"]),
        missing,
        f"{img.digest} mediatype:{img.media_type}",
    ]
    out_dir = tmp_path / "objects"
    out = run_dist(
        "--json", "fetch-object", "--stdin", "-o", str(out_dir), f"{registry.host}/{repo_name}:v1",
        input=("\n".join(lines) + "\n").encode(),
    )  # fmt: skip
    # One line failed: non-zero exit, the rest fetched anyway.
    assert out.returncode == 1
    assert missing in out.stderr.decode() and "not found" in out.stderr.decode()
    events = [json.loads(ln) for ln in out.stdout.decode().splitlines()]
    assert len(events) == len(lines) - 1
    for ev in events:
        data = Path(ev["path"]).read_bytes()
        assert sha(data) == ev["digest"] and len(data) == ev["size"]
        assert Path(ev["path"]) == out_dir / "sha256" / ev["digest"].split(":")[1]
    assert not (out_dir / "sha256" / missing.split(":")[1]).exists()
    assert not [p for p in (out_dir / "sha256").iterdir() if p.name.startswith(".tmp")]


def test_multi_fetch_usage_errors(tmp_path: Path) -> None:
    out = run_dist("fetch-object", "--stdin", "example.com/a:b")
    assert out.returncode == 2 and "-o DIR" in one_error_line(out)
