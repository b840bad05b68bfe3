"""Rate limiters from a configured rate: one place that turns "N per second" into aiolimiter.

``AsyncLimiter(rate, 1)`` holds ``rate`` units, so below 1 per second it can never hold the 1
unit a request or a send costs (``acquire`` raises, ``has_capacity`` is always false). Here
the bucket holds at least one unit: ``rate`` per second is ``max(1, rate)`` units per
``max(1, rate) / rate`` seconds, e.g. 0.5/s is 1 unit every 2 s and 20/s is 20 units per
second (a burst of 20, then 20 per second).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Mapping

from aiolimiter import AsyncLimiter

Clock = Callable[[], float]

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
    """A token bucket for one replica's share of a cluster-wide rate.

    ``rate_per_second`` is what all replicas together may spend; :meth:`set_share` says
    which fraction of it this replica takes (for a notificator: the share of its lanes'
    partitions assigned to it, recomputed on every rebalance), so that the replicas' rates
    add up to the configured one however many run. Rate 0 is no limit at all.

    Why not an :class:`~aiolimiter.AsyncLimiter` swapped on every change: a sender already
    waiting on the old one would keep its old rate (a replica whose share had been 0 waited
    up to 1,000 s after getting partitions again), and every swap granted a fresh burst.
    Here a change keeps the tokens saved so far (capped at the new burst), and wakes the
    waiters, which then wait at the new rate.

    A share of 0 (a replica that lost every partition) falls back to ``idle``: what it may
    spend on sends already in flight, whose partitions another replica now owns. The
    notificator sets it to one partition's share, so those sends drain, rather than stall
    until the group's next rebalance, and the cluster exceeds its rate by at most that much
    while they do. With ``idle`` 0 a replica without a share waits until it gets one.

    The burst is :func:`burst` of the replica's current rate: the replicas together may
    burst to the configured rate, plus up to one unit each when their shares are below 1
    per second."""

    def __init__(
        self, rate_per_second: float, share: float = 1.0, *, clock: Clock = time.monotonic
    ) -> None:
        problem = rate_problem(rate_per_second)
        if problem is not None:
            raise ValueError(f"rate {rate_per_second!r} {problem}")
        self.rate = rate_per_second
        self.share = _fraction(share)
        self.idle = 0.0
        #: What this replica may spend per second now (0 with rate 0: no limit), and the
        #: most units granted at once at that rate; both change only in :meth:`set_share`.
        self.current_rate = 0.0
        self.burst = 0.0
        self._derive()
        self._clock = clock
        self._stamp = clock()
        self._tokens = self.burst  # full at first, as an AsyncLimiter is
        self._lock = asyncio.Lock()  # waiters queue in order; none overtakes another
        self._changed: asyncio.Event | None = None

    def _derive(self) -> None:
        self.current_rate = self.rate * (self.share if self.share > 0 else self.idle)
        self.burst = burst(self.current_rate)

    def set_share(self, share: float, *, idle: float | None = None) -> None:
        """Take ``share`` of the rate from now on (``idle``, if given: the fallback for a
        share of 0); waiters re-check at once."""
        self._refill()  # the time so far was earned at the old rate
        self.share = _fraction(share)
        if idle is not None:
            self.idle = _fraction(idle)
        self._derive()
        self._tokens = min(self._tokens, self.burst)
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    def take(self, amount: float = 1.0) -> bool:
        """Spend ``amount`` (at most a burst) now if the bucket holds it; never waits."""
        if self.rate == 0:
            return True
        self._refill()
        amount = min(amount, self.burst)
        if self._tokens + _EPSILON < amount:
            return False
        self._tokens = max(0.0, self._tokens - amount)
        return True

    async def acquire(self, amount: float = 1.0) -> None:
        """Spend ``amount`` (at most a burst), waiting for it behind earlier waiters."""
        if self.rate == 0 or (not self._lock.locked() and self.take(amount)):
            return
        async with self._lock:
            while not self.take(amount):
                await self._wait(self._missing(amount))

    def _refill(self) -> None:
        now = self._clock()
        earned = max(0.0, now - self._stamp) * self.current_rate
        self._tokens = min(self.burst, self._tokens + earned)
        self._stamp = now

    def _missing(self, amount: float) -> float | None:
        """Seconds until ``amount`` is there at the current rate (None: not at this rate)."""
        rate = self.current_rate
        if rate <= 0:
            return None
        return max(0.0, min(amount, self.burst) - self._tokens) / rate

    async def _wait(self, seconds: float | None) -> None:
        """Wait ``seconds`` (None: for ever), or until the share changes."""
        if self._changed is None:
            self._changed = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), seconds)


def partition_share(owned: Mapping[str, int], partitions: Mapping[str, int]) -> tuple[float, float]:
    """A notificator's share of its channel's send rate, and its ``idle`` share (one
    partition's: see :class:`SharedLimiter`), from the partitions it owns of each lane's
    topic and how many each has.

    The share is the owned partitions of all lanes over all their partitions. As each
    partition of each lane is owned by one member of that lane's group, the members' shares
    add up to 1 whatever the partition counts; a lane weighs as much as it has partitions
    (README, "Send rate across replicas", says what that costs when traffic does not follow
    the partitions)."""
    total = sum(max(0, n) for n in partitions.values())
    if total <= 0:
        return 0.0, 0.0
    mine = sum(min(max(0, owned.get(lane, 0)), max(0, n)) for lane, n in partitions.items())
    return mine / total, 1 / total


#: Slack for float rounding when a waiter wakes exactly when its tokens are due.
_EPSILON = 1e-9


def _fraction(value: float) -> float:
    return min(1.0, max(0.0, value)) if math.isfinite(value) else 0.0
