"""``ocidist.v1.Distribution``: pull (and, once they exist, push and unpack)
done by the daemon, streaming progress.

The operation runs in a thread of its own and reports through a queue; the
RPC streams what arrives. When the client goes away, the next progress
report raises, so the transfers stop at their next chunk and what they
fetched stays as resumable ingests.
"""

from __future__ import annotations

import argparse
import queue
import threading
import time
from collections.abc import Callable, Iterator

import grpc

from ocidist.api import convert, rpc
from ocidist.api.gen import ocidist_pb2 as pb
from ocidist.content.local import LocalStore
from ocidist.descriptor import Descriptor
from ocidist.errors import DistError, Unavailable
from ocidist.metadata import MetadataStore
from ocidist.remotes.docker.resolver import DockerResolver

SERVICE = "ocidist.v1.Distribution"
UPDATE_INTERVAL = 0.25  # seconds between progress events for one object

_END = object()


class _Cancelled(Unavailable):
    pass


class QueueProgress:
    """A Progress that turns reports into events on a queue."""

    def __init__(self, context: grpc.ServicerContext) -> None:
        self.events: queue.Queue[object] = queue.Queue()
        self._context = context
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def _put(self, event: pb.ProgressEvent) -> None:
        if not self._context.is_active():
            raise _Cancelled("pull: the client went away")
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
        store: LocalStore,
        metadata: MetadataStore,
        resolver: Callable[[], DockerResolver],
    ) -> None:
        self.store = store
        self.metadata = metadata
        self.resolver = resolver

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
        from ocidist.cli.fetch import matcher_for
        from ocidist.pull import fetch_image

        if not req.ref:
            raise DistError("pull: the request has no ref")
        matcher, limit = matcher_for(
            argparse.Namespace(platform=list(req.platforms), all_platforms=req.all_platforms)
        )
        progress = QueueProgress(context)
        outcome: list[BaseException | pb.ProgressEvent] = []

        def work() -> None:
            resolver = self.resolver()
            try:
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
                outcome.append(_event("complete", result.target, name=result.name))
            except BaseException as e:
                outcome.append(e)
            finally:
                resolver.close()
                progress.events.put(_END)

        thread = threading.Thread(target=work, name=f"pull {req.ref}", daemon=True)
        thread.start()
        while (item := progress.events.get()) is not _END:
            assert isinstance(item, pb.ProgressEvent)
            yield item
        thread.join()
        last = outcome[0]
        if isinstance(last, BaseException):
            raise last
        yield last

    def push(
        self, req: pb.PushRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ProgressEvent]:
        # ocidist.push does not exist yet (being built alongside this service).
        yield from ()
        raise convert.Unimplemented("push: not available in this dist serve yet")

    def unpack(
        self, req: pb.UnpackRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ProgressEvent]:
        # ocidist.unpack does not exist yet (being built alongside this service).
        yield from ()
        raise convert.Unimplemented("unpack: not available in this dist serve yet")
