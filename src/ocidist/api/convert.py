"""Between our values and the wire: messages, timestamps and error codes.

One table maps each DistError class to a gRPC status code and back, so an
error crosses the socket as the same kind it started as (a NotFound on the
server is a NotFound in the client, and ``ctr`` sees NOT_FOUND).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from ocidist.api.gen import content_pb2, descriptor_pb2, images_pb2
from ocidist.content import Info, Status
from ocidist.descriptor import Descriptor
from ocidist.digest import Digest
from ocidist.errors import (
    AlreadyExists,
    ArchiveError,
    DigestMismatch,
    DistError,
    FailedPrecondition,
    InvalidArgument,
    InvalidContent,
    InvalidReference,
    NoSpace,
    NotFound,
    OutOfRange,
    PermissionDenied,
    TimedOut,
    Unavailable,
    Unimplemented,
)
from ocidist.metadata import Image

# Most specific first: the first isinstance match wins. The codes are the
# ones containerd's errdefs maps (its clients see any other as "unknown"):
# a commit of the wrong bytes is FAILED_PRECONDITION there, not DATA_LOSS.
_CODES: tuple[tuple[type[DistError], grpc.StatusCode], ...] = (
    (Unimplemented, grpc.StatusCode.UNIMPLEMENTED),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (OutOfRange, grpc.StatusCode.OUT_OF_RANGE),
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (DigestMismatch, grpc.StatusCode.FAILED_PRECONDITION),
    (InvalidContent, grpc.StatusCode.INVALID_ARGUMENT),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (NoSpace, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (TimedOut, grpc.StatusCode.DEADLINE_EXCEEDED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
)

_ERRORS: dict[grpc.StatusCode, type[DistError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRange,
    grpc.StatusCode.DATA_LOSS: DigestMismatch,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: NoSpace,
    grpc.StatusCode.DEADLINE_EXCEEDED: TimedOut,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
}

# The status code is containerd's coarse class; this trailer names our own
# error class, so our client raises exactly what the daemon raised (a
# DigestMismatch stays one, though the code says FAILED_PRECONDITION).
ERROR_KIND_KEY = "ocidist-error-kind"
_KINDS: dict[str, type[DistError]] = {
    cls.__name__: cls
    for cls in (
        AlreadyExists,
        ArchiveError,
        DigestMismatch,
        FailedPrecondition,
        InvalidArgument,
        InvalidContent,
        InvalidReference,
        NoSpace,
        NotFound,
        OutOfRange,
        PermissionDenied,
        TimedOut,
        Unavailable,
        Unimplemented,
    )
}


def code_for(e: BaseException) -> grpc.StatusCode:
    for cls, code in _CODES:
        if isinstance(e, cls):
            return code
    return grpc.StatusCode.UNKNOWN if isinstance(e, DistError) else grpc.StatusCode.INTERNAL


def error_trailer(e: DistError) -> tuple[tuple[str, str], ...]:
    """Trailing metadata naming ``e``'s class, when our client knows it."""
    name = type(e).__name__
    return ((ERROR_KIND_KEY, name),) if name in _KINDS else ()


def error_from(e: grpc.RpcError, what: str) -> DistError:
    """The DistError a failed call stands for; ``what`` names the daemon."""
    code = e.code() if isinstance(e, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (e.details() if isinstance(e, grpc.Call) else None) or str(code)
    if code == grpc.StatusCode.UNAVAILABLE and "connect" in details.lower():
        # grpc's words for a socket nobody listens on are long; ours are the
        # ones people grep for.
        return Unavailable(f"{what}: connection refused (is `dist serve` running?)")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return DistError(f"{what}: not supported by the daemon: {details}")
    kind = _kind(e)
    if kind is not None:
        return kind(details)
    return _ERRORS.get(code, DistError)(details)


def _kind(e: grpc.RpcError) -> type[DistError] | None:
    trailer: Any = e.trailing_metadata() if isinstance(e, grpc.Call) else None
    for key, value in trailer or ():
        if key == ERROR_KIND_KEY:
            return _KINDS.get(value if isinstance(value, str) else value.decode())
    return None


# -- values ----------------------------------------------------------------------


def timestamp(t: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(t * 1e9))
    return ts


def seconds(ts: Timestamp) -> float:
    return float(ts.ToNanoseconds()) / 1e9


def digest(text: str, what: str = "digest") -> Digest:
    if not text:
        raise InvalidArgument(f"{what} must not be empty")
    return Digest.parse(text)


def info_message(info: Info) -> content_pb2.Info:
    return content_pb2.Info(
        digest=str(info.digest),
        size=info.size,
        created_at=timestamp(info.created_at),
        updated_at=timestamp(info.updated_at),
        labels=dict(info.labels),
    )


def info_value(msg: content_pb2.Info) -> Info:
    return Info(
        digest=digest(msg.digest),
        size=msg.size,
        created_at=seconds(msg.created_at),
        updated_at=seconds(msg.updated_at),
        labels=dict(msg.labels),
    )


def status_message(status: Status) -> content_pb2.Status:
    return content_pb2.Status(
        started_at=timestamp(status.started_at),
        updated_at=timestamp(status.updated_at),
        ref=status.key,
        offset=status.offset,
        # containerd says "unknown" with 0, we with -1.
        total=max(status.total, 0),
        expected=str(status.expected) if status.expected else "",
    )


def status_value(msg: content_pb2.Status) -> Status:
    return Status(
        key=msg.ref,
        offset=msg.offset,
        total=msg.total if msg.total > 0 else -1,
        expected=Digest.parse(msg.expected) if msg.expected else None,
        started_at=seconds(msg.started_at),
        updated_at=seconds(msg.updated_at),
    )


def descriptor_message(desc: Descriptor) -> descriptor_pb2.Descriptor:
    # containerd's Descriptor has no platform or urls: they do not cross.
    return descriptor_pb2.Descriptor(
        media_type=desc.media_type,
        digest=str(desc.digest),
        size=desc.size,
        annotations=dict(desc.annotations),
    )


def descriptor_value(msg: descriptor_pb2.Descriptor) -> Descriptor:
    if not msg.media_type:
        raise InvalidArgument("descriptor: media type must not be empty")
    if msg.size < 0:
        raise InvalidArgument(f"descriptor: invalid size {msg.size}")
    return Descriptor(
        msg.media_type,
        digest(msg.digest, "descriptor digest"),
        msg.size,
        annotations=dict(msg.annotations),
    )


def image_message(image: Image) -> images_pb2.Image:
    return images_pb2.Image(
        name=image.name,
        labels=dict(image.labels),
        target=descriptor_message(image.target),
        created_at=timestamp(image.created_at),
        updated_at=timestamp(image.updated_at),
    )


def image_value(msg: images_pb2.Image) -> Image:
    return Image(
        name=msg.name,
        target=descriptor_value(msg.target),
        created_at=seconds(msg.created_at),
        updated_at=seconds(msg.updated_at),
        labels=dict(msg.labels),
    )


def labels_by_mask(
    current: Mapping[str, str], given: Mapping[str, str], paths: list[str]
) -> dict[str, str] | None:
    """Apply a FieldMask's ``labels``/``labels.<key>`` paths; None when the mask
    names no label (the labels stay as they are).

    An empty mask means every mutable field, i.e. the labels are replaced.
    """
    if not paths or "labels" in paths:
        return dict(given)
    keys = [p[len("labels.") :] for p in paths if p.startswith("labels.")]
    if not keys:
        return None
    out = dict(current)
    for key in keys:
        value = given.get(key, "")
        if value:
            out[key] = value
        else:
            out.pop(key, None)
    return out
