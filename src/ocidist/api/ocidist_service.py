"""``ocidist.v1.Distribution``: pull, push and unpack done by the daemon (with
its registry configuration and credentials), streaming progress.

The operation runs in a thread of its own and reports through a queue; the
RPC streams what arrives. When the client goes away, the next progress
report raises, so the transfers stop at their next chunk and what they
fetched stays as resumable ingests.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol

import grpc

from ocidist.api import convert, rpc
from ocidist.api.gen import ocidist_pb2 as pb
from ocidist.api.unpack_roots import UnpackRoots
from ocidist.content import Store
from ocidist.descriptor import Descriptor
from ocidist.errors import Cancelled, DistError, InvalidArgument, reworded
from ocidist.images.platforms import selection
from ocidist.metadata import Metadata
from ocidist.progress import Progress
from ocidist.remotes import Resolver

SERVICE = "ocidist.v1.Distribution"
UPDATE_INTERVAL = 0.25  # seconds between progress events for one object

_END = object()


class OwnedResolver(Resolver, Protocol):
    """A resolver made for one call (by the server, which builds it) and
    closed after it."""

    def close(self) -> None: ...


class QueueProgress:
    """A Progress that turns reports into events on a queue."""

    def __init__(self, context: grpc.ServicerContext) -> None:
        self.events: queue.Queue[object] = queue.Queue()
        self._context = context
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def _put(self, event: pb.ProgressEvent) -> None:
        if not self._context.is_active():
            raise Cancelled("the client went away")
        self.events.put(event)

    def start(self, desc: Descriptor, offset: int) -> None:
        self._put(_event("start", desc, offset=offset))

    def update(self, desc: Descriptor, held: int) -> None:
        now = time.monotonic()
        with self._lock:
            key = str(desc.digest)
            if now - self._last.get(key, 0.0) < UPDATE_INTERVAL:
                return
            self._last[key] = now
        self._put(_event("progress", desc, offset=held))

    def done(self, desc: Descriptor, status: str) -> None:
        self._put(_event("done", desc, offset=desc.size, status=status))

    def close(self) -> None:
        pass


def _event(
    kind: str, desc: Descriptor, *, offset: int = 0, status: str = "", name: str = ""
) -> pb.ProgressEvent:
    return pb.ProgressEvent(
        event=kind,
        descriptor=convert.descriptor_message(desc),
        offset=offset,
        status=status,
        name=name,
    )


class DistributionService:
    def __init__(
        self,
        store: Store,
        metadata: Metadata,
        resolver: Callable[[], OwnedResolver],
        unpack_roots: UnpackRoots,
    ) -> None:
        self.store = store
        self.metadata = metadata
        self.resolver = resolver
        self.unpack_roots = unpack_roots

    def handler(self) -> grpc.GenericRpcHandler:
        m = rpc.Method
        return rpc.service(
            SERVICE,
            [
                m("Pull", "stream", self.pull, pb.PullRequest, pb.ProgressEvent),
                m("Push", "stream", self.push, pb.PushRequest, pb.ProgressEvent),
                m("Unpack", "stream", self.unpack, pb.UnpackRequest, pb.ProgressEvent),
            ],
        )

    def pull(
        self, req: pb.PullRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ProgressEvent]:
        from ocidist.pull import fetch_image

        if not req.ref:
            raise InvalidArgument("pull: the request has no ref")
        matcher, limit = selection(list(req.platforms), req.all_platforms)

        def work(resolver: Resolver, progress: Progress) -> pb.ProgressEvent:
            result = fetch_image(
                resolver,
                self.store,
                self.metadata,
                req.ref,
                matcher=matcher,
                limit=limit,
                concurrency=max(0, req.concurrency),
                progress=progress,
            )
            return _event("complete", result.target, name=result.name)

        yield from self._run(f"pull {req.ref}", work, context)

    def push(
        self, req: pb.PushRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ProgressEvent]:
        from ocidist.push import push_image

        if not req.name:
            raise InvalidArgument("push: the request has no image name")

        def work(resolver: Resolver, progress: Progress) -> pb.ProgressEvent:
            result = push_image(
                resolver, self.store, self.metadata, req.name, req.ref or None, progress=progress
            )
            return _event("complete", result.target, name=result.name)

        yield from self._run(f"push {req.name}", work, context)

    def unpack(
        self, req: pb.UnpackRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ProgressEvent]:
        from ocidist.unpack import unpack_image

        if not req.name:
            raise InvalidArgument("unpack: the request has no image name")
        matcher, _ = selection([req.platform] if req.platform else [])

        def work(resolver: Resolver, progress: Progress) -> pb.ProgressEvent:
            # Only below the operator's unpack roots, through the directory's
            # descriptor (unpack_roots.py): the client names the path.
            with self.unpack_roots.open(req.dir) as dest:
                try:
                    result = unpack_image(
                        resolver,
                        self.store,
                        self.metadata,
                        req.name,
                        dest.path,
                        matcher=matcher,
                        progress=progress,
                    )
                except BaseException as e:
                    dest.discard()
                    if isinstance(e, DistError) and dest.path in str(e):
                        raise reworded(e, str(e).replace(dest.path, dest.shown)) from e
                    raise
            return _event("complete", result.manifest, name=result.name)

        yield from self._run(f"unpack {req.name}", work, context)

    def _run(
        self,
        what: str,
        work: Callable[[Resolver, Progress], pb.ProgressEvent],
        context: grpc.ServicerContext,
    ) -> Iterator[pb.ProgressEvent]:
        """Run ``work`` in a thread of its own, streaming its progress, then
        its final event (or raising its error)."""
        progress = QueueProgress(context)
        outcome: list[BaseException | pb.ProgressEvent] = []

        def run() -> None:
            # Whatever fails, making the resolver included, ends the call:
            # the loop below waits for _END and nothing else.
            try:
                resolver = self.resolver()
                try:
                    outcome.append(work(resolver, progress))
                finally:
                    resolver.close()
            except BaseException as e:
                outcome.append(e)
            finally:
                progress.events.put(_END)

        thread = threading.Thread(target=run, name=what, daemon=True)
        thread.start()
        while (item := progress.events.get()) is not _END:
            assert isinstance(item, pb.ProgressEvent)
            yield item
        thread.join()
        last = outcome[0]
        if isinstance(last, BaseException):
            raise last
        yield last
