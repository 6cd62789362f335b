"""The bench's images: built locally (no internet), pushed once to the
bench's own registry, described well enough for every peer to fetch them."""

from __future__ import annotations

import dataclasses
import http.client
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness import (
    BuiltImage,
    Registry,
    large_image,
    many_small_layers,
    multiplatform_index,
    push_image,
    write_layout,
)

MB = 1000 * 1000


@dataclass
class Workload:
    name: str
    image: BuiltImage
    host: str  # registry host:port
    repo: str
    spec: Spec
    tag: str = "bench"
    # Shared by the copies ``via`` makes: the layout is written once.
    _layouts: dict[Path, Path] = field(default_factory=dict, repr=False)

    @property
    def ref(self) -> str:
        return f"{self.host}/{self.repo}:{self.tag}"

    @property
    def compressed_bytes(self) -> int:
        return sum(b.size for b in self.image.objects())

    @property
    def object_count(self) -> int:
        return sum(1 for _ in self.image.objects())

    def urls(self) -> list[str]:
        """Every object of the image as a plain URL (the curl floor's list)."""
        base = f"http://{self.host}/v2/{self.repo}"
        out = [f"{base}/blobs/{d}" for d in self.image.blobs()]
        out += [f"{base}/manifests/{m.digest}" for m in self.image.manifests()]
        return out

    def via(self, host: str) -> Workload:
        """The same image reached through another address (a network relay)."""
        return dataclasses.replace(self, host=host)

    def layout(self, root: Path) -> Path:
        """The image as an OCI layout (tag ``bench``), written once: the input
        of the unpack and push peers."""
        if root not in self._layouts:
            self._layouts[root] = write_layout(root / f"layout-{self.name}", self.image, self.tag)
        return self._layouts[root]


@dataclass(frozen=True)
class Spec:
    name: str
    describe: str
    build: Callable[[Path], BuiltImage]
    optional: bool = False  # only with its flag (``--big-blob``, ``--gb-blob``)
    # Networks it is left out of (see the gb-blob entry).
    skip_networks: tuple[str, ...] = ()


SPECS: tuple[Spec, ...] = (
    Spec(
        "large",
        "4 large gzip layers, >=150 MB compressed, text-like content",
        lambda cache: large_image(cache, total_compressed=150 * MB, layers=4),
    ),
    Spec("many-small", "40 small layers", lambda cache: many_small_layers(count=40)),
    Spec("multi-platform", "index of 3 platforms (all fetched)", lambda _: multiplatform_index()),
    Spec(
        "big-blob",
        "one >=500 MB blob (peak RSS)",
        lambda cache: large_image(cache, total_compressed=500 * MB, layers=1, seed=7),
        optional=True,
        # On a network link gb-blob is the big object (wan).
        skip_networks=("wan", "far"),
    ),
    Spec(
        "gb-blob",
        "one >=1 GB blob (network profiles: parallel ranges)",
        lambda cache: large_image(cache, total_compressed=1000 * MB, layers=1, seed=11),
        optional=True,
        # For the WAN link only: on loopback big-blob covers a big object,
        # and a single stream of 1 GB at far's 8 MB/s takes two minutes per
        # peer run (the bench would take hours).
        skip_networks=("loopback", "far"),
    ),
)


def build(
    names: list[str], cache: Path, registry: Registry, workdir: Path, log: Callable[[str], None]
) -> list[Workload]:
    """Build the named workloads (big blobs are cached in ``cache``) and make
    sure ``registry`` holds each as ``bench-<name>:bench``."""
    out = []
    for spec in SPECS:
        if spec.name not in names:
            continue
        t = time.perf_counter()
        image = spec.build(cache)
        w = Workload(spec.name, image, registry.host, f"bench-{spec.name}", spec)
        if not _has_manifest(registry.host, w.repo, image.digest):
            push_image(registry, w.repo, w.tag, image, workdir=workdir)
        log(
            f"workload {spec.name}: {w.object_count} objects, "
            f"{w.compressed_bytes / MB:.1f} MB ({time.perf_counter() - t:.1f}s to prepare)"
        )
        out.append(w)
    return out


def _has_manifest(host: str, repo: str, digest: str) -> bool:
    # The registry's storage outlives a bench run; a present image needs no push.
    conn = http.client.HTTPConnection(host, timeout=10)
    try:
        conn.request("HEAD", f"/v2/{repo}/manifests/{digest}")
        return conn.getresponse().status == 200
    finally:
        conn.close()
