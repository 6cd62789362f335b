"""Pushing an image from the content store to a registry.

Pushing is copying from the store into a remote writer (DESIGN.md): every
blob goes through ``content.copy.copy_from`` into a ``Pusher``'s writer,
so a lost upload session resumes the same way a broken fetch does — from the
writer's offset. Everything runs on the one pool (``images.scheduler``):
blobs of every manifest in parallel (largest first), each manifest as soon as
everything it names is in — a registry never sees a manifest whose blobs it
lacks — and the root (an index after its platform manifests) last. First
one ``HEAD`` asks whether the registry has the root already (under the tag);
if so nothing else is sent. Small objects, which the pusher sends without
asking (``Pusher.asks_first``), wait for that answer; large blobs, looked
up one by one anyway, start alongside it. Only what the store holds can
be pushed: an index goes only when every platform manifest it lists is there,
exactly as stored (its digest unchanged).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import BinaryIO

from ocidist import reference
from ocidist.content import Store
from ocidist.content.copy import copy_from
from ocidist.descriptor import DISTRIBUTION_SOURCE, DOCKER_LAYER_FOREIGN, Descriptor, is_index
from ocidist.errors import (
    AlreadyExists,
    InvalidArgument,
    Mounted,
    NotFound,
    RegistryError,
    TooManyRequests,
    Unauthorized,
    UploadRestarted,
)
from ocidist.images.plan import Plan, plan, stored_platform, stored_reader
from ocidist.images.platforms import MatchComparer
from ocidist.images.scheduler import CancellingProgress, Scheduler
from ocidist.metadata import Metadata
from ocidist.progress import NullProgress, Progress
from ocidist.pull import default_concurrency
from ocidist.remotes import Pusher, Resolver
from ocidist.remotes.docker.retry import RetryPolicy

OpenAt = Callable[[int], BinaryIO]
# Feeding a writer whose session had to restart: the one retry mechanism,
# with no wait (the writer's own requests have waited already).
REFEED = RetryPolicy(backoff=0.0)


class PushResult:
    # A plain class, not a dataclass: creating one costs ~1 ms of start-up.
    def __init__(self, name: str, target: Descriptor) -> None:
        self.name = name  # the reference pushed to
        self.target = target
        self.pushed: list[Descriptor] = []
        self.existing: list[Descriptor] = []
        self.mounted: list[Descriptor] = []

    def __repr__(self) -> str:
        return (
            f"PushResult(name={self.name!r}, target={self.target!r}, pushed={len(self.pushed)}, "
            f"existing={len(self.existing)}, mounted={len(self.mounted)})"
        )

    @property
    def pushed_bytes(self) -> int:
        return sum(d.size for d in self.pushed)

    def record(self, desc: Descriptor, status: str) -> None:
        {"pushed": self.pushed, "exists": self.existing, "mounted": self.mounted}[status].append(
            desc
        )


def is_foreign(desc: Descriptor) -> bool:
    """Layers that registries are not expected to hold (fetched from ``urls``)."""
    return desc.media_type == DOCKER_LAYER_FOREIGN or ".nondistributable." in desc.media_type


def upload_blob(
    pusher: Pusher, desc: Descriptor, open_at: OpenAt, *, progress: Progress | None = None
) -> str:
    """Put one object into the pusher's repository (a manifest under the
    pusher's tag when it is the one its ref names; a blob mounted from the
    repositories its distribution-source annotation names, where it can);
    ``"pushed"``, ``"exists"`` or ``"mounted"``. A lost chunk is resumed inside the writer from the
    registry's offset; a lost session restarts, and the copy resumes from the
    writer's offset (0 then), a bounded number of times."""
    prog = progress or NullProgress()
    try:
        writer = pusher.push(desc)
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

    tries = REFEED.begin(f"push {desc.digest}")
    try:
        while True:
            try:
                copy_from(writer, open_at, desc.size, desc.digest, progress=report)
                break
            except UploadRestarted as e:
                # Only a writer that lost its session asks to be fed again;
                # a failing source has already used its own retries.
                tries.failed(e, gained=e.gained)
    finally:
        writer.close()
    prog.done(desc, "pushed")
    return "pushed"


def with_sources(desc: Descriptor, labels: Mapping[str, str]) -> Descriptor:
    """``desc`` annotated with where the store says it came from (its
    distribution-source labels): what a pusher may mount it from."""
    sources = {k: v for k, v in labels.items() if k.startswith(DISTRIBUTION_SOURCE)}
    return desc.replace(annotations={**desc.annotations, **sources}) if sources else desc


def push_ref(dst: reference.Reference, root: Descriptor, tag: str | None) -> str:
    """The ref to make a pusher for: ``repo:tag@digest`` tags only the root."""
    return f"{dst.repository}:{tag}@{root.digest}" if tag else dst.repository


def plan_from_store(store: Store, root: Descriptor, what: str) -> Plan:
    """What pushing ``root`` sends; every object must be in ``store`` (an
    index only with every manifest it lists: its digest cannot change)."""

    def whole_index(desc: Descriptor, kids: Sequence[Descriptor]) -> None:
        if not is_index(desc.media_type):
            return
        missing = [k for k in kids if not store.exists(k.digest)]
        if missing:
            plats = ", ".join(str(k.platform or k.digest) for k in missing[:4])
            raise NotFound(
                f"{what}: the index lists {len(kids)} manifests but {len(missing)} are not in "
                f"the store ({plats}); fetch with --all-platforms to push the whole index, "
                "or push one platform with --platform"
            )

    return plan(stored_reader(store, what), root, check=whole_index)


def target_tag(dst: reference.Reference, root: Descriptor) -> str | None:
    """The tag to put the root under (None: by digest only)."""
    if dst.digest is not None and dst.digest != root.digest:
        raise InvalidArgument(
            f"{dst.name}: the reference's digest is not the image's {root.digest}"
        )
    return dst.tag


def push_image(
    resolver: Resolver,
    store: Store,
    metadata: Metadata,
    name: str,
    ref: str | None = None,
    *,
    concurrency: int = 0,
    progress: Progress | None = None,
    platforms: MatchComparer | None = None,
) -> PushResult:
    """Push the stored image ``name`` to ``ref`` (default: ``name`` itself).

    ``platforms`` pushes only the best-matching platform manifest of an index,
    as the target itself (the index cannot be filtered without changing its
    digest)."""
    local = reference.parse(name).name
    image = metadata.get_image(local)
    root = image.target
    if platforms is not None:
        root = stored_platform(store, root, platforms, local)
    dst = reference.parse(ref or local)
    tag = target_tag(dst, root)
    todo = plan_from_store(store, root, local)
    pusher = resolver.pusher(push_ref(dst, root, tag))
    result = PushResult(dst.name, root)
    sched = Scheduler(concurrency or default_concurrency(), name="push")
    # A failed push returns while uploads may still run: they stop at their
    # next chunk, not send on and commit (dist serve, a client program go on).
    prog: Progress = CancellingProgress(progress, sched, "transfer stopped: the push failed")

    def push_blob(desc: Descriptor) -> None:
        try:
            labels = store.info(desc.digest).labels
        except NotFound:
            if is_foreign(desc) or pusher.exists(desc):
                result.record(desc, "exists")
                prog.done(desc, "exists")
                return
            raise NotFound(f"{local}: blob {desc.digest} is not in the content store") from None

        def open_at(offset: int) -> BinaryIO:
            f = store.reader(desc.digest)
            if offset:
                f.seek(offset)
            return f

        status = upload_blob(pusher, with_sources(desc, labels), open_at, progress=prog)
        result.record(desc, status)

    def check_root() -> None:
        if image_present(pusher, root):
            raise _Present

    sched.add(CHECK, check_root)
    for key, desc in todo.blobs.items():
        # A blob the pusher sends without asking waits for the root check (a
        # re-push sends nothing); one it looks up first can go alongside.
        deps = () if pusher.asks_first(desc) else (CHECK,)
        sched.add(blob_key(key), partial(push_blob, desc), deps, (2, -desc.size))
    add_manifest_jobs(sched, pusher, todo, root, result, prog, after_root_check=True)
    try:
        sched.run()
    except _Present:
        # No failure: the running uploads finish first; the rest is there already.
        sched.join()
        done = {str(d.digest) for d in (*result.pushed, *result.existing, *result.mounted)}
        everything = [*todo.blobs.values(), *(d for d, _ in todo.manifests)]
        for desc in everything:
            if str(desc.digest) not in done:
                result.record(desc, "exists")
                prog.done(desc, "exists")
    return result


CHECK = "check"  # the job asking whether the registry has the root already


def image_present(pusher: Pusher, root: Descriptor) -> bool:
    """Whether the registry has ``root`` (under the pusher's tag, if any): then it has
    everything the root names too, since a registry refuses a manifest whose
    blobs or child manifests it lacks. A copy can ask this before it starts."""
    try:
        return pusher.exists(root)
    except RegistryError as e:
        if isinstance(e, Unauthorized | TooManyRequests):
            raise
        # Some registries answer 405 to HEAD on manifests (PROTOCOL-NOTES):
        # no answer here is no reason not to push.
        return False


class _Present(Exception):
    """The registry has the image's root: nothing more to send (stops the graph)."""


def blob_key(dgst: str) -> str:
    """The scheduler key of a blob's job (manifest jobs wait on these)."""
    return "b:" + dgst


def _manifest_key(dgst: str) -> str:
    return "m:" + dgst


def add_manifest_jobs(
    sched: Scheduler,
    pusher: Pusher,
    todo: Plan,
    root: Descriptor,
    result: PushResult,
    progress: Progress,
    *,
    after_root_check: bool = False,
) -> None:
    """One job per manifest of ``todo``, waiting for every object it names
    (blob jobs ``blob_key(digest)``, manifest jobs); the root goes last (under
    the pusher's tag) and, with ``after_root_check``, after the ``CHECK`` job."""
    for desc, data in todo.manifests:  # children first: their keys are known
        is_root = desc.digest == root.digest
        deps = [
            key
            for kid in todo.children.get(str(desc.digest), ())
            for key in (blob_key(str(kid.digest)), _manifest_key(str(kid.digest)))
        ]
        if is_root and after_root_check:
            deps.append(CHECK)
        # The root keeps the descriptor the caller named (its media type may
        # come from the parent index); the bytes are the stored ones.
        target = root if is_root else desc

        def put(target: Descriptor = target, data: bytes = data) -> None:
            status = upload_blob(pusher, target, _bytes_at(data), progress=progress)
            result.record(target, status)

        sched.add(_manifest_key(str(desc.digest)), put, deps, (1, 0))


def _bytes_at(data: bytes) -> OpenAt:
    import io

    def open_at(offset: int) -> BinaryIO:
        return io.BytesIO(data[offset:] if offset else data)

    return open_at
