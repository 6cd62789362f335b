"""Retry policy: which failures are worth another attempt, and how long to wait.

Only idempotent requests are replayed (GET/HEAD, or a PUT of a manifest whose
bytes we hold); an upload body that was consumed is never replayed — the
caller restarts the upload instead.
"""

from __future__ import annotations

import time
from typing import NamedTuple

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class RetryPolicy(NamedTuple):
    # A NamedTuple: a dataclass costs ~1 ms of start-up to create.

    attempts: int = 5  # total attempts, including the first
    backoff: float = 0.2  # first wait, doubled each attempt
    max_backoff: float = 10.0
    # A longer Retry-After is waited out only this long (then the next
    # attempt, and the command --timeout still bounds the whole).
    max_retry_after: float = 60.0
    jitter: float = 0.25  # +/- fraction, so a fleet does not retry in lockstep

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        base = min(self.backoff * (2 ** (attempt - 1)), self.max_backoff)
        import random  # only when a request failed: ~1 ms of start-up otherwise

        return float(max(0.0, base * (1 + random.uniform(-self.jitter, self.jitter))))


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
