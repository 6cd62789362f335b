"""The one retry mechanism: an immutable policy, and one object's attempts.

Every request path of the registry client (session, resolver, fetcher, the
upload's chunk and finish loops; compositions such as push as well) retries
the same way::

    tries = policy.begin(what, deadline)   # one per object, not per request
    while True:
        try:
            return attempt()
        except Unavailable as e:           # or a retryable RegistryError
            tries.failed(e)                # waits, or raises once spent

- ``RetryPolicy`` (a NamedTuple: immutable, cheap) says how many attempts,
  how long to wait between them, and how much progress counts as progress.
- ``Attempts.failed(error, retry_after=, gained=)`` records that the current
  attempt failed: it raises ``error`` reworded "…; gave up after N attempts"
  when the budget is spent (or the error says it is worth fewer attempts:
  ``Unavailable.attempts``), raises ``TimedOut`` when the wait would pass the
  deadline, and otherwise sleeps (``Retry-After`` honoured, capped) and
  returns.
- Attempts count per object and require real progress: an attempt that
  failed after gaining at least ``min_progress`` bytes (a resumed body)
  starts a new count; one that gained less is a failed attempt like any
  other. A server that sends one byte and closes gets ``attempts`` tries,
  not one per byte (issue 15: 311 GETs for 310 bytes).
- Only idempotent requests are replayed (GET/HEAD, or a PUT of bytes we
  hold); a consumed upload body is never replayed: the caller resumes from
  the registry's offset or restarts the upload.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ocidist import logs
from ocidist.errors import DistError, TimedOut, Unavailable, reworded
from ocidist.value import Value

if TYPE_CHECKING:
    from ocidist.remotes.docker.transport import Deadline

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_LOGGER = "ocidist.remotes"


class RetryPolicy(Value):
    # A Value (value.py): a dataclass costs ~1 ms of start-up to create, a
    # NamedTuple ~90 us.
    __slots__ = ("attempts", "backoff", "max_backoff", "max_retry_after", "jitter", "min_progress")
    attempts: int
    backoff: float
    max_backoff: float
    max_retry_after: float
    jitter: float
    min_progress: int

    def __init__(
        self,
        attempts: int = 5,  # attempts without progress, including the first
        backoff: float = 0.2,  # first wait, doubled each attempt
        max_backoff: float = 10.0,
        # A longer Retry-After is waited out only this long (then the next
        # attempt, and the command --timeout still bounds the whole).
        max_retry_after: float = 60.0,
        jitter: float = 0.25,  # +/- fraction, so a fleet does not retry in lockstep
        # An attempt that gained at least this many bytes before it broke made
        # progress: the count starts again. One chunk of a copy (1 MiB) means a
        # trickle of less cannot keep a transfer going one request at a time.
        min_progress: int = 1 << 20,
    ) -> None:
        object.__setattr__(self, "attempts", attempts)
        object.__setattr__(self, "backoff", backoff)
        object.__setattr__(self, "max_backoff", max_backoff)
        object.__setattr__(self, "max_retry_after", max_retry_after)
        object.__setattr__(self, "jitter", jitter)
        object.__setattr__(self, "min_progress", min_progress)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        base = min(self.backoff * (2 ** (attempt - 1)), self.max_backoff)
        import random  # only when a request failed: ~1 ms of start-up otherwise

        return float(max(0.0, base * (1 + random.uniform(-self.jitter, self.jitter))))

    def begin(self, what: str, deadline: Deadline | None = None) -> Attempts:
        """The attempts at one object (``what`` names it in errors)."""
        return Attempts(self, what, deadline)


class Attempts:
    """One object's attempts under a policy (see the module docstring)."""

    __slots__ = ("policy", "what", "deadline", "failures", "total")

    def __init__(self, policy: RetryPolicy, what: str, deadline: Deadline | None = None) -> None:
        self.policy = policy
        self.what = what
        self.deadline = deadline
        self.failures = 0  # failed attempts since the last one with progress
        self.total = 0  # failed attempts in all

    @property
    def spent(self) -> bool:
        return self.failures >= self.policy.attempts

    def failed(
        self, error: DistError, *, retry_after: float | None = None, gained: int = 0
    ) -> None:
        """The current attempt failed with ``error`` after gaining ``gained``
        bytes: wait for the next one, or raise when there is none."""
        if gained >= self.policy.min_progress:
            self.failures = 0
        self.failures += 1
        self.total += 1
        limit = self.policy.attempts
        if isinstance(error, Unavailable) and error.attempts is not None:
            limit = min(limit, error.attempts)
        if self.failures >= limit:
            if self.total > 1:
                raise reworded(error, f"{error}; gave up after {self.total} attempts") from error
            raise error
        delay = self.policy.delay(self.failures, retry_after)
        left = self.deadline.remaining() if self.deadline is not None else None
        why = str(error).removeprefix(f"{self.what}: ")
        if left is not None and delay >= left:
            if isinstance(error, TimedOut):
                raise error  # the deadline itself: "timed out after 1 attempts (timed out …)"
            tries = f"{self.total} attempt{'s' if self.total > 1 else ''}"
            raise TimedOut(f"{self.what}: timed out after {tries} ({why})")
        logs.debug(
            _LOGGER,
            "%s: attempt %d failed (%s); retrying in %.2fs",
            self.what,
            self.total,
            why,
            delay,
        )
        time.sleep(delay)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` is either delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    # ASCII digits only ("²" passes str.isdigit and fails float), and a
    # 5000-digit number is just "very long": capped by the policy anyway.
    if value.isascii() and value.isdigit():
        return float(value[:12])
    # Imported here: email.utils is ~8 ms of start-up and dates are rare.
    import email.utils

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
