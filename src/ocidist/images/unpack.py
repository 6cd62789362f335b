"""Pieces of image unpacking: reading an image's config, and the gate between
the threads that fetch layers and the one that applies them.

Layers are fetched in parallel (largest first) but must be applied in order,
so the applier waits on a ``LayerGate`` for the next layer while later ones
still download; the fetch side marks each blob as soon as it is committed.
If the applier fails, ``cancel`` makes running transfers stop at their next
chunk (``CancellingProgress``) instead of finishing downloads nobody needs;
what they fetched so far stays as a resumable ingest.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ocidist import jsondata, manifest
from ocidist.content import Store
from ocidist.descriptor import Descriptor, Platform, is_config, is_index, is_layer, is_manifest
from ocidist.digest import Digest
from ocidist.errors import Cancelled, DistError, InvalidContent, NotFound
from ocidist.images.walk import Handler, read_manifest, walk
from ocidist.progress import NullProgress, Progress
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


def fetch_parts(handler: Handler, store: Store, target: Descriptor, name: str) -> ImageParts:
    """Walk ``handler`` (a fetching one that keeps one platform) from
    ``target`` down to the platform manifest and its config, and read them;
    the layers are left for the caller to fetch."""
    found: list[Descriptor] = []

    def to_config(desc: Descriptor) -> list[Descriptor]:
        if found:
            handler(desc)  # the config
            return []
        if not is_index(desc.media_type) and not is_manifest(desc.media_type):
            what = desc.media_type or "untyped"
            raise InvalidContent(f"{name}: {what} is not an image manifest")
        kids = list(handler(desc))
        if is_manifest(desc.media_type):
            found.append(desc)
        return kids[:1]  # the best platform's manifest; a manifest's config

    walk(to_config, [target])
    if not found:
        raise NotFound(f"{name}: the index lists no manifests")
    config, layers = manifest_parts(store, found[0])
    return read_config(store, found[0], config, layers)


def manifest_parts(store: Store, desc: Descriptor) -> tuple[Descriptor, tuple[Descriptor, ...]]:
    """(config, layers) of the manifest ``desc``, read from the store."""
    decoded = manifest.decode(read_manifest(store, desc), desc.media_type)
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


class LayerGate:
    """Blobs committed so far, the first fetch failure, and a cancel flag."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._present: set[Digest] = set()
        self._failure: BaseException | None = None
        self._finished = False
        self.cancelled = threading.Event()

    def mark(self, dgst: Digest) -> None:
        with self._cond:
            self._present.add(dgst)
            self._cond.notify_all()

    def finish(self, failure: BaseException | None) -> None:
        """The fetch side is done, successfully or with ``failure``."""
        with self._cond:
            self._finished = True
            self._failure = failure
            self._cond.notify_all()

    def wait(self, dgst: Digest) -> None:
        """Block until ``dgst`` is committed; raise the fetch failure if it
        comes first (or the fetch ended without it, which is a bug)."""
        with self._cond:
            while dgst not in self._present:
                if self._failure is not None:
                    raise self._failure
                if self._finished:
                    raise DistError(f"content {dgst}: fetch ended without it")
                self._cond.wait()

    def wait_finished(self) -> BaseException | None:
        with self._cond:
            while not self._finished:
                self._cond.wait()
            return self._failure

    def cancel(self) -> None:
        self.cancelled.set()


class CancellingProgress:
    """Passes events on; raises ``Cancelled`` inside a transfer once the gate
    is cancelled, which aborts that copy at its next chunk."""

    def __init__(self, inner: Progress | None, gate: LayerGate) -> None:
        self._inner = inner or NullProgress()
        self._gate = gate

    def start(self, desc: Descriptor, offset: int) -> None:
        self._check()
        self._inner.start(desc, offset)

    def update(self, desc: Descriptor, held: int) -> None:
        self._check()
        self._inner.update(desc, held)

    def done(self, desc: Descriptor, status: str) -> None:
        self._inner.done(desc, status)

    def close(self) -> None:
        self._inner.close()

    def _check(self) -> None:
        if self._gate.cancelled.is_set():
            raise Cancelled("transfer stopped: the unpack failed")


def marking(
    handler: Callable[[Descriptor], list[Descriptor]], gate: LayerGate
) -> Callable[[Descriptor], list[Descriptor]]:
    """``handler`` that also marks each descriptor on ``gate`` once handled
    (committed to the store), and starts nothing new after a cancel."""

    def handle(desc: Descriptor) -> list[Descriptor]:
        if gate.cancelled.is_set():
            raise Cancelled("transfer stopped: the unpack failed")
        children = handler(desc)
        gate.mark(desc.digest)
        return children

    return handle
