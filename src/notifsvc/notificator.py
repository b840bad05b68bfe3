"""A notificator: delivers one channel's notifications and records each outcome.

It reads the channel's four lanes (high, normal and low priority, and retry) with one
consumer each, so that a backlog in one lane never holds up another; low priority gets a
quarter of the send slots. Per batch: drop UUIDs already sent or failed, deliver the rest
concurrently under the channel's :class:`~notifsvc.delivery.DeliveryPolicy`, write every
outcome in one statement, send failures to the DLQ and postponed ones to the retry lane,
and only then commit. Outcomes survive a retried batch, so a database outage after a send
does not send again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid as uuid_mod
from typing import NamedTuple

from notifsvc import metrics, topics, tracing
from notifsvc.batching import BatchLoop, Postponed
from notifsvc.channels import Channel
from notifsvc.config import Settings
from notifsvc.db.store import Store
from notifsvc.deadletter import Message, dead_letter
from notifsvc.delivery import Delivery, DeliveryPolicy
from notifsvc.kafka import Consumer, Headers, Producer, Record
from notifsvc.model import InvalidNotification, Notification, State

log = logging.getLogger(__name__)

ATTEMPTS = "notifsvc-attempts"
NOT_BEFORE = "notifsvc-not-before"
#: Longest a retry-lane batch waits for its due time before handing back (poll interval).
MAX_WAIT = 60.0


class Incoming(NamedTuple):
    notification: Notification
    prior: int  # attempts made in earlier passes
    trace: tracing.Headers  # the trace context it came with (empty while tracing is off)


class Notificator:
    def __init__(self, settings: Settings, channel: Channel, *, store: Store | None = None) -> None:
        self.settings = settings
        self.channel = channel
        self.name = f"notifsvc-notificator-{channel.name}"
        self.store = store or Store(settings.dsn)
        self.producer = Producer(settings, client_id=self.name)
        self.policy = DeliveryPolicy(settings, channel)
        self.tracing = tracing.Tracing(settings, self.name)
        self.consumers: dict[str, Consumer] = {}
        self.loops: dict[str, BatchLoop] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._done: dict[str, dict[uuid_mod.UUID, Delivery]] = {}
        for lane in topics.LANES:
            self._add_lane(lane)
        self._stopping = asyncio.Event()
        self.sent = 0
        self.failed = 0
        self.retried = 0

    def _add_lane(self, lane: str) -> None:
        suffix = "" if lane == "normal" else f"-{lane}"
        consumer = Consumer(
            self.settings,
            group_id=self.settings.topic(self.name + suffix),
            topics=[topics.channel(self.settings, self.channel.name, lane)],
            client_id=self.name + suffix,
        )
        self.consumers[lane] = consumer
        self.loops[lane] = BatchLoop(
            consumer,
            functools.partial(self.handle, lane),
            batch_size=self.settings.batch_size,
            batch_timeout=self.settings.batch_timeout_ms / 1000,
            name=f"notificator[{self.channel.name}:{lane}]",
        )
        share = 4 if lane == "low" else 1
        self._slots[lane] = asyncio.Semaphore(max(1, self.settings.send_concurrency // share))
        self._done[lane] = {}

    async def start(self) -> None:
        self.tracing.start()
        await self.channel.start()
        await self.store.start()
        await self.producer.start()
        await asyncio.gather(*(c.start() for c in self.consumers.values()))

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.consumers.values()))
        await self.producer.stop()
        await self.store.stop()
        await self.channel.stop()
        await self.tracing.stop()

    async def run(self, stopping: asyncio.Event) -> None:
        self._stopping = stopping
        async with asyncio.TaskGroup() as group:
            for loop in self.loops.values():
                group.create_task(loop.run(stopping))

    def _decode(self, records: list[Record]) -> tuple[dict[uuid_mod.UUID, Incoming], list[Message]]:
        unique: dict[uuid_mod.UUID, Incoming] = {}
        poison: list[Message] = []
        stage = f"notificator[{self.channel.name}]"
        for record in records:
            try:
                n = Notification.decode(record.value)
            except InvalidNotification as exc:
                poison.append(dead_letter(self.settings, record, reason=str(exc), stage=stage))
                continue
            prior = int(record.header(ATTEMPTS) or 0)
            unique.setdefault(n.uuid, Incoming(n, prior, tracing.carried(record.headers)))
        return unique, poison

    async def handle(self, lane: str, records: list[Record]) -> None:
        if lane == "retry":
            await self._until_due(records)
        unique, poison = self._decode(records)
        finished = await self.store.finished(list(unique))
        todo = [v for u, v in unique.items() if u not in finished]
        deliveries = await asyncio.gather(*(self._deliver(lane, *incoming) for incoming in todo))
        await self.store.record([d.outcome() for d in deliveries])
        later = [d for d in deliveries if not d.sent]
        hops = [self._next_hop(d, unique[d.notification.uuid].trace) for d in later]
        await self.producer.send_all(poison + hops)
        self._account(deliveries, skipped=len(unique) - len(todo), poison=len(poison))
        self._done[lane].clear()

    async def _until_due(self, records: list[Record]) -> None:
        due = max(float(r.header(NOT_BEFORE) or 0) for r in records)
        wait = due - time.time()
        if wait <= 0:
            return
        try:
            await asyncio.wait_for(self._stopping.wait(), min(wait, MAX_WAIT))
        except TimeoutError:
            if wait > MAX_WAIT:
                raise Postponed(f"retry batch due in {wait:.0f}s") from None
            return
        raise Postponed("stopping before the retry batch was due")

    async def _deliver(
        self, lane: str, n: Notification, prior: int, trace: tracing.Headers
    ) -> Delivery:
        done = self._done[lane].get(n.uuid)
        if done is None:
            done = await self._traced_delivery(lane, n, prior, trace)
            self._done[lane][n.uuid] = done
        return done

    async def _traced_delivery(
        self, lane: str, n: Notification, prior: int, trace: tracing.Headers
    ) -> Delivery:
        """One pass of the delivery policy; with tracing on, in a span continuing the trace."""
        if not self.tracing.enabled:
            return await self.policy.deliver(n, prior=prior, slots=self._slots[lane])
        attributes = {"notifsvc.uuid": str(n.uuid), "notifsvc.lane": lane}
        kind = tracing.SpanKind.CLIENT
        name = f"send {self.channel.name}"
        with self.tracing.span(name, parent=trace, kind=kind, attributes=attributes) as span:
            done = await self.policy.deliver(n, prior=prior, slots=self._slots[lane])
            tracing.annotate(span, state=done.state.value, attempts=done.attempts)
            if not done.sent:
                tracing.fail(span, done.error or done.state.value)
        return done

    def _next_hop(self, d: Delivery, trace: tracing.Headers) -> Message:
        """Where a notification goes when it was not sent: the retry lane or the DLQ (with
        its trace context, so that later attempts join the same trace)."""
        n = d.notification
        if d.state is State.FORWARDED:
            due = time.time() + self.policy.retry_delay(d)
            headers: Headers = (
                (ATTEMPTS, str(d.total).encode()),
                (NOT_BEFORE, f"{due:.3f}".encode()),
                *trace,
            )
            return (
                topics.channel(self.settings, self.channel.name, "retry"),
                n.encode(),
                n.key,
                headers,
            )
        headers = (
            ("notifsvc-error", (d.error or "").encode()[:2000]),
            ("notifsvc-stage", f"notificator[{self.channel.name}]".encode()),
            (ATTEMPTS, str(d.total).encode()),
            *trace,
        )
        return topics.dlq(self.settings), n.encode(), n.key, headers

    def _account(self, deliveries: list[Delivery], *, skipped: int, poison: int) -> None:
        name = self.channel.name
        counts = {s: sum(d.state is s for d in deliveries) for s in State}
        self.sent += counts[State.SENT]
        self.failed += counts[State.FAILED]
        self.retried += counts[State.FORWARDED]
        metrics.SENDS.labels(name, "sent").inc(counts[State.SENT])
        metrics.SENDS.labels(name, "failed").inc(counts[State.FAILED])
        metrics.SENDS.labels(name, "postponed").inc(counts[State.FORWARDED])
        metrics.SENDS.labels(name, "skipped").inc(skipped)
        metrics.DLQ.labels(f"notificator[{name}]").inc(counts[State.FAILED] + poison)
