"""The library facade: `from ocidist import Client`, against the real
registry; the README's example runs as written (host and paths swapped for
the test's); the API reference builds from the docstrings."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ocidist import Client, ProgressEvent
from ocidist.errors import NotFound
from tests.harness import Registry, multiplatform_index, push_image, simple_image

ROOT = Path(__file__).resolve().parent.parent


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Using the library", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README has no python example under 'Using the library'"
    return match.group(1)


def test_readme_example_runs(registry: Registry, repo_name: str, tmp_path: Path) -> None:
    image = simple_image(tag=repo_name)
    push_image(registry, repo_name, "1.0", image)
    code = (
        readme_example()
        .replace("localhost:5000/demo/hello", f"{registry.host}/{repo_name}")
        .replace("/tmp/ocidist-example", str(tmp_path / "example"))
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{registry.host}/{repo_name}:1.0 {image.digest} {image.size}"
    objects = {b.digest: b.size for b in image.objects()}  # manifest, config, layers
    assert lines[1] == f"pulled {len(objects)} objects, {sum(objects.values())} bytes"
    assert lines[2] == f"application/vnd.oci.image.manifest.v1+json {len(image.layers)} layers"
    assert lines[3].startswith(f"unpacked {len(image.layers)} layers into ")
    assert (tmp_path / "example-rootfs/app/main.py").exists()


def test_pull_push_copy_with_progress_callbacks(
    registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    index = multiplatform_index(tag=repo_name)
    push_image(registry, repo_name, "v1", index)
    ref = f"{registry.host}/{repo_name}:v1"
    events: list[ProgressEvent] = []
    with Client(tmp_path / "root", progress=events.append) as client:
        result = client.pull(ref, platform="linux/arm64")
        assert result.name == ref and str(result.target.digest) == index.digest
        kinds = {(e.event, e.kind) for e in events}
        assert {("fetched", "index"), ("fetched", "manifest"), ("fetched", "layer")} <= kinds
        assert {("start", "layer"), ("fetched", "config")} <= kinds
        assert [i.name for i in client.images()] == [ref]

        # Pulled for one platform: that platform's manifest is what can be pushed.
        pushed = client.push(ref, f"{registry.host}/{repo_name}-pushed:v1", platform="linux/arm64")
        assert str(pushed.target.digest) == index.child("linux/arm64/v8").digest

        mine: list[ProgressEvent] = []
        copied = client.copy(ref, f"{registry.host}/{repo_name}-copied:v1", progress=mine.append)
        assert str(copied.target.digest) == index.digest
        assert {e.event for e in mine} >= {"pushed"}

        with pytest.raises(NotFound, match="the index has linux/amd64"):
            client.pull(ref, platform="linux/s390x")


def test_unpack_inspect_fetch_object(registry: Registry, repo_name: str, tmp_path: Path) -> None:
    image = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", image)
    ref = f"{registry.host}/{repo_name}:v1"
    with Client(tmp_path / "root") as client:
        assert client.fetch_object(ref) == image.raw
        layer = image.layers[0].blob
        assert client.fetch_object(ref, layer.digest) == layer.data
        doc = client.inspect(ref)
        assert doc["digest"] == image.digest and len(doc["layers"]) == len(image.layers)
        result = client.unpack(ref, tmp_path / "rootfs")
        assert [str(d) for d in result.diff_ids] == [x.diff_id for x in image.layers]
        assert (tmp_path / "rootfs/etc/os-release").exists()


def test_artifacts(registry: Registry, repo_name: str, tmp_path: Path) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights\n" * 1000)
    ref = f"{registry.host}/{repo_name}:model"
    with Client(tmp_path / "root") as client:
        pushed = client.push_artifact(
            ref, [str(model)], artifact_type="application/vnd.example.model.v1"
        )
        assert pushed.result.name == ref and str(pushed.desc.digest).startswith("sha256:")
        pulled = client.pull_artifact(ref, tmp_path / "out")
        assert [p.title for p in pulled] == ["model.bin"]
        assert (tmp_path / "out/model.bin").read_bytes() == model.read_bytes()


def test_import_is_lazy() -> None:
    """`dist` imports the package on every start; the facade is not loaded then."""
    code = "import sys, ocidist, ocidist.cli.main; print('ocidist.client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def makefile_doc_modules() -> list[str]:
    """The modules `make docs` documents, read from the Makefile itself so the
    test and the target cannot drift apart."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    match = re.search(r"^DOC_MODULES\s*:?=(.*)$", text, re.M)
    assert match, "Makefile has no DOC_MODULES"
    return match.group(1).split()


def test_api_reference_builds(tmp_path: Path) -> None:
    pytest.importorskip("pdoc")
    modules = makefile_doc_modules()
    assert "ocidist.client" in modules and len(modules) >= 12, modules
    # The same command as `make docs`, all modules in one pdoc run (~2 s). pdoc
    # reports what it cannot render (an unparsable annotation, a broken
    # docstring) as Python warnings on stderr and still exits 0, so an empty
    # stderr is the check that the reference is whole.
    proc = subprocess.run(
        [sys.executable, "-m", "pdoc", "--docformat", "google", "-o", str(tmp_path), *modules],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    for module in modules:
        page = tmp_path / (module.replace(".", "/") + ".html")
        assert page.is_file(), module
    assert (tmp_path / "index.html").is_file()
    page = (tmp_path / "ocidist/client.html").read_text()
    for method in ("resolve", "pull", "push", "copy", "unpack", "inspect", "fetch_object"):
        assert f'id="Client.{method}"' in page, method
    assert "push_artifact" in page and "pull_artifact" in page
    assert "ProgressEvent" in page
