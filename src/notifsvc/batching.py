"""The consume → process → commit loop shared by the router and the notificators.

A batch's offsets are committed only once every record in it was handled or isolated.
What happens when the handler fails depends on the kind of error (:mod:`notifsvc.errors`):

- *unavailable* or *stage*: the consumer is paused (still polled, so the member keeps its
  partitions without reading further) and the unfinished part is retried with backoff; it
  resumes by itself when the handler succeeds.
- *record* (and any unexpected exception): the failing part is bisected until the record
  that causes it is alone; that record is tried :data:`CONFIRMATIONS` more times after a
  pause (an outage the error did not say it was must not cost a good record), then handed
  to ``on_poison`` (dead-lettered with the reason) and the rest carries on, in order. No
  input can stop a stage.

A handler that runs long (a slow provider) never costs the group membership: the consumer
is paused and polled every :data:`KEEPALIVE` seconds meanwhile, so ``max.poll.interval.ms``
is never exceeded. Records of partitions revoked meanwhile are neither handled further nor
committed: their new owner reads them again from the last committed offset.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from notifsvc import errors, metrics
from notifsvc.config import Settings
from notifsvc.kafka import Consumer, Record, next_offsets

log = logging.getLogger(__name__)

Handler = Callable[[list[Record]], Awaitable[None]]
#: Called with a record that fails on its own, and why; dead-letters it. May raise an
#: *unavailable* error (then it is called again after a pause).
PoisonHandler = Callable[[Record, str], Awaitable[None]]
#: Seconds between consumer-lag samples (the notifsvc_consumer_lag gauge).
LAG_EVERY = 5.0
#: Seconds a handler may run before the consumer is paused and polled to keep its membership.
KEEPALIVE = 5.0
#: Seconds an idle batch loop waits for a first record per poll: the first record returns at
#: once, and an idle loop costs a wakeup this often instead of one per batch timeout.
IDLE_WAIT = 0.5
#: Fetch wait (milliseconds) of a lane whose records wait for a due time anyway (a retry
#: lane, a delay tier): reading one up to this late costs no lateness, and such a lane,
#: mostly idle, costs the broker a fetch each half second instead of each 50 ms on Tansu.
DEFERRED_FETCH_WAIT_MS = 500
#: Longest pause between retries of a failing batch.
MAX_BACKOFF = 5.0
#: Further tries of a lone record that fails for good before it is dead-lettered.
CONFIRMATIONS = 2


class Postponed(errors.Unavailable):
    """A handler cannot finish its batch yet; the batch is tried again (or, when stopping,
    left uncommitted for the next owner)."""


def backoff(attempt: int, *, base: float = 0.2, cap: float = MAX_BACKOFF) -> float:
    """Exponential backoff with full jitter, ``attempt`` counting from 1."""
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))  # noqa: S311 - not crypto


def describe(exc: BaseException) -> str:
    """A reason for a dead-letter header: the error's class and message."""
    text = str(exc)
    if isinstance(exc, errors.PipelineError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class BatchLoop:
    def __init__(
        self,
        consumer: Consumer,
        handler: Handler,
        *,
        on_poison: PoisonHandler,
        batch_size: int,
        batch_timeout: float,
        name: str,
        keepalive: float = KEEPALIVE,
    ) -> None:
        self._consumer = consumer
        self._handler = handler
        self._on_poison = on_poison
        self._batch_size = batch_size
        self._batch_timeout = batch_timeout
        self._name = name
        self._keepalive = keepalive
        self._extra: list[Record] = []  # read while paused: handled next, never skipped
        self.batches = 0
        self.poisoned = 0
        self.paused = False

    async def run(self, stopping: asyncio.Event) -> None:
        """Process batches until ``stopping`` is set; the batch under way is finished first."""
        next_lag = 0.0
        while not stopping.is_set():
            records, self._extra = self._extra, []
            if not records:
                records = await self._consumer.consume(
                    self._batch_size, self._batch_timeout, idle=IDLE_WAIT
                )
            if records:
                await self._process(records, stopping)
            if time.monotonic() >= next_lag:
                next_lag = time.monotonic() + LAG_EVERY
                await self._report_lag()

    async def _report_lag(self) -> None:
        for (topic, partition), lag in (await self._consumer.lag()).items():
            metrics.LAG.labels(self._consumer.group_id, topic, str(partition)).set(lag)

    def _owned(self, records: list[Record]) -> list[Record]:
        return self._consumer.owned(records)

    async def _process(self, records: list[Record], stopping: asyncio.Event) -> None:
        """Handle ``records`` (isolating poison) and commit them, or leave them uncommitted
        when stopping in the middle of an outage."""
        started = time.monotonic()
        parts: deque[Part] = deque([Part(records)])
        attempt = 0
        while parts:
            part = parts[0]
            owned = self._owned(part.records)
            try:
                if owned:
                    await self._step(owned, part.poison)
                parts.popleft()
                attempt = 0
            except Exception as exc:  # noqa: BLE001 - every failure is classified below
                retry = errors.retriable(exc) or part.doubt(owned)
                if not retry:
                    parts.popleft()
                    parts.extendleft(reversed(self._split(owned, part, exc)))
                    continue
                attempt += 1
                if stopping.is_set():
                    log.warning("%s: stopping with an unfinished batch (uncommitted)", self._name)
                    return
                if not errors.retriable(exc):
                    parts[0] = part._replace(tries=part.tries + 1)
                await self._hold(attempt, exc)
        await self._finish(records, started)

    def _split(self, owned: list[Record], part: Part, exc: Exception) -> list[Part]:
        """What to try next after ``owned`` failed for good: its halves, or the lone record
        marked as poison."""
        if part.poison is not None:  # dead-lettering itself failed for good: nothing to try
            log.error("%s: cannot dead-letter %s: %s", self._name, _where(owned[0]), exc)
            return []
        if len(owned) == 1:
            return [Part(owned, describe(exc))]
        middle = len(owned) // 2
        return [Part(owned[:middle]), Part(owned[middle:])]

    async def _step(self, part: list[Record], poison: str | None) -> None:
        if poison is None:
            await self._with_keepalive(self._handler(part))
            return
        log.warning("%s: isolating %s: %s", self._name, _where(part[0]), poison)
        await self._on_poison(part[0], poison)
        self.poisoned += 1
        metrics.DLQ.labels(self._name).inc()

    async def _with_keepalive(self, work: Awaitable[None]) -> None:
        """Await ``work``; while it runs long, keep the group membership by polling paused."""
        task = asyncio.ensure_future(work)
        try:
            while not (await asyncio.wait({task}, timeout=self._keepalive))[0]:
                await self._pause()
                self._extra += await self._consumer.consume(self._batch_size, 0)
        finally:
            if not task.done():
                task.cancel()
        task.result()

    async def _finish(self, records: list[Record], started: float) -> None:
        owned = self._owned(records)
        await self._consumer.commit(next_offsets(owned))
        self.batches += 1
        metrics.BATCH_SIZE.labels(self._name).observe(len(owned))
        metrics.BATCH_SECONDS.labels(self._name).observe(time.monotonic() - started)
        if self.paused:
            await self._consumer.resume()
            self.paused = False
            metrics.PAUSED.labels(self._name).set(0)
            log.info("%s: resumed", self._name)

    async def _pause(self) -> None:
        if not self.paused:
            await self._consumer.pause()
            self.paused = True
            metrics.PAUSED.labels(self._name).set(1)

    async def _hold(self, attempt: int, exc: BaseException) -> None:
        """Wait before the next attempt, paused but still polling the group."""
        metrics.BATCH_RETRIES.labels(self._name).inc()
        delay = backoff(attempt)
        level = logging.ERROR if errors.kind_of(exc) is errors.Kind.STAGE else logging.WARNING
        log.log(
            level,
            "%s: batch failed (%s, attempt %d), retrying in %.2fs: %s",
            self._name,
            errors.kind_of(exc).value,
            attempt,
            delay,
            exc,
        )
        await self._pause()
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            # Paused partitions yield nothing; anything that does arrive is handled next,
            # because its position has moved and skipping it could lose it.
            self._extra += await self._consumer.consume(self._batch_size, min(left, 0.5))


class Part(NamedTuple):
    """A run of a batch still to handle (``poison``: the lone record to dead-letter)."""

    records: list[Record]
    poison: str | None = None
    tries: int = 0  # failures of this lone record, retried to tell poison from a fluke

    def doubt(self, owned: list[Record]) -> bool:
        """Whether a permanent-looking failure of this part is worth another try first: a
        lone record is dead-lettered only after failing :data:`CONFIRMATIONS` more times,
        so that a misclassified outage never dead-letters a good record."""
        return self.poison is None and len(owned) == 1 and self.tries < CONFIRMATIONS


def _where(record: Record) -> str:
    return f"{record.topic}[{record.partition}]@{record.offset}"


def lane(
    settings: Settings,
    *,
    group: str,
    topic: str,
    handler: Handler,
    on_poison: PoisonHandler,
    name: str,
    batch_size: int | None = None,
    deferred: bool = False,
) -> tuple[Consumer, BatchLoop]:
    """One lane of a consuming stage: a consumer of ``topic`` in ``group`` (its client id is
    the group without the topic prefix) and the batch loop over it, sized by the settings
    (or ``batch_size``). ``deferred``: its records wait for a due time of their own, so it
    fetches at most each :data:`DEFERRED_FETCH_WAIT_MS`."""
    wait = settings.kafka_fetch_wait_ms
    consumer = Consumer(
        settings,
        group_id=group,
        topics=[topic],
        client_id=group.removeprefix(settings.topic_prefix),
        fetch_wait_ms=max(wait, DEFERRED_FETCH_WAIT_MS) if deferred else wait,
    )
    loop = BatchLoop(
        consumer,
        handler,
        on_poison=on_poison,
        batch_size=batch_size or settings.batch_size,
        batch_timeout=settings.batch_timeout_ms / 1000,
        name=name,
    )
    return consumer, loop


#: Longest a retry-lane batch waits for its due time before handing back (poll interval).
MAX_WAIT = 60.0


async def wait_or_stop(stopping: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` (a background duty's pause between passes); True as soon as
    ``stopping`` is set."""
    try:
        await asyncio.wait_for(stopping.wait(), max(0.0, seconds))
    except TimeoutError:
        return stopping.is_set()
    return True


async def wait_until_due(wait: float, stopping: asyncio.Event) -> None:
    """Hold a retry-lane batch for ``wait`` seconds, until it is due: raise
    :class:`Postponed` (the batch is read again later) when that is longer than
    :data:`MAX_WAIT` or the stage is stopping first."""
    if wait <= 0:
        return
    try:
        await asyncio.wait_for(stopping.wait(), min(wait, MAX_WAIT))
    except TimeoutError:
        if wait > MAX_WAIT:
            raise Postponed(f"retry batch due in {wait:.0f}s") from None
        return
    raise Postponed("stopping before the retry batch was due")
