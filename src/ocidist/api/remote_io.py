"""Reading and writing content through a daemon: the Read and Write streams
behind RemoteStore.reader and RemoteStore.writer (client.py)."""

from __future__ import annotations

import io
import queue
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import grpc

from ocidist.api import convert
from ocidist.api.gen import content_pb2 as pb
from ocidist.content import Status
from ocidist.digest import Digest
from ocidist.errors import DigestMismatch, DistError, InvalidArgument

# One message per chunk: the copy helpers write 1 MiB at a time, well inside
# the 16 MiB message limit.
ReadCall = Callable[[pb.ReadContentRequest], Any]
WriteCall = Callable[[Iterator[pb.WriteContentRequest]], Any]


class RemoteReader(io.RawIOBase):
    """A seekable raw reader of one blob over Read streams (one per seek)."""

    def __init__(self, call: ReadCall, dgst: Digest, size: int, what: str) -> None:
        super().__init__()
        self._call = call
        self._dgst = dgst
        self.size = size
        self._what = what
        self._pos = 0
        self._stream: Any = None
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self.size}[whence]
        pos = base + offset
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        if pos != self._pos:
            self._drop()
            self._pos = pos
        return self._pos

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        if self._pos >= self.size or len(view) == 0:
            return 0
        if not self._pending:
            if self._stream is None:
                req = pb.ReadContentRequest(digest=str(self._dgst), offset=self._pos)
                self._stream = self._call(req)
            try:
                msg = next(self._stream)
            except StopIteration:
                return 0
            except grpc.RpcError as e:
                self._drop()
                raise convert.error_from(e, self._what) from None
            self._pending = memoryview(msg.data)
        n = min(len(view), len(self._pending))
        view[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self._pos += n
        return n

    def _drop(self) -> None:
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None
        self._pending = memoryview(b"")

    def close(self) -> None:
        self._drop()
        super().close()


class RemoteWriter:
    """A Writer over one Write stream: each call is one message and its answer,
    as containerd's own remote writer does. ``close`` without a commit ends
    the stream; the daemon keeps the bytes under the key for a resume."""

    def __init__(
        self, call: WriteCall, key: str, total: int, expected: Digest | None, what: str
    ) -> None:
        self._key = key
        self._total = total
        self._expected = expected
        self._what = what
        self._requests: queue.Queue[pb.WriteContentRequest | None] = queue.Queue()
        self._closed = False
        self._committed: Digest | None = None
        self._stream = call(iter(self._requests.get, None))
        first = pb.WriteContentRequest(
            action=pb.STAT,
            ref=key,
            total=max(total, 0),
            expected=str(expected) if expected else "",
        )
        self._offset = self._send(first).offset

    def _send(self, req: pb.WriteContentRequest) -> pb.WriteContentResponse:
        if self._closed:
            raise DistError(f"ingest {self._key}: writer is closed")
        self._requests.put(req)
        try:
            resp: pb.WriteContentResponse = next(self._stream)
            return resp
        except StopIteration:
            self._abandon()
            raise DistError(f"ingest {self._key}: {self._what} ended the write") from None
        except grpc.RpcError as e:
            self._abandon()
            raise convert.error_from(e, self._what) from None

    def _abandon(self) -> None:
        self._closed = True
        self._requests.put(None)

    def _stat(self) -> pb.WriteContentResponse:
        return self._send(pb.WriteContentRequest(action=pb.STAT))

    def write(self, data: bytes | memoryview) -> int:
        chunk = bytes(data)
        resp = self._send(pb.WriteContentRequest(action=pb.WRITE, offset=self._offset, data=chunk))
        n = resp.offset - self._offset
        self._offset = resp.offset
        if n != len(chunk):
            raise DistError(f"ingest {self._key}: short write ({n} of {len(chunk)} bytes)")
        return n

    def status(self) -> Status:
        resp = self._stat()
        return Status(
            key=self._key,
            offset=resp.offset,
            total=resp.total if resp.total > 0 else self._total,
            expected=self._expected,
            started_at=convert.seconds(resp.started_at),
            updated_at=convert.seconds(resp.updated_at),
        )

    def digest(self) -> Digest:
        if self._committed is not None:
            return self._committed  # the stream is over; LocalWriter answers too
        return Digest.parse(self._stat().digest)

    def truncate(self, size: int) -> None:
        if size != 0:
            raise InvalidArgument(f"ingest {self._key}: can only truncate to 0 bytes")
        # A write at offset 0 restarts the ingest (containerd's rule).
        self._offset = self._send(pb.WriteContentRequest(action=pb.WRITE, offset=0)).offset

    def commit(self, size: int, expected: Digest, labels: Mapping[str, str] | None = None) -> None:
        resp = self._send(
            pb.WriteContentRequest(
                action=pb.COMMIT,
                offset=self._offset,
                total=max(size, 0),
                expected=str(expected),
                labels=dict(labels or {}),
            )
        )
        if resp.digest != str(expected):
            raise DigestMismatch(f"commit {self._key}: daemon committed {resp.digest}")
        self._committed = expected
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._requests.put(None)
        # Wait for the daemon to finish the call: it has let go of the
        # ingest by then, so a new writer for this key can start at once.
        try:
            for _ in self._stream:
                pass
        except grpc.RpcError:
            pass
