"""Whether a registry takes a whole blob in one ``POST`` (upload.py)."""

from __future__ import annotations

import threading

KiB = 1 << 10

# The first single POST to a registry carries a blob no larger than this: a
# registry that ignores the body (Distribution 2.8 does) may leave it unread,
# and Go's server only drains up to 256 KiB of an unread body before it drops
# the connection.
PROBE_MAX = 64 * KiB


class SinglePost:
    """Whether one registry repository takes a whole blob in one ``POST``.

    The OCI distribution spec lets a registry accept ``POST
    /v2/<name>/blobs/uploads/?digest=<d>`` with the blob as its body (201), or
    answer as to a plain POST (202 and a session). CNCF Distribution 2.8.2
    does the latter and ignores the body (checked 2026-11), so the answer is
    learnt once per pusher: one small blob tries it (the probe) while
    concurrent uploads take the two-request path, and the verdict holds for
    every later blob.
    """

    UNKNOWN, PROBING, YES, NO = range(4)

    def __init__(self, enabled: bool = True) -> None:
        self._lock = threading.Lock()
        self._state = self.UNKNOWN if enabled else self.NO

    def claim(self, size: int) -> bool:
        """Whether a blob of ``size`` bytes should go in one POST now."""
        with self._lock:
            if self._state == self.YES:
                return True
            if self._state == self.UNKNOWN and size <= PROBE_MAX:
                self._state = self.PROBING
                return True
            return False

    def settle(self, supported: bool | None) -> None:
        """Record a claimed attempt's verdict (None: no verdict, e.g. a dropped connection)."""
        with self._lock:
            if self._state in (self.PROBING, self.YES):
                if supported is None:
                    self._state = self.UNKNOWN if self._state == self.PROBING else self.YES
                else:
                    self._state = self.YES if supported else self.NO

    @property
    def supported(self) -> bool | None:
        with self._lock:
            return {self.YES: True, self.NO: False}.get(self._state)
