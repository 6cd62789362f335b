"""Pushing an image from the content store to a registry.

Pushing is copying from the store into a remote writer (DESIGN.md): every
blob goes through ``content.copy.copy_from`` into a ``DockerPusher`` writer,
so a lost upload session resumes the same way a broken fetch does — from the
writer's offset. Everything runs on one pool of workers (``run_graph``):
blobs of every manifest in parallel (largest first), each manifest as soon as
everything it names is in — a registry never sees a manifest whose blobs it
lacks — and the root (an index after its platform manifests) last. First
one ``HEAD`` asks whether the registry has the root already (under the tag);
if so nothing else is sent. Small objects, which the pusher sends without
asking (PushOptions.lookup_min), wait for that answer; large blobs, looked
up one by one anyway, start alongside it. Only what the store holds can
be pushed: an index goes only when every platform manifest it lists is there,
exactly as stored (its digest unchanged).
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import partial
from typing import BinaryIO, NamedTuple

from ocidist import manifest, reference
from ocidist.content import Store
from ocidist.content.copy import copy_from
from ocidist.descriptor import (
    DOCKER_LAYER_FOREIGN,
    Descriptor,
    is_index,
    is_manifest,
)
from ocidist.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    RegistryError,
    TooManyRequests,
    Unauthorized,
)
from ocidist.images.handlers import SOURCE_LABEL
from ocidist.images.platforms import MatchComparer, select
from ocidist.images.walk import read_manifest
from ocidist.metadata import MetadataStore
from ocidist.progress import NullProgress, Progress
from ocidist.pull import default_concurrency
from ocidist.remotes.docker.pusher import DockerPusher, Mounted, PushOptions
from ocidist.remotes.docker.resolver import DockerResolver
from ocidist.remotes.docker.upload import UploadRestarted

OpenAt = Callable[[int], BinaryIO]
# Attempts per blob at feeding a writer whose session had to restart.
UPLOAD_ATTEMPTS = 5


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


def _sources(labels: Mapping[str, str], domain: str, path: str) -> list[str]:
    """Repositories on ``domain`` that a blob was fetched from (its store labels)."""
    value = labels.get(SOURCE_LABEL + domain, "")
    # containerd keeps a comma-separated list; our fetch handler writes one.
    return [r for r in value.split(",") if r and r != path]


class Plan:
    """What to push: blobs (any order) and manifests, children before parents."""

    # A plain class: a dataclass costs ~1 ms of start-up.
    def __init__(self) -> None:
        self.blobs: dict[str, Descriptor] = {}
        self.manifests: list[tuple[Descriptor, bytes]] = []
        # digest -> what the manifest names, where the walk decoded it already
        self.children: dict[str, list[Descriptor]] = {}


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
    kids = plan.children[str(desc.digest)] = manifest.children(desc, data)
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

        sources = _sources(labels, dst.domain, dst.path)
        status = upload_blob(pusher, desc, open_at, mount_from=sources, progress=prog)
        result.record(desc, status)

    def check_root() -> None:
        if image_present(pusher, root, tag):
            raise _Present

    jobs: dict[str, Job] = {CHECK: Job(check_root, (), (0, 0))}
    for key, desc in plan.blobs.items():
        # A blob the pusher sends without asking waits for the root check (a
        # re-push sends nothing); one it looks up first can go alongside.
        small = 0 <= desc.size < pusher.options.lookup_min
        jobs[_blob_key(key)] = Job(
            partial(push_blob, desc), (CHECK,) if small else (), (2, -desc.size)
        )
    jobs |= manifest_jobs(
        pusher, plan.manifests, root, tag, result, prog, after_root_check=True, known=plan.children
    )
    try:
        run_graph(jobs, concurrency or default_concurrency())
    except _Present:
        # Running uploads finished first; the rest is there already.
        done = {str(d.digest) for d in (*result.pushed, *result.existing, *result.mounted)}
        everything = [*plan.blobs.values(), *(d for d, _ in plan.manifests)]
        for desc in everything:
            if str(desc.digest) not in done:
                result.record(desc, "exists")
                prog.done(desc, "exists")
    return result


CHECK = "check"  # the job asking whether the registry has the root already


def image_present(pusher: DockerPusher, root: Descriptor, tag: str | None) -> bool:
    """Whether the registry has ``root`` (under ``tag``, if any): then it has
    everything the root names too, since a registry refuses a manifest whose
    blobs or child manifests it lacks. A copy can ask this before it starts."""
    try:
        return pusher.exists(root, tag=tag)
    except RegistryError as e:
        if isinstance(e, Unauthorized | TooManyRequests):
            raise
        # Some registries answer 405 to HEAD on manifests (PROTOCOL-NOTES):
        # no answer here is no reason not to push.
        return False


class _Present(Exception):
    """The registry has the image's root: nothing more to send (stops the graph)."""


def _blob_key(dgst: str) -> str:
    return "b:" + dgst


def _manifest_key(dgst: str) -> str:
    return "m:" + dgst


def manifest_jobs(
    pusher: DockerPusher,
    manifests: Sequence[tuple[Descriptor, bytes]],
    root: Descriptor,
    tag: str | None,
    result: PushResult,
    progress: Progress,
    *,
    after_root_check: bool = False,
    known: Mapping[str, Sequence[Descriptor]] | None = None,
) -> dict[str, Job]:
    """One job per manifest, waiting for every object it names (blob jobs
    ``b:<digest>``, manifest jobs ``m:<digest>``, where present); the root
    goes under ``tag`` and, with ``after_root_check``, after the ``CHECK`` job.
    ``known`` holds the children of manifests decoded already."""
    jobs: dict[str, Job] = {}
    for desc, data in manifests:
        is_root = desc.digest == root.digest
        kids = (known or {}).get(str(desc.digest))
        deps = [
            key
            for kid in (manifest.children(desc, data) if kids is None else kids)
            for key in (_blob_key(str(kid.digest)), _manifest_key(str(kid.digest)))
        ]
        if is_root and after_root_check:
            deps.append(CHECK)
        # The root keeps the descriptor the caller named (its media type may
        # come from the parent index); the bytes are the stored ones.
        target = root if is_root else desc

        def put(target: Descriptor = target, data: bytes = data, is_root: bool = is_root) -> None:
            status = upload_blob(
                pusher, target, _bytes_at(data), progress=progress, tag=tag if is_root else None
            )
            result.record(target, status)

        jobs[_manifest_key(str(desc.digest))] = Job(put, deps, (1, 0))
    return jobs


def push_manifests(
    pusher: DockerPusher,
    manifests: Sequence[tuple[Descriptor, bytes]],
    root: Descriptor,
    tag: str | None,
    result: PushResult,
    progress: Progress,
) -> None:
    """Every manifest once what it names is in (the blobs must be there
    already); the platform manifests of an index in parallel, the root last,
    under ``tag`` if any."""
    jobs = manifest_jobs(pusher, manifests, root, tag, result, progress)
    run_graph(jobs, default_concurrency())


class Job(NamedTuple):
    run: Callable[[], None]
    deps: Collection[str]  # keys of jobs that must finish first (unknown keys: none)
    priority: tuple[int, int]  # among the jobs ready to run, the lowest goes first


def run_graph(jobs: Mapping[str, Job], concurrency: int) -> None:
    """Run every job after the jobs it depends on, ``concurrency`` at a time.

    The first failure stops the graph: nothing new starts, the running jobs
    finish, and the failure is raised in the caller's thread (which works as
    one of the workers: one thread fewer to start)."""
    waiting = {k: 0 for k in jobs}
    dependents: dict[str, list[str]] = {}
    for k, job in jobs.items():
        for d in set(job.deps):
            if d in jobs:
                waiting[k] += 1
                dependents.setdefault(d, []).append(k)
    seq = itertools.count()
    ready = [(job.priority, next(seq), k) for k, job in jobs.items() if not waiting[k]]
    heapq.heapify(ready)
    cond = threading.Condition()
    left = len(jobs)
    running = 0
    failure: list[BaseException] = []

    def worker() -> None:
        nonlocal left, running
        while True:
            with cond:
                while not ready and not failure and left and running:
                    cond.wait()
                if failure or not ready:
                    if left and not running and not failure:
                        failure.append(RuntimeError("push: jobs wait on each other"))
                    cond.notify_all()
                    return
                _, _, key = heapq.heappop(ready)
                running += 1
            try:
                jobs[key].run()
            except BaseException as e:  # re-raised in the caller's thread
                with cond:
                    failure.append(e)
                    running -= 1
                    cond.notify_all()
                return
            with cond:
                running -= 1
                left -= 1
                for d in dependents.get(key, ()):
                    waiting[d] -= 1
                    if not waiting[d]:
                        heapq.heappush(ready, (jobs[d].priority, next(seq), d))
                cond.notify_all()

    threads = [
        threading.Thread(target=worker, name=f"push-{i}", daemon=True)
        for i in range(1, min(max(1, concurrency), len(jobs)))
    ]
    for t in threads:
        t.start()
    worker()
    for t in threads:
        t.join()
    if failure:
        raise failure[0]


def _bytes_at(data: bytes) -> OpenAt:
    import io

    def open_at(offset: int) -> BinaryIO:
        return io.BytesIO(data[offset:] if offset else data)

    return open_at
