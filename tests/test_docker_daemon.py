"""docker-archive interop with the real Docker: a private ``dockerd`` 20.10
(tests/harness/dockerd.py) runs ``docker load`` on what `dist export --format
docker` and `dist copy … docker-archive:` write, and ``docker save`` writes
the archives `dist import` and `dist copy docker-archive:…` read; what dist
pushes from them is checked with skopeo and pulled back by docker.

What docker 20.10's ``docker save`` does that hand-made archives did not, and
each test below covers: a layer whose diff_id an earlier image in the same
archive already holds (at another chain position, so another v1 id) is a
*symlink* ``<id>/layer.tar -> ../<other id>/layer.tar``; ``manifest.json``
carries ``"Parent"`` for images built on one another; an image saved by ID
has ``"RepoTags": null`` and no ``repositories`` file; every layer has the
legacy ``VERSION`` and ``json`` files beside it; the configs of images it
built have the Docker-only fields (``container``, ``container_config``,
``docker_version``); the layers it writes itself (``docker build``,
``docker commit``) come from its own tar writer: PAX records for long and
non-ASCII names, whiteouts as ``.wh.`` files and ``.wh..wh..opq``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.dist_cli import json_list, one_error_line
from tests.harness import (
    BuiltImage,
    Registry,
    build_image,
    build_layer,
    docker_image,
    inspect_raw,
    multiplatform_index,
    push_image,
    run_skopeo,
    simple_image,
    write_layout,
)
from tests.harness.dockerd import Dockerd
from tests.harness.fstree import tree
from tests.test_layout import dist, ok, store_digests

REPO = Path(__file__).resolve().parent.parent
MUTATE = REPO / "tests" / "docker" / "mutate.go"
GO = shutil.which("go")

pytestmark = [
    # One daemon per module: every test of it on one xdist worker.
    pytest.mark.xdist_group("dockerd"),
]


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def config_of(image: BuiltImage) -> tuple[str, list[str]]:
    """(config digest, diff_ids) of a built single-platform image."""
    assert image.config is not None and image.config.data is not None
    return image.config.digest, json.loads(image.config.data)["rootfs"]["diff_ids"]


def assert_docker_has(daemon: Dockerd, ref: str, image: BuiltImage) -> dict[str, Any]:
    """docker's image ``ref`` is ``image``: its ID is the config digest, its
    layers the config's diff_ids."""
    got = daemon.inspect(ref)
    digest, diff_ids = config_of(image)
    assert got["Id"] == digest
    assert got["RootFS"] == {"Type": "layers", "Layers": diff_ids}
    return got


def archive_manifest(path: Path) -> list[dict[str, Any]]:
    with tarfile.open(path) as tf:
        f = tf.extractfile("manifest.json")
        assert f is not None
        doc = json.loads(f.read())
    assert isinstance(doc, list)
    return doc


def registry_config(registry: Registry, ref: str) -> tuple[str, list[str]]:
    """(config digest, diff_ids) of ``repo:tag`` in the registry, read by skopeo."""
    raw = run_skopeo("inspect", "--tls-verify=false", "--config", "--raw", f"docker://{ref}").stdout
    info = json.loads(run_skopeo("inspect", "--tls-verify=false", f"docker://{ref}").stdout)
    assert info["Os"] == "linux"
    return sha(raw), json.loads(raw)["rootfs"]["diff_ids"]


def docker_rootfs(daemon: Dockerd, ref: str, dest: Path) -> Path:
    """The files of docker's image ``ref`` as docker applied its layers:
    ``docker create`` (no container runs) and ``docker export``, unpacked."""
    cid = daemon.docker("create", "--network", "none", ref, "/none").stdout.decode().strip()
    try:
        exported = dest.with_suffix(".tar")
        daemon.docker("export", "-o", str(exported), cid)
    finally:
        daemon.docker("rm", cid)
    dest.mkdir()
    subprocess.run(["tar", "-xpf", str(exported), "--numeric-owner", "-C", str(dest)], check=True)
    return dest


# What `docker create` adds to every container's file system.
_DOCKER_ADDS = {".dockerenv", "dev", "proc", "sys", "etc/hostname", "etc/hosts",
                "etc/mtab", "etc/resolv.conf"}  # fmt: skip


def without_docker_additions(
    theirs: dict[str, tuple[object, ...]], ours: dict[str, tuple[object, ...]]
) -> dict[str, tuple[object, ...]]:
    """docker's tree less what ``docker create`` added (``/etc`` too, where
    the image has none)."""
    added = _DOCKER_ADDS | ({"etc"} if "etc" not in ours else set())
    return {
        k: v
        for k, v in theirs.items()
        if k not in added and not k.startswith(("dev/", "proc/", "sys/"))
    }


# -- docker load reads what dist writes ---------------------------------------

IMAGES = {
    "oci-gzip": lambda tag: simple_image(tag=tag),
    "docker-gzip": lambda tag: docker_image(tag=tag),
    "oci-zstd": lambda tag: simple_image(compression="zstd", tag=tag),
    "oci-plain": lambda tag: simple_image(compression="none", tag=tag),
}


@pytest.mark.parametrize("kind", list(IMAGES))
def test_docker_loads_dist_export_and_copy(
    tmp_path: Path, registry: Registry, repo_name: str, dockerd: Dockerd, kind: str
) -> None:
    """Registry images (gzip, zstd or plain layers; OCI or Docker media
    types) exported by dist load into docker as the very same image."""
    image = IMAGES[kind](f"{repo_name}-{kind}")
    push_image(registry, repo_name, "v1", image)
    ref = f"{registry.host}/{repo_name}:v1"
    root = tmp_path / "root"
    ok(dist(root, "pull", ref))
    exported = tmp_path / "export.tar"
    ok(dist(root, "export", "--format", "docker", ref, str(exported)))
    loaded = dockerd.docker("load", "-i", str(exported)).stdout.decode()
    assert f"Loaded image: {ref}" in loaded
    assert_docker_has(dockerd, ref, image)
    # Straight from the registry, under a name of our choosing.
    copied = tmp_path / "copy.tar"
    name = f"ex.io/{kind}:1"
    ok(dist(tmp_path / "r2", "copy", ref, f"docker-archive:{copied}:{name}"))
    dockerd.docker("load", "-i", str(copied))
    got = assert_docker_has(dockerd, name, image)
    assert sorted(got["RepoTags"]) == sorted([ref, name])
    # docker applied the layers to the files dist unpacks, whiteout included.
    ok(dist(root, "unpack", ref, str(tmp_path / "ours")))
    theirs = tree(docker_rootfs(dockerd, name, tmp_path / "theirs"))
    ours = tree(tmp_path / "ours")
    assert "etc/motd" not in theirs
    # Where they differ: a hard link's tar header has a mode of its own
    # (the harness writes 0644 for app/same-as-main.py, a link to the 0755
    # app/main.py). docker chmods the shared inode to it; dist, like umoci
    # and GNU tar (both checked by hand), keeps the first file's mode.
    for path in ("app/main.py", "app/same-as-main.py"):
        assert theirs[path][1] == 0o644 and ours[path][1] == 0o755
        theirs[path] = (theirs[path][0], 0o755, *theirs[path][2:])
    assert without_docker_additions(theirs, ours) == ours


def test_docker_loads_one_platform_of_an_index(
    tmp_path: Path, registry: Registry, repo_name: str, dockerd: Dockerd
) -> None:
    idx = multiplatform_index(tag=repo_name)
    push_image(registry, repo_name, "v1", idx)
    ref = f"{registry.host}/{repo_name}:v1"
    out = tmp_path / "arm.tar"
    name = "ex.io/multi:arm"
    ok(dist(tmp_path / "root", "copy", "--platform", "linux/arm/v7", ref,
            f"docker-archive:{out}:{name}"))  # fmt: skip
    dockerd.docker("load", "-i", str(out))
    got = assert_docker_has(dockerd, name, idx.child("linux/arm/v7"))
    assert (got["Os"], got["Architecture"], got.get("Variant")) == ("linux", "arm", "v7")


def test_docker_loads_an_image_with_a_layer_twice(
    tmp_path: Path, registry: Registry, repo_name: str, dockerd: Dockerd
) -> None:
    """The same layer at two places in one image (two v1 ids, one diff_id)."""
    a = build_layer({"a": f"{repo_name}\n".encode()})
    image = build_image([a, build_layer({"b": b"b\n"}), a])
    push_image(registry, repo_name, "v1", image)
    out = tmp_path / "dup.tar"
    ok(dist(tmp_path / "root", "copy", f"{registry.host}/{repo_name}:v1",
            f"docker-archive:{out}:ex.io/dup:1"))  # fmt: skip
    dockerd.docker("load", "-i", str(out))
    assert_docker_has(dockerd, "ex.io/dup:1", image)


def test_a_digest_reference_loads_untagged(
    tmp_path: Path, registry: Registry, repo_name: str, dockerd: Dockerd
) -> None:
    """By digest and without a name, the archive has no RepoTags: docker
    loads it as an image with no name, known by its ID."""
    image = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", image)
    out = tmp_path / "bydigest.tar"
    ok(dist(tmp_path / "root", "copy", f"{registry.host}/{repo_name}@{image.digest}",
            f"docker-archive:{out}"))  # fmt: skip
    [entry] = archive_manifest(out)
    assert entry["RepoTags"] == []
    loaded = dockerd.docker("load", "-i", str(out)).stdout.decode()
    digest, _ = config_of(image)
    assert f"Loaded image ID: {digest}" in loaded
    assert_docker_has(dockerd, digest, image)


# -- dist reads what docker save writes ---------------------------------------


def load_into_docker(tmp_path: Path, daemon: Dockerd, image: BuiltImage, name: str) -> None:
    """Put ``image`` into docker under ``name`` (by dist's own archive)."""
    root = tmp_path / "loader"
    layout = tmp_path / ("layout-" + name.replace("/", "_").replace(":", "_"))
    write_layout(layout, image, "t")
    out = layout.with_suffix(".tar")
    ok(dist(root, "copy", f"oci:{layout}:t", f"docker-archive:{out}:{name}"))
    daemon.docker("load", "-i", str(out))


def assert_pushed_is_dockers(registry: Registry, ref: str, daemon: Dockerd, name: str) -> None:
    """The image dist pushed to ``ref`` has docker's config and layers."""
    theirs = daemon.inspect(name)
    assert registry_config(registry, ref) == (theirs["Id"], theirs["RootFS"]["Layers"])


def test_docker_save_of_a_retagged_image(
    tmp_path: Path, registry: Registry, repo_name: str, dockerd: Dockerd
) -> None:
    image = simple_image(tag=repo_name)
    load_into_docker(tmp_path, dockerd, image, "ex.io/orig:1")
    dockerd.docker("tag", "ex.io/orig:1", "ex.io/retagged:2")
    saved = tmp_path / "saved.tar"
    dockerd.docker("save", "-o", str(saved), "ex.io/retagged:2")
    [entry] = archive_manifest(saved)
    assert entry["RepoTags"] == ["ex.io/retagged:2"]
    # docker's own layout: <v1 id>/layer.tar with VERSION and json beside it.
    with tarfile.open(saved) as tf:
        names = set(tf.getnames())
    assert "repositories" in names
    for path in entry["Layers"]:
        layer_id, leaf = path.split("/")
        assert leaf == "layer.tar" and {f"{layer_id}/VERSION", f"{layer_id}/json"} <= names
    digest, diff_ids = config_of(image)

    # dist import, from the file and from `docker save` on a pipe.
    root = tmp_path / "root"
    [doc] = json_list(ok(dist(root, "--json", "import", str(saved))).stdout)
    assert doc["name"] == "ex.io/retagged:2"
    assert digest in store_digests(root)
    piped = dockerd.docker("save", "ex.io/retagged:2").stdout
    [again] = json_list(ok(dist(tmp_path / "root2", "--json", "import", "-", input=piped)).stdout)
    assert again["digest"] == doc["digest"]
    # `docker save | gzip`
    gz = tmp_path / "saved.tar.gz"
    gz.write_bytes(gzip.compress(piped, mtime=0))
    [third] = json_list(ok(dist(tmp_path / "root3", "--json", "import", str(gz))).stdout)
    assert third["digest"] == doc["digest"]

    # Into a registry from the archive, and from the store it was imported to.
    dest = f"{registry.host}/{repo_name}:from-save"
    ok(dist(tmp_path / "r4", "copy", f"docker-archive:{saved}:ex.io/retagged:2", dest))
    assert registry_config(registry, dest) == (digest, diff_ids)
    assert_pushed_is_dockers(registry, dest, dockerd, "ex.io/retagged:2")
    ok(dist(root, "push", "ex.io/retagged:2", f"{registry.host}/{repo_name}:from-import"))
    assert registry_config(registry, f"{registry.host}/{repo_name}:from-import") == (
        digest,
        diff_ids,
    )
    # docker pulls what dist pushed (127.0.0.0/8 is an insecure registry
    # to docker by default) and has the same image.
    dockerd.docker("pull", dest)
    assert_docker_has(dockerd, dest, image)

    # One image under two names in one save: one manifest.json entry with
    # both RepoTags; each name imports, and copies, as that image.
    both = tmp_path / "two-names.tar"
    dockerd.docker("save", "-o", str(both), "ex.io/orig:1", "ex.io/retagged:2")
    [entry] = archive_manifest(both)
    assert sorted(entry["RepoTags"]) == ["ex.io/orig:1", "ex.io/retagged:2"]
    docs = json_list(ok(dist(tmp_path / "root5", "--json", "import", str(both))).stdout)
    assert sorted(d["name"] for d in docs) == ["ex.io/orig:1", "ex.io/retagged:2"]
    assert {d["digest"] for d in docs} == {doc["digest"]}
    # docker-archive to docker-archive: what docker wrote, dist rewrites
    # under a new name, and docker loads it as the same image.
    rewritten = tmp_path / "rewritten.tar"
    ok(dist(tmp_path / "r6", "copy", f"docker-archive:{both}:ex.io/orig:1",
            f"docker-archive:{rewritten}:ex.io/rewritten:3"))  # fmt: skip
    dockerd.docker("load", "-i", str(rewritten))
    assert_docker_has(dockerd, "ex.io/rewritten:3", image)


def test_docker_save_of_two_images_sharing_a_layer(
    tmp_path: Path, registry: Registry, repo_name: str, dockerd: Dockerd
) -> None:
    """One `docker save` of two images whose second layer is the same: docker
    writes it once and makes the second image's ``layer.tar`` a symlink."""
    shared = build_layer({"shared": f"{repo_name}\n".encode()})
    one = build_image([build_layer({"one": b"1\n"}), shared])
    two = build_image([build_layer({"two": b"2\n"}), shared, build_layer({"x": b"x\n"})])
    load_into_docker(tmp_path, dockerd, one, "ex.io/one:1")
    load_into_docker(tmp_path, dockerd, two, "ex.io/two:1")
    saved = tmp_path / "both.tar"
    dockerd.docker("save", "-o", str(saved), "ex.io/one:1", "ex.io/two:1")
    entries = archive_manifest(saved)
    assert sorted(e["RepoTags"][0] for e in entries) == ["ex.io/one:1", "ex.io/two:1"]
    with tarfile.open(saved) as tf:
        links = {m.name: m.linkname for m in tf.getmembers() if m.issym()}
    assert len(links) == 1, links
    [(link, target)] = links.items()
    assert link.endswith("/layer.tar") and target.startswith("../")

    root = tmp_path / "root"
    got = {d["name"]: d for d in json_list(ok(dist(root, "--json", "import", str(saved))).stdout)}
    assert set(got) == {"ex.io/one:1", "ex.io/two:1"}
    # The same from a pipe, where the symlink's target was read before it.
    piped = dockerd.docker("save", "ex.io/one:1", "ex.io/two:1").stdout
    proc = dist(tmp_path / "root2", "--json", "import", "-", input=piped)
    assert {d["name"]: d["digest"] for d in json_list(ok(proc).stdout)} == {
        k: v["digest"] for k, v in got.items()
    }
    for name, image in (("ex.io/one:1", one), ("ex.io/two:1", two)):
        dest = f"{registry.host}/{repo_name}:{name.split('/')[1].replace(':', '-')}"
        ok(dist(tmp_path / "r", "copy", f"docker-archive:{saved}:{name}", dest))
        assert registry_config(registry, dest) == config_of(image)
        assert_pushed_is_dockers(registry, dest, dockerd, name)
        ok(dist(root, "unpack", name, str(tmp_path / name.replace("/", "_"))))
    assert (tmp_path / "ex.io_two:1" / "shared").read_bytes() == f"{repo_name}\n".encode()
    # Rewritten by dist into an archive of its own, the symlinked layer
    # included, docker loads the same image.
    rewritten = tmp_path / "two-again.tar"
    ok(dist(tmp_path / "r", "copy", f"docker-archive:{saved}:ex.io/two:1",
            f"docker-archive:{rewritten}:ex.io/two-again:1"))  # fmt: skip
    dockerd.docker("load", "-i", str(rewritten))
    assert_docker_has(dockerd, "ex.io/two-again:1", two)
    # By index too, in the archive's order.
    first = entries[0]["RepoTags"][0]
    ok(dist(tmp_path / "r", "copy", f"docker-archive:{saved}:@1",
            f"{registry.host}/{repo_name}:at1"))  # fmt: skip
    other = "ex.io/two:1" if first == "ex.io/one:1" else "ex.io/one:1"
    assert_pushed_is_dockers(registry, f"{registry.host}/{repo_name}:at1", dockerd, other)


def test_docker_built_images_with_a_parent(
    tmp_path: Path, registry: Registry, repo_name: str, dockerd: Dockerd
) -> None:
    """Images docker built itself (the classic builder: no container runs
    for COPY, ENV, LABEL) carry Docker's own config fields, empty-layer
    history, and, saved together, ``"Parent"`` in manifest.json."""
    ctx = tmp_path / "ctx"
    (ctx / "d").mkdir(parents=True)
    (ctx / "d" / "a.txt").write_text(f"{repo_name}\n")
    # What docker's tar writer needs PAX records for (a path past 100
    # bytes, a non-ASCII name), a symlink and an unusual mode.
    deep = ctx / "d" / ("x" * 60) / ("y" * 60)
    deep.mkdir(parents=True)
    (deep / "long.txt").write_text("long\n")
    (ctx / "d" / "ünïcødé.txt").write_text("u\n")
    (ctx / "d" / "link").symlink_to("a.txt")
    (ctx / "d" / "run.sh").write_text("#!/bin/true\n")
    (ctx / "d" / "run.sh").chmod(0o750)
    (ctx / "Dockerfile.base").write_text("FROM scratch\nCOPY d /d\nENV X=1\nLABEL l=v\n")
    (ctx / "Dockerfile.child").write_text("FROM ex.io/base:1\nCOPY d/a.txt /e/\n")
    legacy = {"DOCKER_BUILDKIT": "0"}
    for name, dockerfile in (("ex.io/base:1", "base"), ("ex.io/child:1", "child")):
        dockerd.docker("build", "-q", "-t", name, "-f", str(ctx / f"Dockerfile.{dockerfile}"),
                       str(ctx), env=legacy)  # fmt: skip
    saved = tmp_path / "built.tar"
    dockerd.docker("save", "-o", str(saved), "ex.io/base:1", "ex.io/child:1")
    entries = {e["RepoTags"][0]: e for e in archive_manifest(saved)}
    base_id = dockerd.inspect("ex.io/base:1")["Id"]
    assert entries["ex.io/child:1"]["Parent"] == base_id
    with tarfile.open(saved) as tf:
        f = tf.extractfile(entries["ex.io/child:1"]["Config"])
        assert f is not None
        config = json.loads(f.read())
    assert {"container_config", "docker_version"} <= set(config)
    assert any(h.get("empty_layer") for h in config["history"])

    root = tmp_path / "root"
    got = {d["name"] for d in json_list(ok(dist(root, "--json", "import", str(saved))).stdout)}
    assert got == {"ex.io/base:1", "ex.io/child:1"}
    for name in ("ex.io/base:1", "ex.io/child:1"):
        dest = f"{registry.host}/{repo_name}:{name.rsplit('/', 1)[1].replace(':', '-')}"
        ok(dist(tmp_path / "r", "copy", f"docker-archive:{saved}:{name}", dest))
        assert_pushed_is_dockers(registry, dest, dockerd, name)
    # docker pulls the child back from the registry as the image it built.
    dockerd.docker("pull", dest)
    assert dockerd.inspect(dest)["Id"] == dockerd.inspect("ex.io/child:1")["Id"]
    ok(dist(root, "unpack", "ex.io/child:1", str(tmp_path / "rootfs")))
    assert (tmp_path / "rootfs" / "e" / "a.txt").read_text() == f"{repo_name}\n"
    # dist unpacks docker's own layer tars to the files docker has.
    theirs = tree(docker_rootfs(dockerd, "ex.io/child:1", tmp_path / "theirs"))
    ours = tree(tmp_path / "rootfs")
    assert without_docker_additions(theirs, ours) == ours
    assert theirs["d/link"][3] == "a.txt" and theirs["d/run.sh"][1] == 0o750


def test_a_layer_docker_wrote_from_a_containers_changes(
    tmp_path: Path, registry: Registry, repo_name: str, dockerd: Dockerd
) -> None:
    """A container (tests/docker/mutate.go, static) removes a file, replaces
    a directory, makes a hard link, a fifo, a setuid file, a file of another
    owner and a symlink; `docker commit` makes a layer of it with docker's
    own tar writer (``.wh.`` files, ``.wh..wh..opq``). dist imports that
    image from `docker save`, unpacks it to the files docker has, and pushes
    it as docker's image."""
    if GO is None:
        pytest.skip("go is not installed (run `make deps`: golang-go)")
    binary = tmp_path / "mutate"
    built = subprocess.run(
        [GO, "build", "-o", str(binary), str(MUTATE)],
        env={
            **os.environ,
            "GO111MODULE": "off",
            "CGO_ENABLED": "0",
            "GOFLAGS": "",
            "GOCACHE": str(REPO / ".cache" / "go-build"),
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    image = simple_image(tag=repo_name)
    load_into_docker(tmp_path, dockerd, image, "ex.io/base:1")
    cid = dockerd.docker("create", "--network", "none", "ex.io/base:1", "/mutate")
    container = cid.stdout.decode().strip()
    try:
        dockerd.docker("cp", str(binary), f"{container}:/mutate")
        ran = dockerd.docker("start", "-a", container)
        assert ran.stdout.decode().strip() == "mutated"
        dockerd.docker("commit", container, "ex.io/mutated:1")
    finally:
        dockerd.docker("rm", container)
    saved = tmp_path / "mutated.tar"
    dockerd.docker("save", "-o", str(saved), "ex.io/mutated:1")
    [entry] = archive_manifest(saved)
    with tarfile.open(saved) as tf:
        top = tf.extractfile(entry["Layers"][-1])
        assert top is not None
        with tarfile.open(fileobj=top) as layer:
            members = {m.name: m for m in layer.getmembers()}
    assert "etc/.wh.os-release" in members and "app/.wh..wh..opq" in members
    assert members["app/new-link"].islnk() and members["app/fifo"].isfifo()
    assert members["app/setuid"].mode & 0o4000 and members["app/new"].uid == 1000

    root = tmp_path / "root"
    ok(dist(root, "import", str(saved)))
    ok(dist(root, "unpack", "ex.io/mutated:1", str(tmp_path / "ours")))
    ours = tree(tmp_path / "ours")
    theirs = tree(docker_rootfs(dockerd, "ex.io/mutated:1", tmp_path / "theirs"))
    assert "etc/os-release" not in ours and "app/main.py" not in ours
    assert ours["app/setuid"][1] == 0o4755 and ours["app/new"][2] == (1000, 1000)
    # The base image's hard link mode difference (see the first test) is
    # gone with /app: the trees match in full.
    assert without_docker_additions(theirs, ours) == ours
    dest = f"{registry.host}/{repo_name}:mutated"
    ok(dist(tmp_path / "r", "copy", f"docker-archive:{saved}", dest))
    assert_pushed_is_dockers(registry, dest, dockerd, "ex.io/mutated:1")
    dockerd.docker("pull", dest)
    assert dockerd.inspect(dest)["Id"] == dockerd.inspect("ex.io/mutated:1")["Id"]


def test_docker_save_by_id_has_no_tags(
    tmp_path: Path, registry: Registry, repo_name: str, dockerd: Dockerd
) -> None:
    """`docker save <id>` writes ``"RepoTags": null`` and no repositories
    file: dist import asks for --name, dist copy takes the image as it is."""
    image = simple_image(tag=repo_name)
    load_into_docker(tmp_path, dockerd, image, "ex.io/byid:1")
    digest, diff_ids = config_of(image)
    saved = tmp_path / "byid.tar"
    dockerd.docker("save", "-o", str(saved), digest[7:19])
    [entry] = archive_manifest(saved)
    assert entry["RepoTags"] is None
    with tarfile.open(saved) as tf:
        assert "repositories" not in tf.getnames()
    root = tmp_path / "root"
    proc = dist(root, "import", str(saved))
    assert proc.returncode == 2 and "give --name" in one_error_line(proc)
    [doc] = json_list(ok(dist(root, "--json", "import", str(saved), "--name", "ex.io/n")).stdout)
    assert doc["name"].startswith("ex.io/n@sha256:")
    dest = f"{registry.host}/{repo_name}:byid"
    ok(dist(tmp_path / "r", "copy", f"docker-archive:{saved}", dest))
    assert registry_config(registry, dest) == (digest, diff_ids)
    assert json.loads(inspect_raw(registry, f"{repo_name}:byid"))["config"]["digest"] == digest


# -- the harness itself -------------------------------------------------------


def test_the_private_daemon_keeps_to_its_directory(
    dockerd: Dockerd, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The daemon's state, key and containerd are under its own directory,
    and stopping it by PID leaves no process and no mount behind."""
    info = json.loads(dockerd.docker("info", "--format", "{{json .}}").stdout)
    assert info["DockerRootDir"] == str(dockerd.data_root)
    assert info["Driver"] == dockerd.storage_driver
    assert (dockerd.workdir / "key.json").is_file()
    containerd = dockerd._containerd_pid()
    assert containerd is not None and dockerd._is_our_containerd(containerd)
    # A second one, started and stopped here (a short path: sockets).
    workdir = tmp_path_factory.mktemp("d")
    other = Dockerd(workdir).start()
    pid, its_containerd = other.pid, other._containerd_pid()
    assert pid is not None and its_containerd is not None and its_containerd != containerd
    other.stop()
    assert not Path(f"/proc/{pid}").exists() and not Path(f"/proc/{its_containerd}").exists()
    mounts = Path("/proc/self/mounts").read_text()
    assert str(workdir) not in mounts
    assert not list(Path("/sys/fs/cgroup").glob(f"*/{other.cgroup_parent}"))
    # The module's daemon is untouched.
    assert dockerd.running() and dockerd._is_our_containerd(containerd)
