"""The bytes of a chunked upload, streamed into its PATCH requests.

A PATCH that carries a held chunk and waits for its answer before the next
costs a round trip per chunk: 4 MiB chunks over a link of 80 ms and 20 MB/s
spend a third of the time waiting (a 1 GB push: 84 s where the link allows
50). Here the writer hands its bytes to a thread that sends them as the body
of one PATCH (``Content-Range: start-end`` with its ``Content-Length``, as
the distribution spec's chunked upload has it) covering the whole rest of
the blob, or ``chunk`` bytes of it when a chunk size is given; the copy
reads on while the bytes go out. Memory stays flat: at most ``PIPE_ITEMS``
writes wait between the two.

Nothing is held until the registry confirms it, so a PATCH that breaks is
not re-sent from memory: the writer asks the registry how far it got (``GET
<location>`` → ``Range: 0-N``) and the copy feeds it again from byte N (the
source is read again there; ``UploadRestarted`` with the new offset).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

from ocidist.errors import FailedPrecondition

PIPE_ITEMS = 8  # writes of up to 1 MiB each (content/copy.py BUFSIZE)


class Aborted(OSError):
    """The body's feeder stopped (the writer was closed, or the copy failed):
    an OSError, so the transport closes the connection the body was on."""


class Pipe:
    """Writes in, body pieces out, bounded; ``abort`` wakes both sides."""

    def __init__(self) -> None:
        self._q: queue.Queue[bytes] = queue.Queue(maxsize=PIPE_ITEMS)
        self._aborted = threading.Event()
        self._rest = memoryview(b"")

    def put(self, data: bytes, failed: Callable[[], bool]) -> bool:
        """Queue ``data``; False when the sending side ``failed()`` or the
        pipe was aborted before it could be taken."""
        while not self._aborted.is_set():
            try:
                self._q.put(data, timeout=0.1)
                return True
            except queue.Full:
                if failed():
                    return False
        return False

    def abort(self) -> None:
        self._aborted.set()

    def body(self, n: int) -> OneShot:
        """The next ``n`` bytes as a request body."""
        return OneShot(self._take(n))

    def _take(self, n: int) -> Iterator[memoryview]:
        left = n
        while left > 0:
            if not self._rest:
                item = self._get()
                self._rest = memoryview(item)
            piece = self._rest[:left]
            self._rest = self._rest[len(piece) :]
            left -= len(piece)
            yield piece

    def _get(self) -> bytes:
        while True:
            if self._aborted.is_set():
                raise Aborted("upload stream stopped")
            try:
                return self._q.get(timeout=0.1)
            except queue.Empty:
                continue


class OneShot:
    """A request body that can be sent once: a second pass (a request sent
    again, e.g. after a 401) fails instead of sending the rest of a
    consumed stream under the first one's headers."""

    def __init__(self, pieces: Iterator[memoryview]) -> None:
        self._pieces: Iterator[memoryview] | None = pieces

    def __iter__(self) -> Iterator[memoryview]:
        pieces, self._pieces = self._pieces, None
        if pieces is None:
            raise Aborted("a streamed upload body cannot be sent again")
        return pieces


# One streamed PATCH: ``(location, start, end, body)`` -> (the offset the
# registry confirmed, the Location it answered).
Patch = Callable[[str, int, int, "OneShot"], tuple[int, str]]


class Sender:
    """The thread that sends ``[start, total)`` in PATCHes of ``chunk``
    bytes (0: one PATCH for all of it) to the session at ``location``.

    What the registry answered (``confirmed``, ``location``) is kept here,
    not in the writer: the writer reads it once the thread is done
    (``wait``), so a stream it abandoned can never change its state later.
    """

    def __init__(
        self,
        location: str,
        start: int,
        total: int,
        chunk: int,
        patch: Patch,
    ) -> None:
        self.fed = start  # bytes handed to the pipe
        self.confirmed = start  # bytes the registry confirmed
        self.location = location  # the session's URL after the last answer
        self.total = total
        self.chunk = chunk
        self.error: BaseException | None = None
        self._patch = patch
        self._pipe = Pipe()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="upload-stream", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            pos = self.confirmed
            while pos < self.total:
                end = self.total if self.chunk <= 0 else min(self.total, pos + self.chunk)
                reached, location = self._patch(self.location, pos, end, self._pipe.body(end - pos))
                with self._lock:
                    self.confirmed, self.location = reached, location
                pos = end
        except BaseException as e:  # the writer's to handle (it asks the registry)
            self.error = e
            self._pipe.abort()
        finally:
            self._done.set()

    def failed(self) -> bool:
        return self._done.is_set() and self.error is not None

    def feed(self, data: bytes) -> bool:
        """Hand ``data`` on; False when the sending side failed (see ``error``)."""
        if self.fed + len(data) > self.total:
            raise FailedPrecondition(
                f"write past the declared size ({self.fed + len(data)} > {self.total})"
            )
        if not self._pipe.put(data, self.failed):
            return False
        self.fed += len(data)
        return True

    def wait(self) -> BaseException | None:
        """Wait until every byte was sent and answered, or the sending
        failed; the error, if any."""
        self._done.wait()
        return self.error

    def stop(self) -> None:
        """Abandon the stream (the writer is closed): the PATCH in flight
        fails at its next piece and the thread ends."""
        self._pipe.abort()
