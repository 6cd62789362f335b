"""Pushing an image from the content store to a registry.

Pushing is copying from the store into a remote writer (DESIGN.md): every
blob goes through ``content.copy.copy_from`` into a ``DockerPusher`` writer,
so a lost upload session resumes the same way a broken fetch does — from the
writer's offset. Blobs go first, in parallel (largest first); manifests
follow children-first, so a registry never sees a manifest whose blobs it
lacks. Only what the store holds can be pushed: an index goes only when every
platform manifest it lists is there, exactly as stored (its digest unchanged).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from ocidist import manifest, reference
from ocidist.content import Store
from ocidist.content.copy import copy_from
from ocidist.descriptor import (
    DOCKER_LAYER_FOREIGN,
    OCI_LAYER_NONDIST_GZIP,
    Descriptor,
    is_index,
    is_manifest,
)
from ocidist.errors import AlreadyExists, InvalidArgument, NotFound
from ocidist.images.dispatch import dispatch
from ocidist.images.handlers import SOURCE_LABEL, read_manifest
from ocidist.images.platforms import MatchComparer, select
from ocidist.metadata import MetadataStore
from ocidist.progress import NullProgress, Progress
from ocidist.pull import default_concurrency
from ocidist.remotes.docker.pusher import DockerPusher, Mounted, PushOptions
from ocidist.remotes.docker.resolver import DockerResolver
from ocidist.remotes.docker.upload import UploadRestarted

OpenAt = Callable[[int], BinaryIO]
# Attempts per blob at feeding a writer whose session had to restart.
UPLOAD_ATTEMPTS = 5


@dataclass
class PushResult:
    name: str  # the reference pushed to
    target: Descriptor
    pushed: list[Descriptor] = field(default_factory=list)
    existing: list[Descriptor] = field(default_factory=list)
    mounted: list[Descriptor] = field(default_factory=list)

    @property
    def pushed_bytes(self) -> int:
        return sum(d.size for d in self.pushed)

    def record(self, desc: Descriptor, status: str) -> None:
        {"pushed": self.pushed, "exists": self.existing, "mounted": self.mounted}[status].append(
            desc
        )


def is_foreign(desc: Descriptor) -> bool:
    """Layers that registries are not expected to hold (fetched from ``urls``)."""
    return desc.media_type in (DOCKER_LAYER_FOREIGN, OCI_LAYER_NONDIST_GZIP) or (
        ".nondistributable." in desc.media_type
    )


def upload_blob(
    pusher: DockerPusher,
    desc: Descriptor,
    open_at: OpenAt,
    *,
    mount_from: Sequence[str] = (),
    progress: Progress | None = None,
    tag: str | None = None,
) -> str:
    """Put one object into the pusher's repository; ``"pushed"``, ``"exists"``
    or ``"mounted"``. A lost chunk is resumed inside the writer from the
    registry's offset; a lost session restarts, and the copy resumes from the
    writer's offset (0 then), a bounded number of times."""
    prog = progress or NullProgress()
    try:
        writer = pusher.push(desc, tag=tag, mount_from=mount_from)
    except Mounted:
        prog.done(desc, "mounted")
        return "mounted"
    except AlreadyExists:
        prog.done(desc, "exists")
        return "exists"
    started = False

    def report(held: int) -> None:
        nonlocal started
        if not started:
            started = True
            prog.start(desc, held)
        prog.update(desc, held)

    try:
        for attempt in range(1, UPLOAD_ATTEMPTS + 1):
            try:
                copy_from(writer, open_at, desc.size, desc.digest, progress=report)
                break
            except UploadRestarted:
                # Only a writer that lost its session asks to be fed again;
                # a failing source has already used its own retries.
                if attempt == UPLOAD_ATTEMPTS:
                    raise
    finally:
        writer.close()
    prog.done(desc, "pushed")
    return "pushed"


def mount_sources(store: Store, desc: Descriptor, domain: str, path: str) -> list[str]:
    """Repositories on ``domain`` that ``desc`` was fetched from (store labels)."""
    try:
        labels = store.info(desc.digest).labels
    except NotFound:
        return []
    value = labels.get(SOURCE_LABEL + domain, "")
    # containerd keeps a comma-separated list; our fetch handler writes one.
    return [r for r in value.split(",") if r and r != path]


@dataclass
class Plan:
    """What to push: blobs (any order) and manifests, children before parents."""

    blobs: dict[str, Descriptor] = field(default_factory=dict)
    manifests: list[tuple[Descriptor, bytes]] = field(default_factory=list)


def plan_from_store(store: Store, root: Descriptor, what: str) -> Plan:
    plan = Plan()
    _walk(store, root, plan, what, set())
    return plan


def _walk(store: Store, desc: Descriptor, plan: Plan, what: str, seen: set[str]) -> None:
    if str(desc.digest) in seen:
        return
    seen.add(str(desc.digest))
    if not store.exists(desc.digest):
        raise NotFound(f"{what}: {desc.digest} ({desc.media_type}) is not in the content store")
    data = read_manifest(store, desc)
    kids = manifest.children(desc, data)
    if is_index(desc.media_type):
        missing = [k for k in kids if not store.exists(k.digest)]
        if missing:
            plats = ", ".join(str(k.platform or k.digest) for k in missing[:4])
            raise NotFound(
                f"{what}: the index lists {len(kids)} manifests but {len(missing)} are not in "
                f"the store ({plats}); fetch with --all-platforms to push the whole index, "
                "or push one platform with --platform"
            )
        for k in kids:
            if is_index(k.media_type) or is_manifest(k.media_type):
                _walk(store, k, plan, what, seen)
            else:
                plan.blobs.setdefault(str(k.digest), k)
    else:
        for k in kids:
            plan.blobs.setdefault(str(k.digest), k)
    plan.manifests.append((desc, data))


def pick_platform(store: Store, root: Descriptor, matcher: MatchComparer, what: str) -> Descriptor:
    """The best platform manifest of index ``root`` that the store holds."""
    if not is_index(root.media_type):
        return root
    kids = manifest.children(root, read_manifest(store, root))
    present = [k for k in select(kids, matcher) if store.exists(k.digest)]
    if not present:
        raise NotFound(f"{what}: no manifest for the requested platform in the store")
    return pick_platform(store, present[0], matcher, what)


def target_tag(dst: reference.Reference, root: Descriptor) -> str | None:
    """The tag to put the root under (None: by digest only)."""
    if dst.digest is not None and dst.digest != root.digest:
        raise InvalidArgument(
            f"{dst.name}: the reference's digest is not the image's {root.digest}"
        )
    return dst.tag


def push_image(
    resolver: DockerResolver,
    store: Store,
    metadata: MetadataStore,
    name: str,
    ref: str | None = None,
    *,
    concurrency: int = 0,
    progress: Progress | None = None,
    platforms: MatchComparer | None = None,
    options: PushOptions | None = None,
) -> PushResult:
    """Push the stored image ``name`` to ``ref`` (default: ``name`` itself).

    ``platforms`` pushes only the best-matching platform manifest of an index,
    as the target itself (the index cannot be filtered without changing its
    digest)."""
    local = reference.parse(name).name
    image = metadata.get_image(local)
    root = image.target
    if platforms is not None:
        root = pick_platform(store, root, platforms, local)
    dst = reference.parse(ref or local)
    tag = target_tag(dst, root)
    plan = plan_from_store(store, root, local)
    pusher = resolver.pusher(dst.name, options)
    result = PushResult(dst.name, root)
    prog = progress or NullProgress()

    def push_blob(desc: Descriptor) -> list[Descriptor]:
        if not store.exists(desc.digest):
            if is_foreign(desc) or pusher.exists(desc):
                result.record(desc, "exists")
                prog.done(desc, "exists")
                return []
            raise NotFound(f"{local}: blob {desc.digest} is not in the content store")

        def open_at(offset: int) -> BinaryIO:
            f = store.reader(desc.digest)
            if offset:
                f.seek(offset)
            return f

        sources = mount_sources(store, desc, dst.domain, dst.path)
        status = upload_blob(pusher, desc, open_at, mount_from=sources, progress=prog)
        result.record(desc, status)
        return []

    dispatch(push_blob, plan.blobs.values(), concurrency=concurrency or default_concurrency())
    push_manifests(pusher, plan.manifests, root, tag, result, prog)
    return result


def push_manifests(
    pusher: DockerPusher,
    manifests: Sequence[tuple[Descriptor, bytes]],
    root: Descriptor,
    tag: str | None,
    result: PushResult,
    progress: Progress,
) -> None:
    """Children first (the list's order); the root last, under ``tag`` if any."""
    for desc, data in manifests:
        is_root = desc.digest == root.digest
        # The root keeps the descriptor the caller named (its media type may
        # come from the parent index); the bytes are the stored ones.
        status = upload_blob(
            pusher,
            root if is_root else desc,
            _bytes_at(data),
            progress=progress,
            tag=tag if is_root else None,
        )
        result.record(desc, status)


def _bytes_at(data: bytes) -> OpenAt:
    import io

    def open_at(offset: int) -> BinaryIO:
        return io.BytesIO(data[offset:])

    return open_at
