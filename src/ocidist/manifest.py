"""Decode image manifests and indexes (OCI and Docker schema2) and list children.

Everything here reads untrusted bytes from a registry, so every failure —
bad JSON, a missing field, a wrong type — comes out as ``InvalidContent`` with
a message naming what is wrong, never as a KeyError or JSONDecodeError.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ocidist import jsondata
from ocidist.descriptor import (
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    MAX_MANIFEST_SIZE,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    is_index,
    is_manifest,
    strip_params,
)
from ocidist.errors import InvalidContent
from ocidist.value import Value

SCHEMA1_TYPES = (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED)
# Types a registry or file may give a manifest that say nothing about which
# kind it is (text/plain: old registries serving schema1); decode then looks
# at the body instead.
UNINFORMATIVE_TYPES = ("", "application/octet-stream", "application/json", "text/plain")


class Manifest(Value):
    """An image manifest: one config and its layers."""

    __slots__ = ("media_type", "config", "layers", "annotations", "subject", "artifact_type")
    _no_eq = ("annotations",)
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str]
    subject: Descriptor | None
    artifact_type: str

    def __init__(
        self,
        media_type: str,
        config: Descriptor,
        layers: tuple[Descriptor, ...],
        annotations: Mapping[str, str] | None = None,
        subject: Descriptor | None = None,
        artifact_type: str = "",
    ) -> None:
        object.__setattr__(self, "media_type", media_type)
        object.__setattr__(self, "config", config)
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "annotations", {} if annotations is None else annotations)
        object.__setattr__(self, "subject", subject)
        object.__setattr__(self, "artifact_type", artifact_type)


class Index(Value):
    """An image index / manifest list: manifests, usually one per platform."""

    __slots__ = ("media_type", "manifests", "annotations", "subject", "artifact_type")
    _no_eq = ("annotations",)
    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str]
    subject: Descriptor | None
    artifact_type: str

    def __init__(
        self,
        media_type: str,
        manifests: tuple[Descriptor, ...],
        annotations: Mapping[str, str] | None = None,
        subject: Descriptor | None = None,
        artifact_type: str = "",
    ) -> None:
        object.__setattr__(self, "media_type", media_type)
        object.__setattr__(self, "manifests", manifests)
        object.__setattr__(self, "annotations", {} if annotations is None else annotations)
        object.__setattr__(self, "subject", subject)
        object.__setattr__(self, "artifact_type", artifact_type)


def decode(data: bytes, media_type: str) -> Manifest | Index:
    """Decode and validate a manifest or index served as ``media_type``.

    An uninformative ``media_type`` (empty, octet-stream, JSON) is replaced by
    what the body declares or looks like.
    """
    obj = _load(data)
    given = strip_params(media_type)
    if given in UNINFORMATIVE_TYPES:
        given = _detect(obj)
    if given in SCHEMA1_TYPES:
        raise InvalidContent("schema1 manifests are not supported")
    if not (is_manifest(given) or is_index(given)):
        raise InvalidContent(f"{given!r} is not a manifest or index media type")
    declared = obj.get("mediaType")
    if declared is not None:
        if not isinstance(declared, str):
            raise InvalidContent("manifest has a non-string mediaType")
        if strip_params(declared) in SCHEMA1_TYPES:
            raise InvalidContent("schema1 manifests are not supported")
        if strip_params(declared) != given:
            raise InvalidContent(
                f"manifest declares mediaType {declared!r} but was served as {given!r}"
            )
    version = obj.get("schemaVersion")
    # bool is an int in Python (True == 1); `true` is no schema version at all.
    if not isinstance(version, int) or isinstance(version, bool) or version not in (1, 2):
        raise InvalidContent(f"unsupported schemaVersion {version!r} (want 2)")
    if version == 1:
        raise InvalidContent("schema1 manifests are not supported")
    annotations = _annotations(obj)
    subject = _descriptor(obj["subject"], "subject") if "subject" in obj else None
    artifact_type = obj.get("artifactType", "")
    if not isinstance(artifact_type, str):
        raise InvalidContent("manifest has a non-string artifactType")
    if is_index(given):
        return Index(
            media_type=given,
            manifests=_descriptor_list(obj, "manifests"),
            annotations=annotations,
            subject=subject,
            artifact_type=artifact_type,
        )
    if "config" not in obj:
        raise InvalidContent("manifest has no config (is it an index?)")
    return Manifest(
        media_type=given,
        config=_descriptor(obj["config"], "config"),
        layers=_descriptor_list(obj, "layers"),
        annotations=annotations,
        subject=subject,
        artifact_type=artifact_type,
    )


def children(desc: Descriptor, data: bytes) -> list[Descriptor]:
    """What ``desc`` (whose bytes are ``data``) points at: an index's manifests,
    a manifest's config then layers; nothing for any other type."""
    if not (is_index(desc.media_type) or is_manifest(desc.media_type)):
        return []
    decoded = decode(data, desc.media_type)
    if isinstance(decoded, Index):
        return list(decoded.manifests)
    return [decoded.config, *decoded.layers]


def detect_media_type(data: bytes) -> str:
    """The media type of a manifest body served without a usable Content-Type.

    The body's own ``mediaType`` wins; otherwise ``manifests`` means an OCI
    index and ``config``/``layers`` an OCI manifest (Docker schema2 always
    declares its type, so an undeclared body is OCI).
    """
    return _detect(_load(data))


def _detect(obj: Mapping[str, Any]) -> str:
    declared = obj.get("mediaType")
    if isinstance(declared, str) and declared:
        return strip_params(declared)
    if obj.get("schemaVersion") == 1 or "fsLayers" in obj:
        return DOCKER_SCHEMA1
    if "manifests" in obj:
        return OCI_INDEX
    if "config" in obj or "layers" in obj:
        return OCI_MANIFEST
    raise InvalidContent("cannot tell what kind of manifest this is (no mediaType)")


def _load(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_MANIFEST_SIZE:
        raise InvalidContent(
            f"manifest is {len(data)} bytes, more than the {MAX_MANIFEST_SIZE} bytes allowed"
        )
    # Refuses huge numbers, deep nesting, NaN and duplicate keys in words.
    return jsondata.load_object(data, "manifest")


def _descriptor(obj: Any, what: str) -> Descriptor:
    try:
        desc = Descriptor.from_json(obj)
    except InvalidContent as e:
        raise InvalidContent(f"{what}: {e}") from e
    except (TypeError, ValueError, AttributeError) as e:
        # Descriptor.from_json trusts the shape of nested fields such as
        # platform["os.features"]; a hostile body must still fail cleanly.
        raise InvalidContent(f"{what}: malformed descriptor: {e}") from e
    # A descriptor without a type cannot be routed (manifests/ vs blobs/) or
    # walked; the image-spec makes the field mandatory.
    if not desc.media_type:
        raise InvalidContent(f"{what}: descriptor {desc.digest} has no mediaType")
    return desc


def _descriptor_list(obj: Mapping[str, Any], key: str) -> tuple[Descriptor, ...]:
    items = obj.get(key)
    if items is None:
        raise InvalidContent(f"manifest has no {key}")
    if not isinstance(items, list):
        raise InvalidContent(f"manifest {key} is not a list")
    return tuple(_descriptor(item, f"{key}[{i}]") for i, item in enumerate(items))


def _annotations(obj: Mapping[str, Any]) -> dict[str, str]:
    # null is what some encoders write for an empty map; [] or "" is corrupt.
    annotations = obj.get("annotations")
    if annotations is None:
        return {}
    if not isinstance(annotations, dict) or not all(
        isinstance(v, str) for v in annotations.values()
    ):
        raise InvalidContent("manifest annotations are not a string map")
    return dict(annotations)
