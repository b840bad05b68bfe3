"""A notificator: delivers one channel's notifications and records each outcome.

Per batch: drop UUIDs already sent or failed, send the rest concurrently (bounded), retry
retriable errors in process with backoff (honouring ``Retry-After``), write every outcome
in one statement, dead-letter the failures, and only then commit the batch's offsets.
Outcomes survive a retried batch, so a database outage after a send does not send again.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid as uuid_mod

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter
from tenacity.wait import wait_base

from notifsvc import metrics, topics
from notifsvc.batching import BatchLoop
from notifsvc.channels import Channel, DeliveryError, TransientError
from notifsvc.config import Settings
from notifsvc.db.store import Outcome, Store
from notifsvc.deadletter import Message, dead_letter
from notifsvc.kafka import Consumer, Producer, Record
from notifsvc.model import InvalidNotification, Notification, State

log = logging.getLogger(__name__)


class _RetryAfter(wait_base):
    """Wait what the provider asked for, else exponential backoff with jitter."""

    def __init__(self, fallback: wait_base, cap: float) -> None:
        self.fallback = fallback
        self.cap = cap

    def __call__(self, retry_state: object) -> float:
        outcome = getattr(retry_state, "outcome", None)
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, DeliveryError) and exc.retry_after is not None:
            return min(exc.retry_after, self.cap)
        return float(self.fallback(retry_state))  # type: ignore[arg-type]


def _retriable(exc: BaseException) -> bool:
    return isinstance(exc, DeliveryError) and exc.retriable


class Notificator:
    def __init__(self, settings: Settings, channel: Channel, *, store: Store | None = None) -> None:
        self.settings = settings
        self.channel = channel
        name = f"notifsvc-notificator-{channel.name}"
        self.store = store or Store(settings.dsn)
        self.producer = Producer(settings, client_id=name)
        self.consumer = Consumer(
            settings,
            group_id=settings.topic(name),
            topics=[topics.channel(settings, channel.name)],
            client_id=name,
        )
        self.loop = BatchLoop(
            self.consumer,
            self.handle,
            batch_size=settings.batch_size,
            batch_timeout=settings.batch_timeout_ms / 1000,
            name=f"notificator[{channel.name}]",
        )
        self._limit = asyncio.Semaphore(settings.send_concurrency)
        self._done: dict[uuid_mod.UUID, Outcome] = {}
        self.sent = 0
        self.failed = 0

    async def start(self) -> None:
        await self.channel.start()
        await self.store.start()
        await self.producer.start()
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.producer.stop()
        await self.store.stop()
        await self.channel.stop()

    async def run(self, stopping: asyncio.Event) -> None:
        await self.loop.run(stopping)

    def _decode(
        self, records: list[Record]
    ) -> tuple[dict[uuid_mod.UUID, Notification], list[Message]]:
        unique: dict[uuid_mod.UUID, Notification] = {}
        poison: list[Message] = []
        stage = f"notificator[{self.channel.name}]"
        for record in records:
            try:
                n = Notification.decode(record.value)
            except InvalidNotification as exc:
                poison.append(dead_letter(self.settings, record, reason=str(exc), stage=stage))
                continue
            unique.setdefault(n.uuid, n)
        return unique, poison

    async def handle(self, records: list[Record]) -> None:
        unique, poison = self._decode(records)
        finished = await self.store.finished(list(unique))
        todo = [n for u, n in unique.items() if u not in finished]
        outcomes = await asyncio.gather(*(self._deliver(n) for n in todo))
        await self.store.record(outcomes)
        failed = [o for o in outcomes if o.state is State.FAILED]
        await self.producer.send_all(poison + [self._dead(unique[o.uuid], o) for o in failed])
        self._account(outcomes, len(failed), skipped=len(unique) - len(todo), poison=len(poison))
        self._done.clear()

    def _account(self, outcomes: list[Outcome], failed: int, *, skipped: int, poison: int) -> None:
        name = self.channel.name
        self.sent += len(outcomes) - failed
        self.failed += failed
        metrics.SENDS.labels(name, "sent").inc(len(outcomes) - failed)
        metrics.SENDS.labels(name, "failed").inc(failed)
        metrics.SENDS.labels(name, "skipped").inc(skipped)
        metrics.DLQ.labels(f"notificator[{name}]").inc(failed + poison)

    def _dead(self, n: Notification, outcome: Outcome) -> Message:
        headers = (
            ("notifsvc-error", (outcome.error or "").encode()[:2000]),
            ("notifsvc-stage", f"notificator[{self.channel.name}]".encode()),
            ("notifsvc-attempts", str(outcome.attempts).encode()),
        )
        return topics.dlq(self.settings), n.encode(), n.key, headers

    async def _deliver(self, n: Notification) -> Outcome:
        if (done := self._done.get(n.uuid)) is not None:
            return done
        attempts = 0
        try:
            async for attempt in self._retrying():
                with attempt:
                    attempts += 1
                    async with self._limit:
                        await self._send(n, attempts)
            outcome = Outcome(n.uuid, State.SENT, attempts)
            metrics.END_TO_END.labels(self.channel.name).observe(
                max(0.0, time.time() - n.accepted_at)
            )
        except DeliveryError as exc:
            log.warning(
                "%s: %s failed after %d attempts: %s", self.channel.name, n.uuid, attempts, exc
            )
            outcome = Outcome(n.uuid, State.FAILED, attempts, str(exc))
        self._done[n.uuid] = outcome
        return outcome

    def _retrying(self) -> AsyncRetrying:
        return AsyncRetrying(
            retry=retry_if_exception(_retriable),
            wait=_RetryAfter(
                wait_exponential_jitter(multiplier=0.1, max=5.0, jitter=0.1), cap=30.0
            ),
            stop=stop_after_attempt(self.settings.max_attempts),
            reraise=True,
        )

    async def _send(self, n: Notification, attempt: int) -> None:
        if attempt > 1:
            metrics.RETRIES.labels(self.channel.name).inc()
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.settings.send_timeout_ms / 1000):
                await self.channel.send(n)
        except TimeoutError as exc:
            raise TransientError(f"{self.channel.name} send timed out") from exc
        finally:
            elapsed = time.monotonic() - started
            metrics.PROVIDER_SECONDS.labels(self.channel.name).observe(elapsed)
