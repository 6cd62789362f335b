"""``containerd.services.content.v1.Content`` over a content store.

Write follows containerd's service message for message (a STAT first with the
ref, WRITEs at the current offset, offset 0 restarting, COMMIT verifying),
because containerd clients check the offsets and digests it answers. The
ingest is our store's own: a stream that ends without COMMIT (the client
closed or vanished) only closes the writer, so the bytes stay for a resume.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator

import grpc
from google.protobuf.empty_pb2 import Empty

from ocidist.api import convert, leases_service, rpc
from ocidist.api.filters import Fields, compile_filters
from ocidist.api.gen import content_pb2 as pb
from ocidist.content import Info, Status, Store, Writer
from ocidist.digest import Digest
from ocidist.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    Unavailable,
)
from ocidist.leases import CONTENT, LeaseStore, Resource

SERVICE = "containerd.services.content.v1.Content"
CHUNK = 1 << 20  # containerd's read chunk too
# A locked ref is tried this many times, the pauses doubling from the first
# (at most ~0.5 s in all, as containerd's local store).
LOCK_ATTEMPTS = 10
LOCK_FIRST_PAUSE = 0.001
LIST_BATCH = 100


def _info_fields(info: Info) -> Fields:
    def get(path: tuple[str, ...]) -> str | None:
        if path == ("digest",):
            return str(info.digest)
        if path == ("size",):
            return str(info.size)
        if len(path) == 2 and path[0] == "labels":
            return info.labels.get(path[1])
        return None

    return get


def _status_fields(status: Status) -> Fields:
    def get(path: tuple[str, ...]) -> str | None:
        if path == ("ref",):
            return status.key
        if path == ("expected",):
            return str(status.expected) if status.expected else None
        return None

    return get


class ContentService:
    def __init__(self, store: Store, leases: LeaseStore) -> None:
        self.store = store
        self.leases = leases

    def handler(self) -> grpc.GenericRpcHandler:
        m = rpc.Method
        return rpc.service(
            SERVICE,
            [
                m("Info", "unary", self.info, pb.InfoRequest, pb.InfoResponse),
                m("Update", "unary", self.update, pb.UpdateRequest, pb.UpdateResponse),
                m("List", "stream", self.list, pb.ListContentRequest, pb.ListContentResponse),
                m("Delete", "unary", self.delete, pb.DeleteContentRequest, Empty),
                m("Read", "stream", self.read, pb.ReadContentRequest, pb.ReadContentResponse),
                m("Status", "unary", self.status, pb.StatusRequest, pb.StatusResponse),
                m(
                    "ListStatuses",
                    "unary",
                    self.list_statuses,
                    pb.ListStatusesRequest,
                    pb.ListStatusesResponse,
                ),
                m("Write", "bidi", self.write, pb.WriteContentRequest, pb.WriteContentResponse),
                m("Abort", "unary", self.abort, pb.AbortRequest, Empty),
            ],
        )

    def info(self, req: pb.InfoRequest, context: grpc.ServicerContext) -> pb.InfoResponse:
        return pb.InfoResponse(
            info=convert.info_message(self.store.info(convert.digest(req.digest)))
        )

    def update(self, req: pb.UpdateRequest, context: grpc.ServicerContext) -> pb.UpdateResponse:
        dgst = convert.digest(req.info.digest)
        paths = list(req.update_mask.paths)
        for p in paths:
            if p != "labels" and not p.startswith("labels."):
                raise InvalidArgument(f"content {dgst}: cannot update field {p!r}")
        given = dict(req.info.labels)
        if not paths or "labels" in paths:
            info = self.store.update(dgst, given, replace=True)
        else:
            # One key at a time under the store's label lock, so two clients
            # setting different labels on one blob do not undo each other.
            keys = {p[len("labels.") :] for p in paths}
            info = self.store.update(dgst, {k: given.get(k, "") for k in keys})
        return pb.UpdateResponse(info=convert.info_message(info))

    def list(
        self, req: pb.ListContentRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ListContentResponse]:
        match = compile_filters(list(req.filters))
        batch: list[pb.Info] = []
        for info in self.store.walk():
            if match(_info_fields(info)):
                batch.append(convert.info_message(info))
            if len(batch) >= LIST_BATCH:
                yield pb.ListContentResponse(info=batch)
                batch = []
        if batch:
            yield pb.ListContentResponse(info=batch)

    def delete(self, req: pb.DeleteContentRequest, context: grpc.ServicerContext) -> Empty:
        self.store.delete(convert.digest(req.digest))
        return Empty()

    def read(
        self, req: pb.ReadContentRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ReadContentResponse]:
        dgst = convert.digest(req.digest)
        offset = max(0, req.offset)
        with self.store.reader(dgst) as f:
            size = f.seek(0, 2)
            if offset > size:
                raise OutOfRange(f"content {dgst}: offset {offset} beyond size {size}")
            end = size if req.size <= 0 else min(size, offset + req.size)
            f.seek(offset)
            while offset < end and context.is_active():
                data = f.read(min(CHUNK, end - offset))
                if not data:
                    break
                yield pb.ReadContentResponse(offset=offset, data=data)
                offset += len(data)

    def status(self, req: pb.StatusRequest, context: grpc.ServicerContext) -> pb.StatusResponse:
        return pb.StatusResponse(status=convert.status_message(self.store.status(req.ref)))

    def list_statuses(
        self, req: pb.ListStatusesRequest, context: grpc.ServicerContext
    ) -> pb.ListStatusesResponse:
        match = compile_filters(list(req.filters))
        return pb.ListStatusesResponse(
            statuses=[
                convert.status_message(s)
                for s in self.store.list_statuses()
                if match(_status_fields(s))
            ]
        )

    def abort(self, req: pb.AbortRequest, context: grpc.ServicerContext) -> Empty:
        self.store.abort(req.ref)
        return Empty()

    # -- Write -----------------------------------------------------------------

    def write(
        self, requests: Iterator[pb.WriteContentRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.WriteContentResponse]:
        first = next(requests, None)
        if first is None:
            return
        if not first.ref:
            raise InvalidArgument("write: the first message must carry a ref")
        lease = rpc.metadata_value(context, rpc.LEASE_KEY)
        if lease:
            # Refused before any byte is taken, as containerd does: a lease
            # is looked up in the call's namespace.
            leases_service.namespace(context)
        session = _WriteSession(self, context, first.ref, lease)
        session.open(first)
        try:
            req: pb.WriteContentRequest | None = first
            while req is not None:
                resp, done = session.handle(req)
                yield resp
                if done:
                    return
                req = next(requests, None)
        finally:
            # Without a commit this only lets go of the ingest: its bytes stay
            # for the next writer with the same ref.
            session.close()

    def lease_content(self, context: grpc.ServicerContext, lease: str, dgst: Digest) -> None:
        """Add committed content to the call's lease (in its namespace)."""
        if lease:
            ns = rpc.metadata_value(context, rpc.NAMESPACE_KEY)
            self.leases.add_resource(ns, lease, Resource(str(dgst), CONTENT))


def _open_writer(store: Store, ref: str, total: int, expected: Digest | None) -> Writer:
    """The writer for ``ref``, trying again for a while when it is locked.

    A client that closes a Write stream and opens the next one for the same
    ref at once (containerd's clients do: their Close only half-closes) may
    arrive before the first stream's handler let go. containerd's store
    tries ten times with growing random pauses (about half a second in all)
    before it answers UNAVAILABLE; so do we. Never blocking on the lock
    itself: a worker thread must not wait for as long as another stream
    holds a ref.
    """
    pause = LOCK_FIRST_PAUSE
    for attempt in range(LOCK_ATTEMPTS):
        try:
            return store.writer(ref, total=total, expected=expected, wait=False)
        except FailedPrecondition:
            if attempt == LOCK_ATTEMPTS - 1:
                break
        time.sleep(pause * (0.5 + random.random() / 2))
        pause *= 2
    raise Unavailable(f"ingest {ref}: locked by another writer")


class _WriteSession:
    """One Write stream: the writer it holds and the expectations so far."""

    def __init__(
        self, service: ContentService, context: grpc.ServicerContext, ref: str, lease: str
    ) -> None:
        self.service = service
        self.context = context
        self.ref = ref
        self.lease = lease
        self.total = -1
        self.expected: Digest | None = None
        self.writer: Writer | None = None

    def open(self, first: pb.WriteContentRequest) -> None:
        self._expect(first)
        store = self.service.store
        try:
            self.writer = _open_writer(store, self.ref, self.total, self.expected)
        except AlreadyExists:
            if self.expected is not None:
                self.service.lease_content(self.context, self.lease, self.expected)
            raise

    def _expect(self, req: pb.WriteContentRequest) -> None:
        if req.expected:
            self.expected = convert.digest(req.expected)
            if self.writer is not None and self.service.store.exists(self.expected):
                self.service.lease_content(self.context, self.lease, self.expected)
                self.close()
                # The bytes are worthless now that the content exists.
                with contextlib.suppress(NotFound, FailedPrecondition):
                    self.service.store.abort(self.ref)
                raise AlreadyExists(f"content {self.expected} already exists")
        if req.total > 0:
            self.total = req.total

    def handle(self, req: pb.WriteContentRequest) -> tuple[pb.WriteContentResponse, bool]:
        writer = self.writer
        assert writer is not None
        if req.ref and req.ref != self.ref:
            raise InvalidArgument(f"write: ref {req.ref!r} on a stream for {self.ref!r}")
        self._expect(req)
        st = writer.status()
        resp = pb.WriteContentResponse(action=req.action, offset=st.offset)
        if req.action == pb.STAT:
            resp.started_at.CopyFrom(convert.timestamp(st.started_at))
            resp.updated_at.CopyFrom(convert.timestamp(st.updated_at))
            # The request's total, else what the resumed ingest recorded.
            resp.total = max(self.total if self.total > 0 else st.total, 0)
            resp.digest = str(writer.digest())
            return resp, False
        if req.action not in (pb.WRITE, pb.COMMIT):
            raise InvalidArgument(f"write: unknown action {req.action}")
        if req.offset > 0 and req.offset != st.offset:
            raise OutOfRange(f"write @{req.offset} must occur at current offset {st.offset}")
        if req.offset == 0 and st.offset > 0:
            writer.truncate(0)
            resp.offset = 0
        if req.data:
            resp.offset += writer.write(req.data)
        done = False
        if req.action == pb.COMMIT:
            dgst = self.expected or writer.digest()
            size = self.total if self.total > 0 else -1
            writer.commit(size, dgst, dict(req.labels) or None)
            self.service.lease_content(self.context, self.lease, dgst)
            now = time.time()
            resp.started_at.CopyFrom(convert.timestamp(st.started_at))
            resp.updated_at.CopyFrom(convert.timestamp(now))
            resp.total = resp.offset
            resp.digest = str(dgst)
            done = True
        else:
            resp.digest = str(writer.digest())
        return resp, done

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
