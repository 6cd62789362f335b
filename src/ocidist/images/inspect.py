"""What `dist inspect` shows: an index's platforms, or one image's facts.

Works on any ``sources.Source`` (registry, layout, archive, store). Reads
only manifests and the config (small, verified, size-capped), never layers.
For an index, each platform manifest is read too, to give the image's size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ocidist import jsondata, manifest
from ocidist.descriptor import Descriptor, Platform, is_config, is_index
from ocidist.digest import Digest
from ocidist.errors import InvalidContent, NotFound
from ocidist.images.platforms import MatchComparer, default_matcher
from ocidist.images.unpack import MAX_CONFIG_SIZE
from ocidist.images.walk import check_fan_out
from ocidist.value import Value

if TYPE_CHECKING:
    from ocidist.sources import Source


class Chosen(Value):
    """The manifest inspect settled on, its exact bytes, and the path to it."""

    __slots__ = ("desc", "data", "parents")
    desc: Descriptor
    data: bytes
    parents: tuple[Descriptor, ...]

    def __init__(self, desc: Descriptor, data: bytes, parents: Sequence[Descriptor]) -> None:
        object.__setattr__(self, "desc", desc)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "parents", tuple(parents))


def choose(source: Source, matcher: MatchComparer | None) -> Chosen:
    """The root, or with ``matcher`` the best platform manifest below an index."""
    chosen = Chosen(source.root, source.read(source.root), [])
    return chosen if matcher is None else choose_below(source, chosen, matcher)


def config_bytes(source: Source, chosen: Chosen) -> tuple[Descriptor, bytes]:
    """The config of the chosen image (an index: this machine's platform)."""
    chosen = choose_below(source, chosen, default_matcher())
    decoded = manifest.decode(chosen.data, chosen.desc.media_type)
    assert isinstance(decoded, manifest.Manifest)
    return decoded.config, source.read(decoded.config, MAX_CONFIG_SIZE)


def choose_below(source: Source, chosen: Chosen, matcher: MatchComparer) -> Chosen:
    """The manifest the walker picks for ``matcher`` below ``chosen`` (itself
    when it is not an index)."""
    if not is_index(chosen.desc.media_type):
        return chosen
    held = {str(chosen.desc.digest): chosen.data}

    def read(desc: Descriptor) -> bytes:
        key = str(desc.digest)
        if key not in held:
            held[key] = source.read(desc)
        return held[key]

    # A store or layout may hold only some of the index's platforms.
    found = source.platform(chosen.desc, matcher, read)
    return Chosen(found, read(found), [*chosen.parents, chosen.desc])


def describe(source: Source, chosen: Chosen) -> dict[str, Any]:
    """The JSON document of ``dist inspect --json``."""
    desc, data = chosen.desc, chosen.data
    decoded = manifest.decode(data, desc.media_type)
    doc: dict[str, Any] = {"name": source.name, **_plain(desc).to_json()}
    if chosen.parents:
        doc["index"] = _plain(chosen.parents[0]).to_json()
    if decoded.artifact_type:
        doc["artifactType"] = decoded.artifact_type
    if decoded.annotations:
        doc["annotations"] = dict(decoded.annotations)
    if decoded.subject is not None:
        doc["subject"] = decoded.subject.to_json()
    if isinstance(decoded, manifest.Index):
        check_fan_out(desc, decoded.manifests)
        # An index may list one manifest many times: read it once.
        sizes: dict[tuple[Digest, int, str], int | None] = {}
        doc["manifests"] = [_entry(source, m, sizes) for m in decoded.manifests]
        return doc
    doc.update(_image(source, decoded))
    return doc


def _plain(desc: Descriptor) -> Descriptor:
    return Descriptor(desc.media_type, desc.digest, desc.size)


def _entry(
    source: Source, desc: Descriptor, sizes: dict[tuple[Digest, int, str], int | None]
) -> dict[str, Any]:
    out = desc.to_json()
    key = (desc.digest, desc.size, desc.media_type)
    if key not in sizes:
        sizes[key] = _image_size(source, desc)
    out["imageSize"] = sizes[key]
    return out


def _image_size(source: Source, desc: Descriptor) -> int | None:
    try:
        if not is_index(desc.media_type):
            sub = manifest.decode(source.read(desc), desc.media_type)
            if isinstance(sub, manifest.Manifest):
                return desc.size + sub.config.size + sum(layer.size for layer in sub.layers)
    except NotFound:
        pass  # a platform the store or layout does not hold
    return None


def _image(source: Source, decoded: manifest.Manifest) -> dict[str, Any]:
    layers = [layer.to_json() for layer in decoded.layers]
    out: dict[str, Any] = {
        "config": decoded.config.to_json(),
        "layers": layers,
        "layersSize": sum(layer.size for layer in decoded.layers),
    }
    if not is_config(decoded.config.media_type):
        return out  # an artifact: its config is not an image config
    cfg = _config(source, decoded.config)
    found = cfg.get("config")
    inner: dict[str, Any] = found if isinstance(found, dict) else {}
    try:
        plat = Platform.from_json(cfg) if isinstance(cfg.get("os"), str) else None
    except InvalidContent as e:
        raise InvalidContent(f"{source.name}: config {decoded.config.digest}: {e}") from None
    out["platform"] = plat.to_json() if plat is not None else None
    out["created"] = _text(cfg.get("created"))
    out["labels"] = _string_map(inner.get("Labels"))
    out["env"] = _strings(inner.get("Env"))
    out["entrypoint"] = _strings(inner.get("Entrypoint"))
    out["cmd"] = _strings(inner.get("Cmd"))
    out["workingDir"] = _text(inner.get("WorkingDir"))
    out["user"] = _text(inner.get("User"))
    ports = inner.get("ExposedPorts")
    out["exposedPorts"] = sorted(str(p) for p in ports) if isinstance(ports, dict) else []
    return out


def _config(source: Source, desc: Descriptor) -> dict[str, Any]:
    data = source.read(desc, MAX_CONFIG_SIZE)
    return jsondata.load_object(data, f"{source.name}: config {desc.digest}")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _strings(value: Any) -> list[str] | None:
    if not isinstance(value, list):
        return None
    return [str(v) for v in value]


def _string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}
