"""The consume → process → commit loop shared by the router and the notificators.

A batch is processed until its handler succeeds, and only then are its offsets committed.
While the handler keeps failing on infrastructure (database or broker), the consumer is
paused and still polled, so the member keeps its partitions without reading further and
without exceeding ``max.poll.interval.ms``; it resumes by itself when the handler succeeds.
Records of partitions revoked meanwhile are dropped: their new owner reads them again from
the last committed offset.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

from notifsvc import metrics
from notifsvc.db.store import StoreUnavailable
from notifsvc.kafka import Consumer, KafkaError, Record, next_offsets

log = logging.getLogger(__name__)

Handler = Callable[[list[Record]], Awaitable[None]]
#: Seconds between consumer-lag samples (the notifsvc_consumer_lag gauge).
LAG_EVERY = 5.0


class Postponed(Exception):
    """A handler cannot finish its batch yet; the batch is tried again (or, when stopping,
    left uncommitted for the next owner)."""


RETRIABLE = (StoreUnavailable, KafkaError, Postponed)


def backoff(attempt: int, *, base: float = 0.2, cap: float = 5.0) -> float:
    """Exponential backoff with full jitter, ``attempt`` counting from 1."""
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))  # noqa: S311 - not crypto


class BatchLoop:
    def __init__(
        self,
        consumer: Consumer,
        handler: Handler,
        *,
        batch_size: int,
        batch_timeout: float,
        name: str,
    ) -> None:
        self._consumer = consumer
        self._handler = handler
        self._batch_size = batch_size
        self._batch_timeout = batch_timeout
        self._name = name
        self.batches = 0
        self.paused = False

    async def run(self, stopping: asyncio.Event) -> None:
        """Process batches until ``stopping`` is set; the batch under way is finished first."""
        next_lag = 0.0
        while not stopping.is_set():
            records = await self._consumer.consume(self._batch_size, self._batch_timeout)
            if records:
                await self._process(records, stopping)
            if time.monotonic() >= next_lag:
                next_lag = time.monotonic() + LAG_EVERY
                await self._report_lag()

    async def _report_lag(self) -> None:
        for (topic, partition), lag in (await self._consumer.lag()).items():
            metrics.LAG.labels(self._consumer.group_id, topic, str(partition)).set(lag)

    async def _process(self, records: list[Record], stopping: asyncio.Event) -> None:
        attempt = 0
        while True:
            records = [r for r in records if (r.topic, r.partition) in self._consumer.assignment]
            if not records:
                break
            started = time.monotonic()
            try:
                await self._handler(records)
            except RETRIABLE as exc:
                attempt += 1
                metrics.BATCH_RETRIES.labels(self._name).inc()
                if stopping.is_set():
                    log.warning("%s: stopping with an unfinished batch (not committed)", self._name)
                    break
                records += await self._hold(attempt, exc)
                continue
            await self._consumer.commit(next_offsets(records))
            self.batches += 1
            metrics.BATCH_SIZE.labels(self._name).observe(len(records))
            metrics.BATCH_SECONDS.labels(self._name).observe(time.monotonic() - started)
            break
        if self.paused:
            await self._consumer.resume()
            self.paused = False
            metrics.PAUSED.labels(self._name).set(0)
            log.info("%s: resumed", self._name)

    async def _hold(self, attempt: int, exc: BaseException) -> list[Record]:
        """Wait before the next attempt, paused but still polling the group."""
        delay = backoff(attempt)
        log.warning(
            "%s: batch failed (attempt %d), retrying in %.2fs: %s", self._name, attempt, delay, exc
        )
        if not self.paused:
            await self._consumer.pause()
            self.paused = True
            metrics.PAUSED.labels(self._name).set(1)
        extra: list[Record] = []
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            # Paused partitions yield nothing; anything that does arrive joins the batch,
            # because its position has moved and skipping it could lose it.
            extra += await self._consumer.consume(self._batch_size, min(left, 0.5))
        return extra
