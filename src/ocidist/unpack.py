"""Unpack an image into a directory: fetch what is missing, apply layers in order.

A name the metadata store knows (or a digest the content store holds) needs
no registry at all. Otherwise the reference is resolved remotely and the pull
machinery (``FetchHandler`` on the walker) fetches the index, the chosen
platform's manifest and config, then every layer in parallel. Applying
overlaps downloading: the layers are walked on a ``Scheduler`` in a thread,
and the caller applies layer N as soon as ``Scheduler.wait`` says it (and,
by then, every lower layer) is committed, while later layers still arrive. Each layer's uncompressed
stream is checked against the config's ``rootfs.diff_ids`` as it is applied.

DEST must be absent or empty unless ``force`` (then the layers are applied
over what is there, as ``dist apply`` would). umoci refuses only when its
bundle's ``rootfs`` exists; we write the root filesystem into DEST itself, so
any content there would silently mix with the image. When an unpack fails,
what it wrote is removed again if DEST was absent or empty before — a
half-applied tree must not look like a finished one; with ``force`` it is
left alone, since the earlier contents cannot be told apart.

The name is recorded in the metadata store only after a successful unpack.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable
from typing import Any

from ocidist import reference
from ocidist.archive import ApplyOptions, apply_layer, compression
from ocidist.content import Store
from ocidist.descriptor import Descriptor, Platform
from ocidist.digest import Digest
from ocidist.errors import Cancelled, DigestMismatch, DistError, InvalidArgument, NotFound
from ocidist.images.handlers import FetchHandler
from ocidist.images.platforms import MatchComparer, default_matcher
from ocidist.images.scheduler import CancellingProgress, Scheduler
from ocidist.images.unpack import ImageParts, fetch_parts
from ocidist.images.walk import platform_children, read_manifest, walk
from ocidist.manifest import detect_media_type
from ocidist.metadata import Metadata
from ocidist.progress import NullProgress, Progress
from ocidist.pull import default_concurrency, light_concurrency, link_concurrency, warm_up
from ocidist.remotes import Fetcher, RangeFetcher, Resolver, resolve_to_fetch
from ocidist.stream import Readable
from ocidist.value import Value

# How long a failed unpack waits for its transfers to notice the cancel.
CANCEL_GRACE_SECONDS = 2.0


class LayerResult(Value):
    __slots__ = ("desc", "diff_id", "size", "entries", "seconds")
    desc: Descriptor
    diff_id: Digest
    size: int  # uncompressed
    entries: int
    seconds: float  # spent applying it

    def __init__(
        self, desc: Descriptor, diff_id: Digest, size: int, entries: int, seconds: float
    ) -> None:
        object.__setattr__(self, "desc", desc)
        object.__setattr__(self, "diff_id", diff_id)
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "entries", entries)
        object.__setattr__(self, "seconds", seconds)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.desc.to_json(),
            "diffID": str(self.diff_id),
            "uncompressedSize": self.size,
            "entries": self.entries,
            "applySeconds": round(self.seconds, 6),
        }


class UnpackResult:
    # A plain class, not a dataclass: creating one costs ~1 ms of start-up.
    def __init__(
        self,
        name: str,
        target: Descriptor,  # what the name points at (maybe an index)
        manifest: Descriptor,  # the platform manifest unpacked
        config: Descriptor,
        platform: Platform | None,
        dest: str,
        from_store: bool,  # resolved without asking a registry
    ) -> None:
        self.name = name
        self.target = target
        self.manifest = manifest
        self.config = config
        self.platform = platform
        self.dest = dest
        self.from_store = from_store
        self.layers: list[LayerResult] = []
        self.fetched: list[Descriptor] = []
        self.skipped: list[Descriptor] = []
        # From the start until every blob was in the store (resolve included).
        self.download_seconds = 0.0
        # Time inside apply_layer, summed over layers (it overlaps downloading).
        self.apply_seconds = 0.0
        # Time the applier sat waiting for a layer still downloading.
        self.wait_seconds = 0.0
        self.total_seconds = 0.0

    @property
    def diff_ids(self) -> list[Digest]:
        return [layer.diff_id for layer in self.layers]

    @property
    def fetched_bytes(self) -> int:
        return sum(d.size for d in self.fetched)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **self.target.to_json(),
            "manifest": self.manifest.to_json(),
            "config": self.config.to_json(),
            # An OCI platform object, as in descriptors (docs/JSON.md).
            **({"platform": self.platform.to_json()} if self.platform else {}),
            "dest": self.dest,
            "fromStore": self.from_store,
            "diffIDs": [str(d) for d in self.diff_ids],
            "layers": [layer.to_json() for layer in self.layers],
            "fetched": len(self.fetched),
            "fetchedBytes": self.fetched_bytes,
            "existing": len(self.skipped),
            "downloadSeconds": round(self.download_seconds, 6),
            "applySeconds": round(self.apply_seconds, 6),
            "waitSeconds": round(self.wait_seconds, 6),
            "totalSeconds": round(self.total_seconds, 6),
        }


def unpack_image(
    resolver: Resolver | None,
    store: Store,
    metadata: Metadata | None,
    ref: str,
    dest: str,
    *,
    matcher: MatchComparer | None = None,
    concurrency: int = 0,
    progress: Progress | None = None,
    force: bool = False,
    warn: Callable[[str], None] | None = None,
    apply_options: ApplyOptions | None = None,
) -> UnpackResult:
    """Unpack ``ref`` (a stored name, or a reference to resolve) into ``dest``.

    ``resolver`` None means offline: everything must be in ``store`` already.
    ``matcher`` picks the platform of an index (default: this host's).
    """
    started = time.monotonic()
    existed = _check_dest(dest, force)
    if resolver is not None and not concurrency:
        warm_up(resolver, ref)
    if resolver is not None:
        compression.import_ahead()
    chosen = concurrency
    name, target, from_store, remote = _resolve(resolver, store, metadata, ref)
    took = time.monotonic() - started
    if not concurrency and not from_store:
        concurrency = link_concurrency(took)
    concurrency = concurrency or default_concurrency()
    # A --concurrency the user chose bounds every object.
    light = concurrency if chosen or from_store else light_concurrency(took, concurrency)
    # The pool the layers are walked on; the caller follows it (Scheduler.wait).
    sched = Scheduler(concurrency, name="unpack", light=light)
    fetcher = remote or _fetcher_for(resolver, name)
    source = None
    if not from_store:
        r = reference.parse(name)
        source = (r.domain, r.path)
    handler = FetchHandler(
        store,
        fetcher,
        platform_children(matcher or default_matcher(), 1),
        progress=CancellingProgress(progress, sched, "transfer stopped: the unpack failed"),
        source=source,
        commit_behind=True,
    )
    fetch_done = [started]
    failures: list[BaseException] = []

    def fetch_blobs(config: Descriptor, layers: tuple[Descriptor, ...]) -> None:
        try:
            turns = in_turn(fetcher, layers)
            blobs = (config, *layers)
            walk(handler, blobs, scheduler=sched, after=lambda d: turns.get(str(d.digest), ()))
        except BaseException as e:  # the applier sees it through sched.wait
            failures.append(e)
            # A failure before the run began (a bad root) never reached the
            # scheduler: hand it over, or the applier would wait forever.
            sched.stop(e)
        fetch_done[0] = time.monotonic()

    fetching: list[threading.Thread] = []

    def start_fetch(config: Descriptor, layers: tuple[Descriptor, ...]) -> Callable[[], None]:
        # The config and the layers on one walk, which the applier follows.
        t = threading.Thread(
            target=fetch_blobs, args=(config, layers), name="unpack-fetch", daemon=True
        )
        t.start()
        fetching.append(t)
        return lambda: sched.wait(str(config.digest))

    try:
        parts = fetch_parts(handler, store, target, name, start_fetch)
    except BaseException as e:
        sched.stop(Cancelled("transfer stopped: the unpack failed"))
        for t in fetching:
            t.join(timeout=CANCEL_GRACE_SECONDS)
        # An index or manifest still being committed (verified content) is
        # let finish, not cut off by the exit with its temporary file left.
        handler.drain()
        if isinstance(e, Cancelled) and failures:
            # The layers' walk failed first and stopped the run, which made
            # the config's transfer (still coming) raise Cancelled: the
            # walk's failure is the one to report, not that echo of it.
            raise failures[0] from None
        raise
    result = UnpackResult(
        name=name,
        target=target,
        manifest=parts.manifest,
        config=parts.config,
        platform=parts.platform,
        dest=dest,
        from_store=from_store,
    )
    if not existed:
        os.makedirs(dest, exist_ok=True)
    try:
        template = apply_options or ApplyOptions()
        if warn is not None:
            template = template.replace(warn=warn)
        _apply_all(store, parts, dest, sched, result, progress or NullProgress(), template, name)
    except BaseException:
        sched.stop(Cancelled("transfer stopped: the unpack failed"))
        # Flowing transfers stop at their next chunk; one blocked on a silent
        # server cannot be interrupted, so the error is not held up by it (the
        # thread is a daemon, and whatever it commits is verified content).
        fetching[0].join(timeout=CANCEL_GRACE_SECONDS)
        if not force:
            _remove_contents(dest, remove_dir=not existed)
        raise
    fetching[0].join()
    if failures:  # every layer arrived, yet something else failed
        raise failures[0]
    result.fetched, result.skipped = handler.fetched, handler.skipped
    result.download_seconds = fetch_done[0] - started
    result.total_seconds = time.monotonic() - started
    if metadata is not None and not from_store:
        metadata.put_image(name, target)
    return result


# Layers fetched in ranges at once (see in_turn).
RANGED_AT_ONCE = 2
# Compressed layers up to this size are inflated without a thread of their own.
INLINE_LAYER = 256 * 1024


def in_turn(fetcher: Fetcher, layers: tuple[Descriptor, ...]) -> dict[str, tuple[str, ...]]:
    """What each layer's fetch waits for: a layer fetched in ranges starts
    when the one ``RANGED_AT_ONCE`` places before it (in the order they are
    applied) is in. Started all at once, big layers share the ranges and the
    link evenly and come in together at the end, so applying the first one
    waited for nearly the whole download (first come first served for the
    ranges: the first layer got 1 connection where others got 8); in turns
    the first ones arrive early and applying them overlaps fetching the rest.
    Layers fetched in one stream each (near registries, small layers) are
    not held back: there one connection per layer is what they need."""
    if not isinstance(fetcher, RangeFetcher):
        return {}
    ranged: list[Descriptor] = []
    for d in dict.fromkeys(layers):
        r = fetcher.ranges(d)
        if r is not None and 0 < r.tuning.threshold <= d.size:
            ranged.append(d)
    return {
        str(d.digest): (str(ranged[i - RANGED_AT_ONCE].digest),)
        for i, d in enumerate(ranged)
        if i >= RANGED_AT_ONCE
    }


def _apply_all(
    store: Store,
    parts: ImageParts,
    dest: str,
    sched: Scheduler,
    result: UnpackResult,
    progress: Progress,
    template: ApplyOptions,
    name: str,
) -> None:
    count = len(parts.layers)
    for i, (layer, diff_id) in enumerate(zip(parts.layers, parts.diff_ids, strict=True)):
        waited = time.monotonic()
        sched.wait(str(layer.digest))  # the walk's key for it
        began = time.monotonic()
        result.wait_seconds += began - waited
        label = f"{i + 1}/{count} {layer.digest}"
        # The caller's limits (tar-bomb guards) and warning sink, per layer.
        # A small layer is inflated inline: the decompression thread that
        # overlaps inflating with writing a big one cost more to start
        # (~0.4 ms) than such a layer takes to apply.
        threaded = template.threaded and layer.size > INLINE_LAYER
        opts = template.replace(expected_diff_id=diff_id, layer_name=label, threaded=threaded)
        try:
            with store.reader(layer.digest) as f:
                applied = apply_layer(dest, f, options=opts)
        except DigestMismatch as e:
            raise DigestMismatch(
                f"unpack {name}: {e}: the uncompressed layer does not match "
                "the config's rootfs.diff_ids"
            ) from None
        seconds = time.monotonic() - began
        result.apply_seconds += seconds
        result.layers.append(
            LayerResult(layer, applied.diff_id, applied.size, applied.entries, seconds)
        )
        progress.done(layer, "applied")


def _resolve(
    resolver: Resolver | None, store: Store, metadata: Metadata | None, ref: str
) -> tuple[str, Descriptor, bool, Fetcher | None]:
    """(name, target, from_store, the registry's fetcher): the metadata
    store first, then the registry."""
    parsed: reference.Reference | None = None
    invalid: InvalidArgument | None = None
    try:
        parsed = reference.parse(ref)
    except InvalidArgument as e:
        invalid = e  # may still be a name in the store (an import can record any)
    if metadata is not None:
        for candidate in dict.fromkeys([ref, *([parsed.name] if parsed else [])]):
            try:
                image = metadata.get_image(candidate)
            except NotFound:
                continue
            return image.name, image.target, True, None
    if parsed is not None and parsed.digest is not None and store.exists(parsed.digest):
        # A pinned reference whose manifest we hold needs no registry either.
        size = store.info(parsed.digest).size
        data = read_manifest(store, Descriptor("", parsed.digest, size))
        stored = Descriptor(detect_media_type(data), parsed.digest, len(data))
        return parsed.name, stored, True, None
    if invalid is not None or parsed is None:
        raise invalid or InvalidArgument(f"invalid reference {ref!r}")
    if resolver is None:
        raise NotFound(f"image {parsed.name}: not found in the store")
    # GET, not HEAD: the walk starts by fetching this manifest anyway.
    name, desc, fetcher = resolve_to_fetch(resolver, ref)
    return name, desc, False, fetcher


def _fetcher_for(resolver: Resolver | None, name: str) -> Fetcher:
    """The registry's fetcher for ``name`` (making one does no I/O); without a
    resolver, or for a stored name that is no registry reference, one that
    reports the missing blob."""
    if resolver is not None:
        try:
            return resolver.fetcher(name)
        except InvalidArgument:
            pass
    return _Offline()


class _Offline:
    def fetch(self, desc: Descriptor, offset: int = 0, *, verify: bool = True) -> Readable:
        raise NotFound(f"content {desc.digest}: not in the store (and no registry to ask)")


def _check_dest(dest: str, force: bool) -> bool:
    """Whether ``dest`` exists; refuses a non-empty one without ``force``."""
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise DistError(f"{dest}: {os.strerror(e.errno or errno.EIO).lower()}") from None
    if stat.S_ISLNK(st.st_mode):
        st = os.stat(dest)  # a symlink to a directory is a fine destination
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidArgument(f"{dest}: not a directory")
    if not force and os.listdir(dest):
        raise InvalidArgument(f"{dest}: directory is not empty (--force unpacks over it)")
    return True


def _remove_contents(dest: str, *, remove_dir: bool) -> None:
    """Best effort: undo a failed unpack into a directory that was empty."""

    def retry_writable(func: Callable[..., Any], path: str, _exc: object) -> None:
        # An image may make a directory read-only (0o555); we own the tree.
        try:
            os.chmod(os.path.dirname(path), 0o700)
            func(path)
        except OSError:
            pass

    if remove_dir:
        shutil.rmtree(dest, onerror=retry_writable)
        return
    try:
        names = os.listdir(dest)
    except OSError:
        return
    for entry in names:
        path = os.path.join(dest, entry)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, onerror=retry_writable)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)
