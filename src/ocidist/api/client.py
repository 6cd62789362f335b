"""`dist --address`: the store and metadata of a `dist serve` daemon behind
the same Python interfaces as the local ones.

RemoteStore implements the content ``Store`` protocol and RemoteMetadata the
``Metadata`` protocol, which is all any command or composition asks of a
store; neither touches the local filesystem.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, BinaryIO, TypeVar

import grpc
from google.protobuf.empty_pb2 import Empty
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message

from ocidist.api import address as addr
from ocidist.api import (
    content_service,
    convert,
    images_service,
    leases_service,
    ocidist_service,
    rpc,
)
from ocidist.api.gen import content_pb2 as cpb
from ocidist.api.gen import images_pb2 as ipb
from ocidist.api.gen import leases_pb2 as lpb
from ocidist.api.gen import namespaces_pb2 as npb
from ocidist.api.gen import ocidist_pb2 as opb
from ocidist.api.remote_io import RemoteReader, RemoteWriter
from ocidist.content import Info, Status, WalkFilter
from ocidist.descriptor import Descriptor
from ocidist.digest import Digest
from ocidist.errors import AlreadyExists, DistError, FailedPrecondition, NotFound, Unavailable
from ocidist.leases import CONTENT, Lease
from ocidist.metadata import Image
from ocidist.value import Value

M = TypeVar("M", bound=Message)

BUFSIZE = 1 << 20
LOCK_RETRY_MAX = 1.0  # seconds between tries for a locked ingest


class Event(Value):
    """A progress event of a daemon-side operation (see ocidist.proto)."""

    __slots__ = ("event", "descriptor", "offset", "status", "name")
    event: str
    descriptor: Descriptor | None
    offset: int
    status: str
    name: str

    def __init__(
        self,
        event: str,
        descriptor: Descriptor | None,
        offset: int = 0,
        status: str = "",
        name: str = "",
    ) -> None:
        object.__setattr__(self, "event", event)
        object.__setattr__(self, "descriptor", descriptor)
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "name", name)


class Daemon:
    """A connection to `dist serve`; cheap until the first call."""

    def __init__(self, address: str, namespace: str = rpc.DEFAULT_NAMESPACE) -> None:
        self.address = addr.parse(address)
        self.what = f"dist serve at {self.address}"
        self._channel = grpc.insecure_channel(
            self.address.target, options=list(rpc.CHANNEL_OPTIONS)
        )
        self._metadata = ((rpc.NAMESPACE_KEY, namespace),)

    def close(self) -> None:
        self._channel.close()

    def store(self) -> RemoteStore:
        return RemoteStore(self)

    def metadata(self) -> RemoteMetadata:
        return RemoteMetadata(self)

    # -- calls -----------------------------------------------------------------

    def unary(
        self,
        service: str,
        method: str,
        req: Message,
        resp: type[M],
        metadata: tuple[tuple[str, str], ...] | None = None,
    ) -> M:
        """One call; ``metadata`` replaces the default (namespace) header."""
        call = self._channel.unary_unary(
            rpc.path(service, method),
            request_serializer=_serialize,
            response_deserializer=resp.FromString,
        )
        try:
            out: M = call(req, metadata=self._metadata if metadata is None else metadata)
            return out
        except grpc.RpcError as e:
            raise convert.error_from(e, self.what) from None

    def stream(self, service: str, method: str, req: Message, resp: type[M]) -> Iterator[M]:
        call = self._channel.unary_stream(
            rpc.path(service, method),
            request_serializer=_serialize,
            response_deserializer=resp.FromString,
        )
        it = call(req, metadata=self._metadata)
        try:
            yield from it
        except grpc.RpcError as e:
            raise convert.error_from(e, self.what) from None
        finally:
            it.cancel()

    def _read_call(self) -> Callable[[cpb.ReadContentRequest], Any]:
        call = self._channel.unary_stream(
            rpc.path(content_service.SERVICE, "Read"),
            request_serializer=_serialize,
            response_deserializer=cpb.ReadContentResponse.FromString,
        )
        return lambda req: call(req, metadata=self._metadata)

    def _write_call(self) -> Callable[[Iterator[cpb.WriteContentRequest]], Any]:
        call = self._channel.stream_stream(
            rpc.path(content_service.SERVICE, "Write"),
            request_serializer=_serialize,
            response_deserializer=cpb.WriteContentResponse.FromString,
        )
        return lambda reqs: call(reqs, metadata=self._metadata)

    # -- ocidist.v1.Distribution -----------------------------------------------

    def pull(
        self, ref: str, platforms: Sequence[str] = (), *, all_platforms: bool = False
    ) -> Iterator[Event]:
        """Have the daemon pull ``ref``; events as they come, "complete" last."""
        req = opb.PullRequest(ref=ref, platforms=list(platforms), all_platforms=all_platforms)
        for msg in self.stream(ocidist_service.SERVICE, "Pull", req, opb.ProgressEvent):
            yield _event(msg)

    def push(self, name: str, ref: str) -> Iterator[Event]:
        req = opb.PushRequest(name=name, ref=ref)
        for msg in self.stream(ocidist_service.SERVICE, "Push", req, opb.ProgressEvent):
            yield _event(msg)

    def unpack(self, name: str, directory: str, platform: str = "") -> Iterator[Event]:
        req = opb.UnpackRequest(name=name, dir=directory, platform=platform)
        for msg in self.stream(ocidist_service.SERVICE, "Unpack", req, opb.ProgressEvent):
            yield _event(msg)


def _serialize(msg: Message) -> bytes:
    return msg.SerializeToString()


def _event(msg: opb.ProgressEvent) -> Event:
    desc = convert.descriptor_value(msg.descriptor) if msg.HasField("descriptor") else None
    return Event(msg.event, desc, msg.offset, msg.status, msg.name)


class RemoteStore:
    """The content store of a daemon (containerd's Content service): a ``Store``."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def _unary(self, method: str, req: Message, resp: type[M]) -> M:
        return self.daemon.unary(content_service.SERVICE, method, req, resp)

    def reader(self, dgst: Digest) -> BinaryIO:
        size = self.info(dgst).size
        raw = RemoteReader(self.daemon._read_call(), dgst, size, self.daemon.what)
        return io.BufferedReader(raw, BUFSIZE)

    def info(self, dgst: Digest) -> Info:
        resp = self._unary("Info", cpb.InfoRequest(digest=str(dgst)), cpb.InfoResponse)
        return convert.info_value(resp.info)

    def exists(self, dgst: Digest) -> bool:
        try:
            self.info(dgst)
        except NotFound:
            return False
        return True

    def put(self, data: bytes, expected: Digest, labels: Mapping[str, str] | None = None) -> bool:
        """Through the daemon's ingest (there is no one-step write in the API)."""
        from ocidist.content.copy import ingest_bytes

        return ingest_bytes(self, f"put-{expected}", data, expected, labels=labels)

    def writer(
        self,
        key: str,
        *,
        total: int = -1,
        expected: Digest | None = None,
        wait: bool = True,
    ) -> RemoteWriter:
        """Open or resume the daemon's ingest ``key``.

        The daemon answers UNAVAILABLE for a key another stream holds (as
        containerd does; its clients retry); ``wait`` retries here too.
        """
        delay = 0.02
        while True:
            try:
                return RemoteWriter(
                    self.daemon._write_call(), key, total, expected, self.daemon.what
                )
            except Unavailable as e:
                if "locked" not in str(e):
                    raise
                if not wait:
                    raise FailedPrecondition(str(e)) from None
            time.sleep(delay)
            delay = min(delay * 2, LOCK_RETRY_MAX)

    def walk(self, filter: WalkFilter | None = None) -> Iterator[Info]:
        for resp in self.daemon.stream(
            content_service.SERVICE, "List", cpb.ListContentRequest(), cpb.ListContentResponse
        ):
            for msg in resp.info:
                info = convert.info_value(msg)
                if filter is None or filter(info):
                    yield info

    def delete(self, dgst: Digest) -> None:
        self._unary("Delete", cpb.DeleteContentRequest(digest=str(dgst)), Empty)

    def update(self, dgst: Digest, labels: Mapping[str, str], *, replace: bool = False) -> Info:
        paths = ["labels"] if replace else [f"labels.{k}" for k in labels]
        req = cpb.UpdateRequest(
            info=cpb.Info(digest=str(dgst), labels={k: v for k, v in labels.items() if v}),
            update_mask=FieldMask(paths=paths),
        )
        if not paths:
            return self.info(dgst)
        return convert.info_value(self._unary("Update", req, cpb.UpdateResponse).info)

    def status(self, key: str) -> Status:
        resp = self._unary("Status", cpb.StatusRequest(ref=key), cpb.StatusResponse)
        return convert.status_value(resp.status)

    def list_statuses(self) -> list[Status]:
        resp = self._unary("ListStatuses", cpb.ListStatusesRequest(), cpb.ListStatusesResponse)
        return [convert.status_value(s) for s in resp.statuses]

    def abort(self, key: str) -> None:
        self._unary("Abort", cpb.AbortRequest(ref=key), Empty)


class RemoteMetadata:
    """The image names of a daemon (containerd's Images service): a ``Metadata``."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def _unary(self, method: str, req: Message, resp: type[M]) -> M:
        return self.daemon.unary(images_service.SERVICE, method, req, resp)

    def put_image(
        self, name: str, desc: Descriptor, labels: Mapping[str, str] | None = None
    ) -> Image:
        msg = ipb.Image(name=name, target=convert.descriptor_message(desc), labels=labels or {})
        try:
            resp = self._unary("Create", ipb.CreateImageRequest(image=msg), ipb.CreateImageResponse)
            return convert.image_value(resp.image)
        except AlreadyExists:
            pass
        paths = ["target"] + (["labels"] if labels is not None else [])
        req = ipb.UpdateImageRequest(image=msg, update_mask=FieldMask(paths=paths))
        return convert.image_value(self._unary("Update", req, ipb.UpdateImageResponse).image)

    def get_image(self, name: str) -> Image:
        resp = self._unary("Get", ipb.GetImageRequest(name=name), ipb.GetImageResponse)
        return convert.image_value(resp.image)

    def list_images(
        self, prefix: str = "", filter: Callable[[Image], bool] | None = None
    ) -> list[Image]:
        resp = self._unary("List", ipb.ListImagesRequest(), ipb.ListImagesResponse)
        images = sorted((convert.image_value(i) for i in resp.images), key=lambda i: i.name)
        return [i for i in images if i.name.startswith(prefix) and (filter is None or filter(i))]

    def delete_image(self, name: str) -> None:
        self._unary("Delete", ipb.DeleteImageRequest(name=name), Empty)

    def update_labels(
        self, name: str, labels: Mapping[str, str], *, replace: bool = False
    ) -> Image:
        paths = ["labels"] if replace else [f"labels.{k}" for k in labels]
        req = ipb.UpdateImageRequest(
            image=ipb.Image(name=name, labels={k: v for k, v in labels.items() if v}),
            update_mask=FieldMask(paths=paths or ["labels.-"]),
        )
        return convert.image_value(self._unary("Update", req, ipb.UpdateImageResponse).image)

    def close(self) -> None:
        pass  # the Daemon owns the channel

    def leased_digests(self) -> set[Digest]:
        """Content the daemon's live leases hold, in every namespace (gc's
        lease hook): leases belong to a namespace, as in containerd."""
        svc = leases_service.SERVICE
        now = time.time()
        out: set[Digest] = set()
        listed = self.daemon.unary(
            leases_service.NAMESPACES_SERVICE,
            "List",
            npb.ListNamespacesRequest(),
            npb.ListNamespacesResponse,
        )
        for ns in listed.namespaces:
            md = ((rpc.NAMESPACE_KEY, ns.name),)
            leases = self.daemon.unary(svc, "List", lpb.ListRequest(), lpb.ListResponse, md)
            for msg in leases.leases:
                lease = Lease(msg.id, convert.seconds(msg.created_at), dict(msg.labels))
                if lease.expired(now):
                    continue
                try:
                    resources = self.daemon.unary(
                        svc,
                        "ListResources",
                        lpb.ListResourcesRequest(id=msg.id),
                        lpb.ListResourcesResponse,
                        md,
                    ).resources
                except NotFound:
                    continue  # deleted meanwhile
                out.update(_digests(r.id for r in resources if r.type == CONTENT))
        return out


def _digests(texts: Iterable[str]) -> Iterator[Digest]:
    for text in texts:
        try:
            yield Digest.parse(text)
        except DistError:
            continue
