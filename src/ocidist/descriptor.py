"""Descriptors, platforms and media types (OCI image-spec and Docker schema2)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ocidist.digest import Digest
from ocidist.errors import InvalidContent
from ocidist.text import quote
from ocidist.value import Value

# Manifests and indexes.
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

# Configs.
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"

# Layers.
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

OCTET_STREAM = "application/octet-stream"

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
# Order matters only for readability; registries pick by their own preference.
ACCEPT_MANIFESTS = (DOCKER_MANIFEST_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST)

# Manifests are read into memory; containerd caps at ~4 MB and c/image at 4 MiB.
MAX_MANIFEST_SIZE = 4 * 1024 * 1024

# containerd's label (on stored content) and annotation (on a descriptor being
# pushed): ``<prefix><registry>`` = comma-separated repositories of that
# registry the object came from, which a push can mount it from.
DISTRIBUTION_SOURCE = "containerd.io/distribution.source."


# RFC 6838 §4.2 (the image-spec requires media types to comply): type "/"
# subtype, each a restricted-name. Parameters are stripped before this check.
_RESTRICTED_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MEDIA_TYPE = re.compile(f"{_RESTRICTED_NAME}/{_RESTRICTED_NAME}", re.ASCII)
# Platform os, architecture and variant: containerd's platform specifier
# grammar (GOOS/GOARCH values, "unknown", "v8" …), bounded.
_PLATFORM_FIELD = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)
# A size is an int64 everywhere else (Go registries, containerd).
MAX_SIZE = (1 << 63) - 1


def is_media_type(text: str) -> bool:
    """``text`` (parameters stripped) is a media type by RFC 6838's grammar."""
    return bool(_MEDIA_TYPE.fullmatch(text))


def strip_params(media_type: str) -> str:
    """``application/json; charset=utf-8`` -> ``application/json``."""
    return media_type.split(";", 1)[0].strip().lower()


def is_manifest(media_type: str) -> bool:
    return strip_params(media_type) in MANIFEST_TYPES


def is_index(media_type: str) -> bool:
    return strip_params(media_type) in INDEX_TYPES


def is_manifest_or_index(media_type: str) -> bool:
    mt = strip_params(media_type)
    return mt in MANIFEST_TYPES or mt in INDEX_TYPES


def is_config(media_type: str) -> bool:
    return strip_params(media_type) in (OCI_CONFIG, DOCKER_CONFIG)


def is_layer(media_type: str) -> bool:
    mt = strip_params(media_type)
    return mt.startswith(
        ("application/vnd.oci.image.layer.", "application/vnd.docker.image.rootfs.")
    )


def object_kind(media_type: str) -> str:
    """What an object is, for people: index, manifest, config, layer or blob."""
    for kind, test in (
        ("index", is_index),
        ("manifest", is_manifest),
        ("config", is_config),
        ("layer", is_layer),
    ):
        if test(media_type):
            return kind
    return "blob"


def _media_type_field(obj: Mapping[str, Any], key: str, dgst: Digest) -> str:
    """A descriptor's ``mediaType``/``artifactType``: absent, or a media type
    (returned without parameters and lower-cased)."""
    value = obj.get(key) or ""
    if not isinstance(value, str):
        raise InvalidContent(f"descriptor {dgst} has an invalid {key}")
    if not value:
        return ""
    stripped = strip_params(value)
    if not is_media_type(stripped):
        raise InvalidContent(f"descriptor {dgst} has an invalid {key} '{quote(value, 80)}'")
    return stripped


class Platform(Value):
    __slots__ = ("os", "architecture", "variant", "os_version", "os_features")
    os: str
    architecture: str
    variant: str
    os_version: str
    os_features: tuple[str, ...]

    def __init__(
        self,
        os: str,
        architecture: str,
        variant: str = "",
        os_version: str = "",
        os_features: tuple[str, ...] = (),
    ) -> None:
        object.__setattr__(self, "os", os)
        object.__setattr__(self, "architecture", architecture)
        object.__setattr__(self, "variant", variant)
        object.__setattr__(self, "os_version", os_version)
        object.__setattr__(self, "os_features", os_features)

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``linux/arm64/v8`` -> Platform."""
        from ocidist.errors import InvalidArgument

        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidArgument(f"invalid platform {text!r}: expected os/arch[/variant]")
        return cls(parts[0].lower(), parts[1].lower(), parts[2].lower() if len(parts) == 3 else "")

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Platform:
        """A platform object from a manifest or config; os, architecture and
        variant must match the platform grammar, the rest must be strings."""
        feats = obj.get("os.features")
        if feats is not None and not (
            isinstance(feats, list) and all(isinstance(f, str) for f in feats)
        ):
            raise InvalidContent("platform os.features must be a list of strings")
        fields: dict[str, str] = {}
        for key in ("os", "architecture", "variant", "os.version"):
            value = obj.get(key)
            if value is None or value == "":
                fields[key] = ""
                continue
            if not isinstance(value, str):
                raise InvalidContent(f"platform {key} is not a string")
            if key != "os.version" and not _PLATFORM_FIELD.fullmatch(value):
                raise InvalidContent(
                    f"platform {key} '{quote(value, 80)}' is not a platform name "
                    "(letters, digits, '_', '-')"
                )
            fields[key] = value
        return cls(
            os=fields["os"],
            architecture=fields["architecture"],
            variant=fields["variant"],
            os_version=fields["os.version"],
            os_features=tuple(feats) if isinstance(feats, list) else (),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        return out

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


class Descriptor(Value):
    """What some bytes are: media type, digest and size (plus optional extras).

    Annotations take no part in equality or hashing."""

    __slots__ = ("media_type", "digest", "size", "annotations", "platform", "urls", "artifact_type")
    _no_eq = ("annotations",)
    media_type: str
    digest: Digest
    size: int
    annotations: Mapping[str, str]
    platform: Platform | None
    urls: tuple[str, ...]
    artifact_type: str

    def __init__(
        self,
        media_type: str,
        digest: Digest,
        size: int,
        annotations: Mapping[str, str] | None = None,
        platform: Platform | None = None,
        urls: tuple[str, ...] = (),
        artifact_type: str = "",
    ) -> None:
        object.__setattr__(self, "media_type", media_type)
        object.__setattr__(self, "digest", digest)
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "annotations", {} if annotations is None else annotations)
        object.__setattr__(self, "platform", platform)
        object.__setattr__(self, "urls", urls)
        object.__setattr__(self, "artifact_type", artifact_type)

    @classmethod
    def from_json(cls, obj: Any) -> Descriptor:
        """Decode an OCI descriptor object, rejecting what cannot be trusted."""
        if not isinstance(obj, Mapping):
            raise InvalidContent("descriptor is not a JSON object")
        try:
            dgst = Digest.parse(str(obj["digest"]))
        except KeyError as e:
            raise InvalidContent("descriptor has no digest") from e
        except Exception as e:
            raise InvalidContent(f"descriptor has a bad digest: {e}") from e
        size = obj.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_SIZE:
            shown = quote(repr(size), 40) if isinstance(size, int | float) else type(size).__name__
            raise InvalidContent(f"descriptor {dgst} has an invalid size {shown}")
        media_type = _media_type_field(obj, "mediaType", dgst)
        artifact_type = obj.get("artifactType") or ""
        _media_type_field(obj, "artifactType", dgst)  # kept as written, once valid
        plat = obj.get("platform")
        annotations = obj.get("annotations") or {}
        if not isinstance(annotations, Mapping):
            raise InvalidContent(f"descriptor {dgst} has invalid annotations")
        urls = obj.get("urls") or ()
        platform = Platform.from_json(plat) if isinstance(plat, Mapping) else None
        return cls(
            media_type=media_type,
            digest=dgst,
            size=size,
            annotations={str(k): str(v) for k, v in annotations.items()},
            platform=platform,
            urls=tuple(str(u) for u in urls) if isinstance(urls, list) else (),
            artifact_type=artifact_type,
        )

    def to_json(self) -> dict[str, Any]:
        """OCI field names, in the order the spec shows them."""
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out

    def dumps(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"))
