"""Pieces of image unpacking: reading an image's config, and stopping the
transfers when the applier fails.

Layers are fetched in parallel (largest first) on the walker's scheduler
but must be applied in order, so the applier waits for the next layer's job
(``Scheduler.wait``) while later ones still download. If the applier fails,
``Scheduler.stop`` makes running transfers stop at their next chunk
(``scheduler.CancellingProgress``) instead of finishing downloads nobody needs; what
they fetched so far stays as a resumable ingest.
"""

from __future__ import annotations

from collections.abc import Callable

from ocidist import jsondata, manifest
from ocidist.content import Store
from ocidist.descriptor import Descriptor, Platform, is_config, is_index, is_layer, is_manifest
from ocidist.digest import Digest
from ocidist.errors import DistError, InvalidContent, NotFound
from ocidist.images.handlers import FetchHandler
from ocidist.images.walk import read_manifest, walk
from ocidist.value import Value

# A config is JSON read into memory; real ones are a few kB (history included).
MAX_CONFIG_SIZE = 8 * 1024 * 1024


class ImageParts(Value):
    """One platform's image: its manifest, config, layers and their diff_ids."""

    __slots__ = ("manifest", "config", "layers", "diff_ids", "platform")
    manifest: Descriptor
    config: Descriptor
    layers: tuple[Descriptor, ...]
    diff_ids: tuple[Digest, ...]
    platform: Platform | None

    def __init__(
        self,
        manifest: Descriptor,
        config: Descriptor,
        layers: tuple[Descriptor, ...],
        diff_ids: tuple[Digest, ...],
        platform: Platform | None,
    ) -> None:
        object.__setattr__(self, "manifest", manifest)
        object.__setattr__(self, "config", config)
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "diff_ids", diff_ids)
        object.__setattr__(self, "platform", platform)


def fetch_parts(
    handler: FetchHandler,
    store: Store,
    target: Descriptor,
    name: str,
    start_fetch: Callable[[Descriptor, tuple[Descriptor, ...]], Callable[[], None]] | None = None,
) -> ImageParts:
    """Walk ``handler`` (a fetching one that keeps one platform) from
    ``target`` down to the platform manifest and its config, and read them.
    Without ``start_fetch`` the config is fetched here and the layers are
    left for the caller. With it, the caller is handed the config and the
    layers as soon as the manifest is read and fetches them together,
    returning a wait for the config: on a far link a small image's pull is
    a chain of round trips, and the config's then overlaps the layers'
    with no request waiting for another thread to be let run (fetched here
    while another thread started the layers, theirs left 4-5 ms after it:
    the new thread waited for the interpreter's lock)."""
    found: list[Descriptor] = []

    def to_manifest(desc: Descriptor) -> list[Descriptor]:
        if not is_index(desc.media_type) and not is_manifest(desc.media_type):
            what = desc.media_type or "untyped"
            raise InvalidContent(f"{name}: {what} is not an image manifest")
        kids = list(handler(desc))
        if is_manifest(desc.media_type):
            found.append(desc)
            return []
        return kids[:1]  # the best platform's manifest

    walk(to_manifest, [target])
    if not found:
        raise NotFound(f"{name}: the index lists no manifests")
    config, layers = decode_parts(handler.held(found[0]), found[0])
    if start_fetch is not None:
        wait_config = start_fetch(config, layers)
        handler.settle()  # the manifest's commit (commit_behind) went on meanwhile
        wait_config()
    else:
        handler.settle()
        handler(config)
    return read_config(store, found[0], config, layers)


def manifest_parts(store: Store, desc: Descriptor) -> tuple[Descriptor, tuple[Descriptor, ...]]:
    """(config, layers) of the manifest ``desc``, read from the store."""
    return decode_parts(read_manifest(store, desc), desc)


def decode_parts(data: bytes, desc: Descriptor) -> tuple[Descriptor, tuple[Descriptor, ...]]:
    """(config, layers) of the manifest ``desc`` whose bytes are ``data``."""
    decoded = manifest.decode(data, desc.media_type)
    if isinstance(decoded, manifest.Index):
        raise InvalidContent(f"{desc.digest}: an index where a manifest was expected")
    if decoded.config.media_type and not is_config(decoded.config.media_type):
        # An artifact (a signature, an SBOM…) has no filesystem to unpack.
        raise InvalidContent(
            f"{desc.digest}: not a container image (config type {decoded.config.media_type})"
        )
    for layer in decoded.layers:
        if not is_layer(layer.media_type):
            raise InvalidContent(f"{desc.digest}: layer {layer.digest} has type {layer.media_type}")
    return decoded.config, decoded.layers


def read_config(
    store: Store, manifest_desc: Descriptor, config: Descriptor, layers: tuple[Descriptor, ...]
) -> ImageParts:
    """Check the config in the store and pair each layer with its diff_id."""
    if config.size > MAX_CONFIG_SIZE:
        raise InvalidContent(f"config {config.digest}: {config.size} bytes is too large")
    with store.reader(config.digest) as f:
        data = f.read(MAX_CONFIG_SIZE + 1)
    obj = jsondata.loads(data, f"config {config.digest}")
    rootfs = obj.get("rootfs") if isinstance(obj, dict) else None
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(ids, list):
        raise InvalidContent(f"config {config.digest}: no rootfs.diff_ids")
    try:
        diff_ids = tuple(Digest.parse(str(d)) for d in ids)
    except DistError as e:
        raise InvalidContent(f"config {config.digest}: rootfs.diff_ids: {e}") from None
    if len(diff_ids) != len(layers):
        raise InvalidContent(
            f"config {config.digest}: {len(diff_ids)} diff_ids for {len(layers)} layers"
        )
    plat = None
    if isinstance(obj, dict) and isinstance(obj.get("os"), str):
        try:
            plat = Platform.from_json(obj)
        except InvalidContent as e:
            raise InvalidContent(f"config {config.digest}: {e}") from None
    return ImageParts(manifest_desc, config, layers, diff_ids, plat)
