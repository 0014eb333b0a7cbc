"""How long to wait: between retries of a failed request, and between polls of a pending export.

Both are pure functions of the attempt number (plus randomness), so the sync and async code paths
wait exactly alike and tests can check the schedule without sleeping.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter, honouring ``Retry-After`` when given.

    ``max_attempts`` counts every try of one request; ``max_total_wait`` bounds the sum of waits,
    so a long ``Retry-After`` cannot stall a task for hours.
    """

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_total_wait: float = 300.0

    def delay(self, attempt: int, server_asked: float | None = None) -> float:
        """Seconds to wait after the ``attempt``-th (1-based) failed try."""
        if server_asked is not None:
            return min(server_asked, self.max_total_wait)
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)


@dataclass(frozen=True)
class PollSchedule:
    """Exponential backoff between polls: first after ``first`` seconds, doubling up to ``cap``.

    Each wait is shortened by up to ``jitter`` (10%), so exports started together do not poll in
    lockstep, and a ready export is noticed within ``cap`` seconds.
    """

    first: float = 1.0
    cap: float = 15.0
    factor: float = 2.0
    jitter: float = 0.1

    def delays(self) -> Iterator[float]:
        delay = self.first
        while True:
            yield min(self.cap, delay) * random.uniform(1 - self.jitter, 1)
            delay *= self.factor
