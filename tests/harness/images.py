"""Deterministic OCI / Docker schema2 images built in memory, no internet.

``build_layer`` renders a layer spec (see ``tarspec``) and compresses it;
``build_image`` wraps layers in a config and manifest; ``build_index`` wraps
images in an OCI index or Docker manifest list. Every output is a pure
function of the inputs, so digests are stable across runs and machines.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tests.harness.blobs import Blob, Compression, compress, sha256
from tests.harness.tarspec import LayerSpec, tar_bytes

Format = Literal["oci", "docker"]

# Media types, spelled out here rather than imported from the product so a
# typo there fails the tests instead of propagating into them.
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"

LAYER_TYPES: Mapping[tuple[Format, Compression], str] = {
    ("oci", "gzip"): "application/vnd.oci.image.layer.v1.tar+gzip",
    ("oci", "zstd"): "application/vnd.oci.image.layer.v1.tar+zstd",
    ("oci", "none"): "application/vnd.oci.image.layer.v1.tar",
    ("docker", "gzip"): "application/vnd.docker.image.rootfs.diff.tar.gzip",
}

CREATED = "2020-01-01T00:00:00Z"


def layer_media_type(fmt: Format, compression: Compression) -> str:
    try:
        return LAYER_TYPES[(fmt, compression)]
    except KeyError:
        raise ValueError(f"{fmt} images have no {compression} layer media type") from None


@dataclass(frozen=True)
class Layer:
    """A layer blob plus its diff_id; ``tar`` is kept for small layers only."""

    blob: Blob
    diff_id: str
    tar: bytes | None = field(default=None, repr=False)


def build_layer(
    spec: LayerSpec,
    *,
    fmt: Format = "oci",
    compression: Compression = "gzip",
    level: int | None = None,
) -> Layer:
    raw = tar_bytes(spec)
    data = compress(raw, compression, level)
    return Layer(Blob.of(layer_media_type(fmt, compression), data), sha256(raw), raw)


def _dumps(obj: Any) -> bytes:
    # Indented like most tools emit; what matters is that it is fixed.
    return json.dumps(obj, indent=2).encode() + b"\n"


def parse_platform(text: str) -> dict[str, str]:
    parts = text.split("/")
    out = {"architecture": parts[1], "os": parts[0]}
    if len(parts) > 2:
        out["variant"] = parts[2]
    return out


@dataclass(frozen=True)
class BuiltImage:
    """A manifest (with config and layers) or an index (with ``children``)."""

    media_type: str
    raw: bytes = field(repr=False)
    platform: dict[str, str] | None = None
    config: Blob | None = None
    layers: tuple[Layer, ...] = ()
    children: tuple[BuiltImage, ...] = ()

    @property
    def digest(self) -> str:
        return sha256(self.raw)

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def manifest(self) -> dict[str, Any]:
        """The parsed manifest or index JSON."""
        return dict(json.loads(self.raw))

    @property
    def is_index(self) -> bool:
        return self.media_type in (OCI_INDEX, DOCKER_MANIFEST_LIST)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.platform is not None:
            out["platform"] = dict(self.platform)
        out.update(extra)
        return out

    def blobs(self) -> dict[str, Blob]:
        """Every config and layer blob under this image, by digest."""
        out: dict[str, Blob] = {}
        for img in self.manifests():
            if img.config is not None:
                out[img.config.digest] = img.config
            for layer in img.layers:
                out[layer.blob.digest] = layer.blob
        return out

    def manifests(self) -> list[BuiltImage]:
        """This image and every manifest under it, children before parents
        (the order a registry needs them pushed)."""
        out: list[BuiltImage] = []
        for child in self.children:
            out.extend(child.manifests())
        out.append(self)
        return out

    def objects(self) -> Iterator[Blob]:
        """Every object (blobs, then manifests children-first) as a Blob."""
        yield from self.blobs().values()
        for img in self.manifests():
            yield Blob(img.media_type, img.digest, img.size, data=img.raw)

    def child(self, platform: str) -> BuiltImage:
        want = parse_platform(platform)
        for c in self.children:
            if c.platform == want:
                return c
        raise KeyError(platform)


def build_image(
    layers: Sequence[LayerSpec | Layer],
    *,
    fmt: Format = "oci",
    compression: Compression = "gzip",
    platform: str = "linux/amd64",
    config: Mapping[str, Any] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> BuiltImage:
    """A single-platform image; ``config`` adds keys to the image config JSON
    (e.g. ``{"config": {"Env": [...]}}``)."""
    built = [x if isinstance(x, Layer) else build_layer(x, fmt=fmt, compression=compression)
             for x in layers]  # fmt: skip
    plat = parse_platform(platform)
    cfg: dict[str, Any] = {"created": CREATED, **plat}
    cfg["config"] = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}
    cfg["rootfs"] = {"type": "layers", "diff_ids": [x.diff_id for x in built]}
    cfg["history"] = [{"created": CREATED, "created_by": f"layer {i}"} for i in range(len(built))]
    if config:
        cfg.update(config)
    cfg_blob = Blob.of(OCI_CONFIG if fmt == "oci" else DOCKER_CONFIG, _dumps(cfg))
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST if fmt == "oci" else DOCKER_MANIFEST,
        "config": cfg_blob.descriptor(),
        "layers": [x.blob.descriptor() for x in built],
    }
    if annotations:
        if fmt != "oci":
            raise ValueError("Docker schema2 manifests have no annotations")
        manifest["annotations"] = dict(annotations)
    return BuiltImage(manifest["mediaType"], _dumps(manifest), plat, cfg_blob, tuple(built))


def build_index(
    images: Sequence[BuiltImage],
    *,
    fmt: Format = "oci",
    annotations: Mapping[str, str] | None = None,
) -> BuiltImage:
    """An OCI index or Docker manifest list over ``images``."""
    child_type = OCI_MANIFEST if fmt == "oci" else DOCKER_MANIFEST
    for img in images:
        if fmt == "docker" and img.media_type != child_type:
            raise ValueError("a Docker manifest list may only list Docker manifests")
    index: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX if fmt == "oci" else DOCKER_MANIFEST_LIST,
        "manifests": [img.descriptor() for img in images],
    }
    if annotations:
        if fmt != "oci":
            raise ValueError("Docker manifest lists have no annotations")
        index["annotations"] = dict(annotations)
    return BuiltImage(index["mediaType"], _dumps(index), children=tuple(images))
