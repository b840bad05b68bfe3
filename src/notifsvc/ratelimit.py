"""Rate limiters from a configured rate: one place that turns "N per second" into aiolimiter.

``AsyncLimiter(rate, 1)`` holds ``rate`` units, so below 1 per second it can never hold the 1
unit a request or a send costs (``acquire`` raises, ``has_capacity`` is always false). Here
the bucket holds at least one unit: ``rate`` per second is ``max(1, rate)`` units per
``max(1, rate) / rate`` seconds, e.g. 0.5/s is 1 unit every 2 s and 20/s is 20 units per
second (a burst of 20, then 20 per second).
"""

from __future__ import annotations

import math

from aiolimiter import AsyncLimiter

#: Slowest rate a limiter may have (one unit per 1,000 s); below it a rate is surely a typo.
MIN_RATE = 0.001


def rate_problem(rate_per_second: float) -> str | None:
    """Why ``rate_per_second`` cannot configure a limiter, or None (0 means off)."""
    if not math.isfinite(rate_per_second) or rate_per_second < 0:
        return "must be a finite number >= 0 (0 turns the limit off)"
    if 0 < rate_per_second < MIN_RATE:
        return f"must be 0 (off) or at least {MIN_RATE} per second"
    return None


def burst(rate_per_second: float) -> float:
    """Most units the limiter of ``rate_per_second`` grants at once (at least 1)."""
    return max(1.0, rate_per_second)


def make_limiter(rate_per_second: float) -> AsyncLimiter | None:
    """A limiter granting ``rate_per_second`` units per second on average, with a bucket of
    :func:`burst` units; None for 0 (no limit). Raises ValueError for an unusable rate."""
    problem = rate_problem(rate_per_second)
    if problem is not None:
        raise ValueError(f"rate {rate_per_second!r} {problem}")
    if rate_per_second == 0:
        return None
    size = burst(rate_per_second)
    return AsyncLimiter(size, size / rate_per_second)


class SharedLimiter:
    """A limiter for one replica's share of a cluster-wide rate.

    ``rate_per_second`` is what all replicas together may spend; :meth:`set_share` says
    which fraction of it this replica takes (for a notificator: the share of its lanes'
    partitions assigned to it, recomputed on every rebalance), so that the replicas' rates
    add up to the configured one however many run. A share of 0 leaves :data:`MIN_RATE`
    (a replica without partitions has nothing to send but what was in flight). Rate 0 is
    no limit at all. A new share takes effect for the next :meth:`acquire`."""

    def __init__(self, rate_per_second: float, share: float = 1.0) -> None:
        make_limiter(rate_per_second)  # refuses an unusable rate now
        self.rate = rate_per_second
        self.share = -1.0
        self._limiter: AsyncLimiter | None = None
        self.set_share(share)

    @property
    def current_rate(self) -> float:
        """What this replica may spend per second now (0: no limit)."""
        return 0.0 if self.rate == 0 else max(MIN_RATE, self.rate * self.share)

    def set_share(self, share: float) -> None:
        share = min(1.0, max(0.0, share))
        if share == self.share:
            return
        self.share = share
        self._limiter = make_limiter(self.current_rate)

    async def acquire(self, amount: float = 1.0) -> None:
        if self._limiter is not None:
            await self._limiter.acquire(min(amount, self._limiter.max_rate))
