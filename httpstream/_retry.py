"""The opt-in retry policy: which failures to retry, how often, and how long to wait.

Stdlib only (layer 0).  This is separate from the always-on transparent retry in
the pool (a request whose reused connection turned out dead before any response
byte is sent again once): that one fixes a race the caller cannot see, this one
is a policy the caller chooses: retry a 503, back off, honour ``Retry-After``.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass, field

__all__ = ["Retry", "parse_retry_after"]

_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Retry:
    """How a client retries a request that failed or got a retryable status.

    total: retries after the first attempt (``Retry(total=0)`` never retries).
    methods: the methods that may be sent again; the default is the idempotent
      ones (RFC 9110 section 9.2.2), so a POST is never repeated unless asked.
    statuses: response statuses that are retried (the response is released,
      its small remainder drained, before the next attempt).
    transport_errors: whether connect failures, timeouts and dropped connections
      are retried too (``TransportError`` but not ``LocalProtocolError``).
    backoff_factor / backoff_max / jitter: the wait before attempt ``n`` (1-based)
      is ``backoff_factor * 2 ** (n - 1)``, capped at ``backoff_max``, then
      multiplied by a random factor in [1 - jitter, 1] so many clients that
      failed together do not come back together.
    respect_retry_after / max_retry_after: a ``Retry-After`` header (seconds or
      an HTTP date) on a retried status replaces the backoff; a server asking
      for more than ``max_retry_after`` seconds gets its response returned as
      is instead of a client that sleeps for an hour.
    """

    total: int = 3
    methods: frozenset[str] = field(default=_IDEMPOTENT)
    statuses: frozenset[int] = frozenset({429, 502, 503, 504})
    transport_errors: bool = True
    backoff_factor: float = 0.5
    backoff_max: float = 30.0
    jitter: float = 0.5
    respect_retry_after: bool = True
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.total < 0:
            raise ValueError("Retry.total must be >= 0")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("Retry.jitter must be between 0 and 1")
        object.__setattr__(self, "methods", frozenset(m.upper() for m in self.methods))
        object.__setattr__(self, "statuses", frozenset(self.statuses))

    def allows(self, method: str) -> bool:
        return method.upper() in self.methods

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1 for the first retry)."""
        delay = min(self.backoff_max, self.backoff_factor * 2.0 ** (attempt - 1))
        if self.jitter:
            delay *= 1.0 - self.jitter * random.random()
        return max(0.0, delay)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (RFC 9110 section 10.2.3), or None.

    Accepts delay-seconds and an HTTP-date; a date in the past means 0; a value
    that is neither is ignored (None), like a missing header.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)
