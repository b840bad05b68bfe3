"""What the router's duties over the table's slices share (the reconciler, retention).

A row's slice is md5(uuid) modulo the partition count of ``outstanding-notifications``;
each router replica works on the slices numbered like the partitions it owns, so the work
scales with the router and each slice has one owner. A replica reads its ownership at the
start of a pass, so after a rebalance two replicas may work on one slice until the older
pass ends; each duty's statement settles that (a row is claimed or deleted once). A duty
works in passes of keyset pages, paced by a rate of rows per second per replica, and a pass
never raises: a failure ends it, logged.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
import uuid as uuid_mod
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol, TypedDict, Unpack

from notifsvc import batching, errors, kafka, topics
from notifsvc.config import Settings
from notifsvc.db.store import Store
from notifsvc.ratelimit import burst, make_limiter

#: The beginning of the (received_at, uuid) order, where a pass starts.
START = (datetime(1970, 1, 1, tzinfo=UTC), uuid_mod.UUID(int=0))

Clock = Callable[[], float]
#: Whether this replica owns slice (partition) n now.
Owns = Callable[[int], bool]
#: How many slices there are (partitions of the router's topic); may raise Unavailable.
Slices = Callable[[], Awaitable[int]]


class Limiter(Protocol):
    async def acquire(self, amount: float = 1) -> None: ...


def slice_of(uid: uuid_mod.UUID, slices: int) -> int:
    """The slice of a notification, as the store's statements compute it in SQL."""
    digest = hashlib.md5(str(uid).encode(), usedforsecurity=False).digest()
    return (digest[0] * 256 + digest[1]) % slices


def partition_count(settings: Settings) -> int:
    """Partitions of ``outstanding-notifications`` (blocking); 0 when it does not exist."""
    try:
        lags = kafka.group_lag(
            settings, topics.router_group(settings), topics.outstanding(settings)
        )
    except Exception as exc:  # the admin client raises several kinds, all re-raised here
        raise kafka.KafkaUnavailable(f"cannot read the partitions: {exc}") from exc
    return len(lags)


class DutyOptions(TypedDict, total=False):
    """What a test may replace: ``slices`` gives the slice count (default: the partitions of
    the router's topic), ``clock`` the time that ages are measured with, ``monotonic`` the
    time that paces passes, ``limiter`` the pacing of pages (default: from :meth:`rate`)."""

    slices: Slices | None
    clock: Clock
    monotonic: Clock
    limiter: Limiter | None


class SlicedDuty:
    """Passes over the slices ``owns`` says are this replica's, in pages of at most
    ``NOTIFSVC_BATCH_SIZE`` rows paced at :meth:`rate` (see :class:`DutyOptions`).
    Subclasses write :meth:`rate`, :meth:`schedule` and :meth:`_pass`."""

    #: The duty's name in logs and metrics.
    stage = "duty"

    def __init__(
        self, settings: Settings, store: Store, *, owns: Owns, **options: Unpack[DutyOptions]
    ) -> None:
        self.settings = settings
        self.store = store
        self._owns = owns
        default = functools.partial(asyncio.to_thread, partition_count, settings)
        self._slices = options.get("slices") or default
        self._clock = options.get("clock", time.time)
        self._monotonic = options.get("monotonic", time.monotonic)
        rate = self.rate(settings)
        limiter = options.get("limiter")
        self._limiter = limiter if limiter is not None else make_limiter(rate)
        self.page = min(settings.batch_size, int(burst(rate))) if rate else settings.batch_size

    @staticmethod
    def rate(settings: Settings) -> float:
        """Rows per second per replica (0: unpaced)."""
        raise NotImplementedError

    def schedule(self) -> tuple[float, float]:
        """Seconds from start to the first pass, and between passes."""
        raise NotImplementedError

    async def run(self, stopping: asyncio.Event) -> None:
        """A pass every period until ``stopping`` is set; never raises."""
        first, period = self.schedule()
        next_pass = self._monotonic() + first
        while not await batching.wait_or_stop(stopping, next_pass - self._monotonic()):
            next_pass = self._monotonic() + period
            await self.run_pass(stopping)

    async def run_pass(self, stopping: asyncio.Event | None = None) -> int:
        """One pass over this replica's slices; the number of rows it worked on. A failure
        ends the pass (logged), keeping what its pages did."""
        logger = logging.getLogger(type(self).__module__)  # the duty's own, as before
        try:
            return await self._pass(stopping or asyncio.Event())
        except errors.PipelineError as exc:
            logger.warning("%s: pass stopped (%s): %s", self.stage, exc.kind.value, exc)
        except Exception:  # a bug must not stop the router
            logger.exception("%s: pass failed unexpectedly", self.stage)
        return 0

    async def _pass(self, stopping: asyncio.Event) -> int:
        raise NotImplementedError

    async def owned(self) -> tuple[int, list[int]]:
        """The slice count, and the slices this replica owns now."""
        count = await self._slices()
        return count, [n for n in range(count) if self._owns(n)]

    async def pace(self) -> None:
        """Wait for the rate's room for one page."""
        if self._limiter is not None:
            await self._limiter.acquire(self.page)
