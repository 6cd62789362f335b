"""`dist unpack` applies lower layers while upper ones still download.

The fault proxy holds back the top layer's blob; while it is held, the files of
the lower layers must already be on disk and the process still running.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.dist_cli import json_doc, json_list
from tests.harness import (
    BuiltImage,
    FaultProxy,
    File,
    Registry,
    build_image,
    build_layer,
    push_image,
)

STALL_SECONDS = 8.0


def three_layers(tag: str, *, lie_about_first: bool = False) -> BuiltImage:
    layers = [
        build_layer({"one.txt": File(f"one {tag}\n".encode())}),
        build_layer({"two.txt": File(f"two {tag}\n".encode())}),
        build_layer({"three.txt": File(f"three {tag}\n".encode())}),
    ]
    config = None
    if lie_about_first:
        ids = [x.diff_id for x in layers]
        ids[0] = ids[1]
        config = {"rootfs": {"type": "layers", "diff_ids": ids}}
    return build_image(layers, config=config)


def start_unpack(root: Path, ref: str, dest: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "ocidist", "--root", str(root), "--json", "unpack", ref, str(dest)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_for(path: Path, content: bytes, proc: subprocess.Popen[bytes], limit: float) -> None:
    end = time.monotonic() + limit
    while time.monotonic() < end and proc.poll() is None:
        if path.exists() and path.read_bytes() == content:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} did not appear (process exit: {proc.poll()})")


def test_lower_layers_applied_while_top_layer_stalls(
    tmp_path: Path, registry: Registry, fault_proxy: FaultProxy, repo_name: str
) -> None:
    image = three_layers(repo_name)
    push_image(registry, repo_name, "v1", image)
    top = image.layers[2].blob.digest
    fault_proxy.stall(STALL_SECONDS, f"/blobs/{top}")
    dest = tmp_path / "dest"
    proc = start_unpack(tmp_path / "root", f"{fault_proxy.host}/{repo_name}:v1", dest)
    try:
        wait_for(dest / "one.txt", f"one {repo_name}\n".encode(), proc, STALL_SECONDS / 2)
        wait_for(dest / "two.txt", f"two {repo_name}\n".encode(), proc, STALL_SECONDS / 2)
        # The top layer is being held back right now: asked for, not applied.
        assert proc.poll() is None
        assert fault_proxy.count("GET", f"/blobs/{top}$") == 1
        assert not (dest / "three.txt").exists()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()
    assert (dest / "three.txt").read_bytes() == f"three {repo_name}\n".encode()
    doc = json_doc(out)
    # The split the bench reports: downloading took the stall; applying did not.
    assert doc["downloadSeconds"] >= STALL_SECONDS * 0.9
    assert doc["applySeconds"] < doc["downloadSeconds"]
    assert doc["waitSeconds"] > 0


def test_failed_layer_does_not_wait_for_stalled_download(
    tmp_path: Path, registry: Registry, fault_proxy: FaultProxy, repo_name: str
) -> None:
    # The first layer fails its diff_id check while the top layer is held back
    # for far longer than the command may take: the error comes out at once.
    image = three_layers(repo_name, lie_about_first=True)
    push_image(registry, repo_name, "v1", image)
    fault_proxy.stall(300, f"/blobs/{image.layers[2].blob.digest}")
    dest = tmp_path / "dest"
    proc = start_unpack(tmp_path / "root", f"{fault_proxy.host}/{repo_name}:v1", dest)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1
    # --json: the error is one event on stderr; stdout has progress events only.
    (error,) = json_list(err)
    assert error["error"] == "DigestMismatch" and "diff_ids" in error["message"]
    assert "done" not in [json.loads(line)["event"] for line in out.splitlines()]
    assert not dest.exists()
