"""`dist copy SRC DST` between registries, OCI layouts and archives, docker
archives and the local store — each side checked by skopeo (and umoci) — and
`copy --referrers` / `pull --referrers`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.dist_cli import json_list, one_error_line
from tests.harness import (
    Registry,
    inspect_raw,
    multiplatform_index,
    push_image,
    run_skopeo,
    simple_image,
)
from tests.harness.fstree import tree
from tests.test_layout import assert_store_verifies, dist, ok, store_digests


def done(proc: subprocess.CompletedProcess[bytes]) -> dict[str, object]:
    return dict(json.loads(ok(proc).stdout.decode().splitlines()[-1]))


def test_registry_to_layout_and_back_keeps_every_digest(
    tmp_path: Path, registry: Registry, repo_name: str, skopeo: str, umoci: str
) -> None:
    idx = multiplatform_index(tag=repo_name)
    push_image(registry, repo_name, "v1", idx)
    src = f"{registry.host}/{repo_name}:v1"
    layout = tmp_path / "layout"
    root = tmp_path / "root"
    ok(dist(root, "copy", src, f"oci:{layout}:v1"))
    assert store_digests(root) == set()  # staged in a temporary store, not the user's
    out = subprocess.run([umoci, "ls", "--layout", str(layout)], capture_output=True, check=True)
    assert out.stdout.decode().split() == ["v1"]
    # skopeo reads the layout and pushes the very same index.
    run_skopeo("copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
               f"oci:{layout}:v1", f"docker://{registry.host}/{repo_name}/sk:v1")  # fmt: skip
    assert inspect_raw(registry, f"{repo_name}/sk:v1") == idx.raw
    # And dist copies it back to a registry, byte for byte.
    doc = done(dist(root, "--json", "copy", f"oci:{layout}:v1", f"{src}-back"))
    assert doc["digest"] == idx.digest
    assert inspect_raw(registry, f"{repo_name}:v1-back") == idx.raw
    for child in idx.children:
        assert inspect_raw(registry, f"{repo_name}@{child.digest}") == child.raw


def test_oci_archive_both_ways_with_skopeo(
    tmp_path: Path, registry: Registry, repo_name: str, skopeo: str
) -> None:
    image = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", image)
    src = f"{registry.host}/{repo_name}:v1"
    archive = tmp_path / "image.oci"  # any name: oci-archive: says it is a tar
    ok(dist(tmp_path / "root", "copy", src, f"oci-archive:{archive}:tagged"))
    raw = run_skopeo("inspect", "--raw", f"oci-archive:{archive}:tagged").stdout
    assert raw == image.raw
    skopeo_archive = tmp_path / "skopeo.tar"
    run_skopeo("copy", "--src-tls-verify=false", f"docker://{src}",
               f"oci-archive:{skopeo_archive}:sk")  # fmt: skip
    ok(dist(tmp_path / "root", "copy", f"oci-archive:{skopeo_archive}:sk", f"{src}-from-skopeo"))
    assert inspect_raw(registry, f"{repo_name}:v1-from-skopeo") == image.raw


def test_docker_archive_both_ways_with_skopeo(
    tmp_path: Path, registry: Registry, repo_name: str, skopeo: str
) -> None:
    idx = multiplatform_index(tag=repo_name)
    push_image(registry, repo_name, "v1", idx)
    src = f"{registry.host}/{repo_name}:v1"
    saved = tmp_path / "saved.tar"
    root = tmp_path / "root"
    ok(dist(root, "copy", "--platform", "linux/arm/v7", src, f"docker-archive:{saved}:ex.io/a:7"))
    arm = idx.child("linux/arm/v7")
    info = json.loads(run_skopeo("inspect", f"docker-archive:{saved}").stdout)
    assert info["Architecture"] == "arm" and info["Os"] == "linux"
    assert arm.config is not None
    assert info["Layers"] == json.loads(arm.config.read())["rootfs"]["diff_ids"]
    tar = subprocess.run(["tar", "-xOf", str(saved), "manifest.json"], capture_output=True)
    [entry] = json.loads(tar.stdout)
    assert entry["RepoTags"] == ["ex.io/a:7"]
    # skopeo writes one from the registry; dist copies it to the registry; it
    # unpacks to the same tree as the original platform image.
    sk = tmp_path / "skopeo.tar"
    run_skopeo("copy", "--src-tls-verify=false", "--override-arch", "arm64",
               f"docker://{src}", f"docker-archive:{sk}:ex.io/b:1")  # fmt: skip
    doc = done(dist(root, "--json", "copy", f"docker-archive:{sk}", f"{src}-docker"))
    ok(dist(root, "pull", f"{src}-docker"))
    ok(dist(root, "unpack", f"{src}-docker", str(tmp_path / "a")))
    ok(dist(root, "unpack", "--platform", "linux/arm64", src, str(tmp_path / "b")))
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    assert doc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"


def test_store_as_source_and_destination(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    image = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", image)
    root = tmp_path / "root"
    ok(dist(root, "copy", f"{registry.host}/{repo_name}:v1", "store:example.com/kept:1"))
    assert store_digests(root) == {b.digest for b in image.objects()}
    assert_store_verifies(root)
    listed = json_list(ok(dist(root, "--json", "images", "ls")).stdout)
    assert [(i["name"], i["digest"]) for i in listed] == [("example.com/kept:1", image.digest)]
    ok(dist(root, "copy", "store:example.com/kept:1", f"{registry.host}/{repo_name}:from-store"))
    assert inspect_raw(registry, f"{repo_name}:from-store") == image.raw
    ok(dist(root, "copy", "store:example.com/kept:1", f"oci:{tmp_path / 'layout'}"))
    index = json.loads((tmp_path / "layout" / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [image.digest]


def test_a_corrupt_source_blob_stops_the_copy(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    image = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", image)
    layout = tmp_path / "layout"
    ok(dist(tmp_path / "root", "copy", f"{registry.host}/{repo_name}:v1", f"oci:{layout}:v1"))
    victim = layout / "blobs" / "sha256" / image.layers[1].blob.digest[7:]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    dst = f"{registry.host}/{repo_name}:corrupt"
    proc = dist(tmp_path / "root", "copy", f"oci:{layout}:v1", dst)
    assert proc.returncode == 1 and "digest mismatch" in one_error_line(proc)
    proc = dist(tmp_path / "root", "inspect", dst)
    assert proc.returncode == 1 and "not found" in one_error_line(proc)
    # No staging store left behind next to the layout either.
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".ocidist")] == []


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--referrers", "oci:x", "localhost:5000/a:1"], "--referrers"),
        (["oci:", "localhost:5000/a:1"], "no path"),
        (["docker-archive:/nonexistent.tar", "localhost:5000/a:1"], "not found"),
    ],
)
def test_bad_copies_are_one_line(tmp_path: Path, args: list[str], words: str) -> None:
    proc = dist(tmp_path, "copy", *args)
    assert proc.returncode != 0 and words in one_error_line(proc)


def _attach(root: Path, subject: str, artifact_type: str) -> str:
    out = ok(dist(root, "--json", "attach", subject, "--artifact-type", artifact_type))
    return str(json.loads(out.stdout.decode().splitlines()[-1])["digest"])


def test_copy_and_pull_carry_referrers_recursively(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    image = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", image)
    src = f"{registry.host}/{repo_name}:v1"
    root = tmp_path / "root"
    sbom = _attach(root, src, "application/spdx+json")
    # A signature of the SBOM: a referrer of a referrer.
    sig = _attach(root, f"{registry.host}/{repo_name}@{sbom}", "application/vnd.example.sig")
    dst = f"{registry.host}/{repo_name}/copy:v1"
    doc = done(dist(root, "--json", "copy", "--referrers", src, dst))
    assert {r["digest"] for r in doc["referrers"]} == {sbom, sig}  # type: ignore[attr-defined]
    listed = json.loads(ok(dist(root, "--json", "referrers", dst)).stdout)
    assert [r["digest"] for r in listed["referrers"]] == [sbom]
    assert listed["referrers"][0]["artifactType"] == "application/spdx+json"
    nested = json.loads(
        ok(dist(root, "--json", "referrers", f"{registry.host}/{repo_name}/copy@{sbom}")).stdout
    )
    assert [r["digest"] for r in nested["referrers"]] == [sig]
    assert inspect_raw(registry, f"{repo_name}/copy@{sig}") == inspect_raw(
        registry, f"{repo_name}@{sig}"
    )
    # pull --referrers keeps them in the store, and prune keeps them too.
    store = tmp_path / "store"
    pulled = done(dist(store, "--json", "pull", "--referrers", src))
    assert {r["digest"] for r in pulled["referrers"]} == {sbom, sig}  # type: ignore[attr-defined]
    assert {sbom, sig} <= store_digests(store)
    ok(dist(store, "content", "prune", "--force"))
    assert {sbom, sig, image.digest} <= store_digests(store)


def _blob(registry: Registry, repo: str, digest: str) -> bytes:
    import urllib.request

    url = f"http://{registry.host}/v2/{repo}/blobs/{digest}"
    with urllib.request.urlopen(url, timeout=30) as resp:
        return bytes(resp.read())


def test_docker_archive_layers_are_gzipped_for_a_registry_as_skopeo_does(
    tmp_path: Path, registry: Registry, repo_name: str, skopeo: str
) -> None:
    import gzip
    import hashlib

    push_image(registry, repo_name, "v1", multiplatform_index(tag=repo_name))
    src = f"{registry.host}/{repo_name}:v1"
    sk = tmp_path / "sk.tar"
    run_skopeo("copy", "--src-tls-verify=false", "--override-arch", "arm64",
               f"docker://{src}", f"docker-archive:{sk}:ex.io/b:1")  # fmt: skip
    # What skopeo does with this archive: gzip for a registry, plain for a layout.
    run_skopeo("copy", "--dest-tls-verify=false", f"docker-archive:{sk}",
               f"docker://{registry.host}/{repo_name}:by-skopeo")  # fmt: skip
    theirs = json.loads(inspect_raw(registry, f"{repo_name}:by-skopeo"))
    assert all(layer["mediaType"].endswith(".gzip") for layer in theirs["layers"])
    root = tmp_path / "root"
    doc = done(dist(root, "--json", "copy", f"docker-archive:{sk}", f"{src}-dist"))
    raw = inspect_raw(registry, f"{repo_name}:v1-dist")
    assert doc["digest"] == "sha256:" + hashlib.sha256(raw).hexdigest()
    ours = json.loads(raw)
    config = json.loads(_blob(registry, repo_name, ours["config"]["digest"]))
    assert ours["config"]["digest"] == theirs["config"]["digest"]
    assert len(ours["layers"]) == len(config["rootfs"]["diff_ids"])
    for layer, diff_id in zip(ours["layers"], config["rootfs"]["diff_ids"], strict=True):
        assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
        blob = _blob(registry, repo_name, layer["digest"])
        assert len(blob) == layer["size"]
        assert "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest() == diff_id
    # The image unpacks to what skopeo's copy unpacks to.
    ok(dist(root, "unpack", f"{src}-dist", str(tmp_path / "a")))
    ok(dist(root, "unpack", f"{registry.host}/{repo_name}:by-skopeo", str(tmp_path / "b")))
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    # A layout keeps the archive's plain layers, as skopeo's oci: does.
    ok(dist(root, "copy", f"docker-archive:{sk}", f"oci:{tmp_path / 'lay'}:t"))
    index = json.loads((tmp_path / "lay" / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":")[1]
    kept = json.loads((tmp_path / "lay" / "blobs" / "sha256" / digest).read_text())
    assert [x["mediaType"] for x in kept["layers"]] == [
        "application/vnd.oci.image.layer.v1.tar"
    ] * len(kept["layers"])


def test_an_image_a_layout_or_archive_lacks_is_named_with_what_it_has(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    """A :TAG (or @N) the layout or docker-archive does not hold, or none
    given where it holds several, lists the images it does hold, escaped."""
    image = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", image)
    src = f"{registry.host}/{repo_name}:v1"
    root = tmp_path / "root"
    layout, saved = tmp_path / "layout", tmp_path / "saved.tar"
    for tag in ("v1", "v2\x1b[31m"):
        ok(dist(root, "copy", src, f"oci:{layout}:{tag}"))
    ok(dist(root, "copy", src, f"docker-archive:{saved}:ex.io/a:7"))
    out = f"oci:{tmp_path / 'out'}:x"

    def refused(source: str, words: str) -> None:
        proc = dist(root, "copy", source, out)
        assert proc.returncode != 0
        line = one_error_line(proc)
        assert words in line, line

    has = "(the layout has v1, v2\\x1b[31m)"
    refused(f"oci:{layout}:v3", f"{layout}: no image tagged v3 {has}")
    refused(f"oci:{layout}", f"{layout}: holds 2 images: name one with :TAG {has}")
    refused(
        f"docker-archive:{saved}:ex.io/b:1",
        "no image tagged ex.io/b:1 (the archive has @0 ex.io/a:7)",
    )
    refused(f"docker-archive:{saved}:@3", "no image @3 (the archive has @0 ex.io/a:7)")
    assert not (tmp_path / "out").exists()
