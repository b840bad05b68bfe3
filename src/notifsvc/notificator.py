"""A notificator: delivers one channel's notifications and records each outcome.

It reads the channel's four lanes (high, normal and low priority, and retry) with one
consumer each, so that a backlog in one lane never holds up another; low priority gets a
quarter of the send slots. Per batch: dead-letter undecodable records, drop UUIDs already
sent or failed, deliver the rest concurrently under the channel's
:class:`~notifsvc.delivery.DeliveryPolicy`, and, every :data:`FLUSH_EVERY` seconds and at
the end, write the finished deliveries: first their dead-letter records and their
status-callback events (:mod:`notifsvc.events`), then their outcomes and every attempt they
took (the attempt history) in one statement, then the postponed ones to the retry lane;
only then are offsets committed. So a slow provider never holds finished outcomes back, a
rebalance re-sends only what was in flight, a row is never ``failed`` without its
dead-letter record, and a retry never finishes a row before its own pass's postponement is
written. Outcomes survive a retried batch, so a database outage after a send does not send
again.

A notification whose ``expires_at`` has passed is never sent: the policy ends it
``expired`` (no next hop; its ``notification.expired`` event), and the retry lane, before
it waits for a batch to be due, records those that will have expired by then at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
import uuid as uuid_mod
from collections import Counter
from collections.abc import Awaitable, Coroutine, Iterable
from typing import Any, NamedTuple

import msgspec

from notifsvc import batching, deadletter, events, headers, metrics, preflight, topics, tracing
from notifsvc.batching import BatchLoop
from notifsvc.channels import AnyChannel
from notifsvc.config import Settings
from notifsvc.db.store import Outcome, Replayed, Store, StoreRefused
from notifsvc.deadletter import Message, dead_letter
from notifsvc.delivery import MAX_RETRY_DELAY, Delivery, DeliveryPolicy
from notifsvc.events import events_for
from notifsvc.kafka import (
    Consumer,
    Headers,
    KafkaError,
    Producer,
    Rebalance,
    Record,
    TopicPartition,
)
from notifsvc.model import FieldError, InvalidNotification, Notification, State, uuid_text
from notifsvc.ratelimit import partition_share

log = logging.getLogger(__name__)

#: Seconds between writes of the outcomes finished so far in a batch.
FLUSH_EVERY = 1.0


class Incoming(NamedTuple):
    notification: Notification
    prior: int  # attempts made in earlier passes
    passes: int  # earlier passes through the retry lane
    trace: tracing.Headers  # the trace context it came with (empty while tracing is off)
    replayed: Replayed | None = None  # an operator's requeue (attempts then, and when)
    record: Record | None = None  # the (first) record it came in


class Notificator:
    def __init__(
        self, settings: Settings, channel: AnyChannel, *, store: Store | None = None
    ) -> None:
        self.settings = settings
        self.channel = channel
        self.name = topics.notificator_name(channel.name)
        self.store = store or Store(settings.database)
        self.producer = Producer(settings, client_id=self.name)
        self.policy = DeliveryPolicy(settings, channel)
        self.tracing = tracing.Tracing(settings, self.name)
        self.consumers: dict[str, Consumer] = {}
        self.loops: dict[str, BatchLoop] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._done: dict[str, dict[uuid_mod.UUID, Delivery]] = {}  # survives a batch retry
        self._recorded: dict[str, set[uuid_mod.UUID]] = {}  # outcomes already recorded
        self._written: dict[str, set[uuid_mod.UUID]] = {}  # recorded, and their retry produced
        self.stage = f"notificator[{channel.name}]"
        # This replica's share of NOTIFSVC_SEND_RATE: its partitions of the lanes' topics
        # over all of theirs, per lane (updated on the loop's thread at every rebalance).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._owned: dict[str, int] = {}
        self._assigned: dict[str, frozenset[TopicPartition]] = {}
        self._partitions: dict[str, int] = {}
        self._idle = 0.0
        for lane in topics.LANES:
            self._add_lane(lane)
        self._stopping = asyncio.Event()
        self.sent = 0
        self.failed = 0
        self.retried = 0
        self.expired = 0

    def _add_lane(self, lane: str) -> None:
        self.consumers[lane], self.loops[lane] = batching.lane(
            self.settings,
            group=topics.notificator_group(self.settings, self.channel.name, lane),
            topic=topics.channel(self.settings, self.channel.name, lane),
            handler=functools.partial(self.handle, lane),
            on_poison=self.isolate,
            name=f"notificator[{self.channel.name}:{lane}]",
            deferred=lane == "retry",
        )
        share = 4 if lane == "low" else 1
        self._slots[lane] = asyncio.Semaphore(max(1, self.settings.send_concurrency // share))
        self._done[lane] = {}
        self._recorded[lane] = set()
        self._written[lane] = set()
        self._owned[lane] = 0
        self._assigned[lane] = frozenset()
        self._partitions[lane] = self.settings.topic_partitions  # until the metadata says
        self.consumers[lane].on_rebalance = functools.partial(self._on_rebalance, lane)

    def _on_rebalance(self, lane: str, change: Rebalance) -> None:
        """On the lane consumer's thread: hand the change over to the event loop."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._rebalanced, lane, change)

    def _rebalanced(self, lane: str, change: Rebalance) -> None:
        """Recompute this replica's share of the send rate after ``lane`` rebalanced; after
        a revocation, forget what batches of the lane left behind (:meth:`_forget_all`)."""
        if self._assigned[lane] - change.assignment:
            self._forget_all(lane)
        self._assigned[lane] = change.assignment
        self._owned[lane] = len(change.assignment)
        topic = topics.channel(self.settings, self.channel.name, lane)
        self._partitions[lane] = change.partitions.get(topic, self._partitions[lane])
        self._apply_share()

    def _apply_share(self) -> None:
        share, idle = partition_share(self._owned, self._partitions)
        if (share, idle) == (self.policy.share, self._idle):
            return
        self.policy.set_share(share, idle=idle)
        self._idle = idle
        owned, total = sum(self._owned.values()), sum(self._partitions.values())
        rate = self.settings.send_rate
        log.info(
            "%s: send share %.4f (%d of %d partitions): %s",
            self.stage,
            share,
            owned,
            total,
            f"{rate * share:g} of {rate:g} sends/s" if rate else "no send rate set",
        )

    async def _count_partitions(self) -> None:
        """Read the lanes' partition counts (the share's denominator) before any arrive."""
        for lane, consumer in self.consumers.items():
            topic = topics.channel(self.settings, self.channel.name, lane)
            try:
                counts = await consumer.partition_counts()
            except KafkaError as exc:  # a rebalance brings the count along later
                log.warning("%s: partitions of %s unknown yet: %s", self.stage, topic, exc)
                continue
            self._partitions[lane] = counts.get(topic, self._partitions[lane])
        self._apply_share()

    async def start(self) -> None:
        self.tracing.start()
        await self.channel.start()
        await self.store.start()
        names = [topics.dlq(self.settings), topics.callbacks(self.settings)]
        names += [topics.channel(self.settings, self.channel.name, lane) for lane in topics.LANES]
        await preflight.check(self.settings, self.store, names)
        await self.producer.start()
        self._loop = asyncio.get_running_loop()
        await asyncio.gather(*(c.start() for c in self.consumers.values()))
        await self._count_partitions()  # nothing assigned yet: the share starts at 0

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
        for record in records:
            try:
                n = Notification.decode(record.value)
                if n.channel != self.channel.name:
                    why = f"a {n.channel!r} notification on a {self.channel.name!r} topic"
                    raise InvalidNotification([FieldError("destination", why)])
            except InvalidNotification as exc:
                poison.append(dead_letter(self.settings, record, reason=str(exc), stage=self.stage))
                continue
            if not n.accepted_at:  # written by something else: its age counts from the topic
                n = msgspec.structs.replace(
                    n, accepted_at=record.timestamp_ms / 1000 or time.time()
                )
            if not record.headers:  # a first pass, untraced: nothing to read
                unique.setdefault(n.uuid, Incoming(n, 0, 0, (), None, record))
                continue
            prior = headers.read_int(record, headers.ATTEMPTS)
            passes = headers.read_int(record, headers.PASSES, high=64)
            trace = tracing.carried(record.headers)
            came = Incoming(n, prior, passes, trace, _replayed(record), record)
            unique.setdefault(n.uuid, came)
        return unique, poison

    async def handle(self, lane: str, records: list[Record]) -> None:
        unique, poison = self._decode(records)
        await self.producer.send_all(poison)
        if lane == "retry":
            due = max(_due(r) for r in records)
            unique = await self._drop_expiring(lane, unique, due)
            if unique:  # nothing left to wait for when all of them expired
                await batching.wait_until_due(due - time.time(), self._stopping)
                unique = {u: i for u, i in unique.items() if self._owns(lane, i)}
        finished = await self.store.claim(list(unique))
        todo = [v for u, v in unique.items() if u not in finished]
        ready, tasks = self._start(lane, todo)
        try:
            pending: set[asyncio.Task[Delivery]] = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, timeout=FLUSH_EVERY)
                ready += [t.result() for t in done]
                pending = self._drop_revoked(lane, pending, tasks)
                await self._write(lane, ready, unique)
                ready = []
            await self._write(lane, ready, unique)
        finally:
            for task in tasks:
                task.cancel()
        self._account_batch(skipped=len(unique) - len(todo), poison=len(poison))
        self._forget(lane, unique)  # this part is done; a retried batch would find it finished

    def _owns(self, lane: str, incoming: Incoming) -> bool:
        """Whether this replica still owns the partition ``incoming`` was read from."""
        record = incoming.record
        return record is None or self.consumers[lane].owns(record)

    def _drop_revoked(
        self,
        lane: str,
        pending: set[asyncio.Task[Delivery]],
        tasks: dict[asyncio.Task[Delivery], Incoming],
    ) -> set[asyncio.Task[Delivery]]:
        """Cancel the passes of notifications whose partition this replica lost meanwhile
        (most still wait for a send slot or the send rate): their new owner reads them again
        from the last commit and claims their rows, so going on would send them twice."""
        lost = {task for task in pending if not self._owns(lane, tasks[task])}
        for task in lost:
            task.cancel()
        if lost:
            log.info(
                "%s: %d sends of revoked partitions left to their new owner", self.stage, len(lost)
            )
        return pending - lost

    async def _write(
        self, lane: str, deliveries: list[Delivery], unique: dict[uuid_mod.UUID, Incoming]
    ) -> None:
        """The outcomes, with the dead-letter records and events before them; the retries
        after them. Each delivery once even if a batch is retried."""
        fresh = [d for d in deliveries if d.notification.uuid not in self._written[lane]]
        if not fresh:
            return
        await self._record(lane, fresh, unique)
        # Only now: a retry produced before its pass's postponement was recorded could be
        # claimed and finished first, and the postponement then wrote over its outcome (or
        # let a cancel succeed while the retry was sending).
        retries = [
            self._next_hop(d, unique[d.notification.uuid])
            for d in fresh
            if d.state is State.FORWARDED
        ]
        await self.producer.send_all(retries)
        self._written[lane].update(d.notification.uuid for d in fresh)
        self._account(fresh)

    async def _record(
        self, lane: str, fresh: list[Delivery], unique: dict[uuid_mod.UUID, Incoming]
    ) -> None:
        """Dead-letter records and events first (a ``failed`` row always has its record,
        no event is lost), then the outcomes in one statement: of those not recorded yet,
        so that a batch retried after a retry failed to go adds no attempts twice."""
        todo = [d for d in fresh if d.notification.uuid not in self._recorded[lane]]
        if not todo:
            return
        dead = [
            self._next_hop(d, unique[d.notification.uuid]) for d in todo if d.state is State.FAILED
        ]
        await self.producer.send_all(dead + self._events(todo))
        attempts = [a for d in todo for a in d.log]
        await self.store.record([d.outcome() for d in todo], attempts=attempts)
        self._recorded[lane].update(d.notification.uuid for d in todo)

    def _forget(self, lane: str, uids: Iterable[uuid_mod.UUID]) -> None:
        """Drop what a batch retry needed of ``uids``: their part is done."""
        for uid in uids:
            self._done[lane].pop(uid, None)
            self._recorded[lane].discard(uid)
            self._written[lane].discard(uid)

    def _forget_all(self, lane: str) -> None:
        """Drop everything kept for batch retries of ``lane``. A batch that failed and then
        lost its partition is never retried here, so its entries would stay: a UUID coming
        back to this lane later (a re-drive, a requeue) would get the old answer, and
        nothing would be sent or recorded. Costs at most a repeated send, if a batch of a
        partition still owned fails and is retried after this."""
        self._done[lane].clear()
        self._recorded[lane].clear()
        self._written[lane].clear()

    async def isolate(self, record: Record, reason: str) -> None:
        """A record that fails on its own: dead-letter it, and fail its row with the reason
        (when it names one), so that its state does not stay ``forwarded``."""
        await deadletter.isolate(
            self.producer, self.settings, record, reason=reason, stage=self.stage
        )
        uid = _uuid_of(record)
        if uid is None:
            return
        try:
            await self.store.record([Outcome(uid, State.FAILED, 0, reason)])
        except StoreRefused as exc:
            log.error("%s: cannot mark %s failed: %s", self.stage, uid, exc)

    async def _drop_expiring(
        self, lane: str, unique: dict[uuid_mod.UUID, Incoming], due: float
    ) -> dict[uuid_mod.UUID, Incoming]:
        """Before the retry lane waits until ``due``: the notifications expired by then are
        claimed and recorded ``expired`` at once (their event too), not held for the wait
        and not sent after it; the others are returned."""
        until = max(due, time.time())
        doomed = {u: i for u, i in unique.items() if i.notification.expired(until)}
        if not doomed:
            return unique
        finished = await self.store.claim(list(doomed))
        expired = [
            self._done[lane].setdefault(u, Delivery.expired(i.notification, total=i.prior))
            for u, i in doomed.items()
            if u not in finished
        ]
        await self._write(lane, expired, doomed)
        self._forget(lane, doomed)
        return {u: i for u, i in unique.items() if u not in doomed}

    def _start(
        self, lane: str, todo: list[Incoming]
    ) -> tuple[list[Delivery], dict[asyncio.Task[Delivery], Incoming]]:
        """Start a pass over each of ``todo``: those that ended without waiting (see
        :meth:`_deliver_now`), and a task for each of the others (with what it delivers)."""
        ready: list[Delivery] = []
        tasks: dict[asyncio.Task[Delivery], Incoming] = {}
        # (a span's context belongs to a task of its own; nothing here awaits, so a slot
        # free now stays free until the loop ends)
        quick = not self.tracing.enabled and not self._slots[lane].locked()
        for incoming in todo:
            now = self._deliver_now(lane, incoming) if quick else None
            if isinstance(now, Delivery):
                ready.append(now)
            else:
                tasks[asyncio.ensure_future(self._deliver(lane, incoming, now))] = incoming
        return ready, tasks

    def _deliver_now(
        self, lane: str, incoming: Incoming
    ) -> Delivery | Coroutine[Any, Any, Delivery] | None:
        """:meth:`_deliver` without a task where nothing waits (the same answer again if the
        batch is retried; :meth:`DeliveryPolicy.deliver_now`): the delivery, or the rest of
        its pass to await, or None to start it in :meth:`_deliver`."""
        n = incoming.notification
        done = self._done[lane].get(n.uuid)
        if done is not None:
            return done
        slots = self._slots[lane]
        try:
            now = self.policy.deliver_now(
                n, prior=incoming.prior, slots=slots, replayed=incoming.replayed
            )
        except Exception as exc:  # a bug fails this notification, not the stage
            log.exception("%s: delivery of %s failed unexpectedly", self.stage, n.uuid)
            now = self._crashed(incoming, exc)
        if isinstance(now, Delivery):
            self._done[lane][n.uuid] = now
        return now

    async def _deliver(
        self, lane: str, incoming: Incoming, rest: Awaitable[Delivery] | None = None
    ) -> Delivery:
        """One pass over a notification (``rest``: what remains of one already begun, to
        finish); the same answer again if its batch is retried."""
        n = incoming.notification
        done = self._done[lane].get(n.uuid) if rest is None else None
        if done is None:
            try:
                done = await (rest or self._traced_delivery(lane, incoming))
            except Exception as exc:  # a bug fails this notification, not the stage
                log.exception("%s: delivery of %s failed unexpectedly", self.stage, n.uuid)
                done = self._crashed(incoming, exc)
            self._done[lane][n.uuid] = done
        return done

    def _crashed(self, incoming: Incoming, exc: Exception) -> Delivery:
        """The delivery of a notification whose pass raised ``exc``: failed."""
        n = incoming.notification
        error = f"unexpected {type(exc).__name__}: {exc}"
        return Delivery(n, State.FAILED, 0, incoming.prior, error)

    async def _traced_delivery(self, lane: str, incoming: Incoming) -> Delivery:
        """One pass of the delivery policy; with tracing on, in a span continuing the trace."""
        n, prior, slots = incoming.notification, incoming.prior, self._slots[lane]
        deliver = functools.partial(
            self.policy.deliver, n, prior=prior, slots=slots, replayed=incoming.replayed
        )
        if not self.tracing.enabled:
            return await deliver()
        attributes = {"notifsvc.uuid": uuid_text(n.uuid), "notifsvc.lane": lane}
        kind = tracing.SpanKind.CLIENT
        name = f"send {self.channel.name}"
        with self.tracing.span(
            name, parent=incoming.trace, kind=kind, attributes=attributes
        ) as span:
            done = await deliver()
            tracing.annotate(span, state=done.state.value, attempts=done.attempts)
            if not done.sent:
                tracing.fail(span, done.error or done.state.value)
        return done

    def _next_hop(self, d: Delivery, incoming: Incoming) -> Message:
        """Where a notification goes when it was not sent: the retry lane or the DLQ (with
        its trace context, so that later attempts join the same trace)."""
        n = d.notification
        attempts = (headers.ATTEMPTS, str(d.total).encode())
        if d.state is State.FORWARDED:
            due = time.time() + self.policy.retry_delay(d, incoming.passes)
            hop: Headers = (
                attempts,
                (headers.PASSES, str(incoming.passes + 1).encode()),
                (headers.NOT_BEFORE, f"{due:.3f}".encode()),
                *_replay_headers(incoming.replayed),
                *incoming.trace,
            )
            topic = topics.channel(self.settings, self.channel.name, "retry")
            return topic, n.encode(), n.key, hop
        dlq: Headers = (
            deadletter.reason_header(d.error or ""),
            (deadletter.STAGE, self.stage.encode()),
            attempts,
            *incoming.trace,
        )
        return topics.dlq(self.settings), n.encode(), n.key, dlq

    def _events(self, deliveries: list[Delivery]) -> list[Message]:
        """The status-callback events of these deliveries, for the callbacks topic: produced
        with the dead-letter records, before the outcomes are recorded, so none is lost (a
        retried flush may produce one twice, with the same id)."""
        limit = self.settings.max_attempts
        return events.messages(
            self.settings, (e for d in deliveries for e in events_for(d, max_attempts=limit))
        )

    def _account(self, deliveries: list[Delivery]) -> None:
        self.policy.flush_metrics()
        name = self.channel.name
        counts = Counter(d.state for d in deliveries)
        self.sent += counts[State.SENT]
        self.failed += counts[State.FAILED]
        self.retried += counts[State.FORWARDED]
        self.expired += counts[State.EXPIRED]
        metrics.SENDS.labels(name, "sent").inc(counts[State.SENT])
        metrics.SENDS.labels(name, "expired").inc(counts[State.EXPIRED])
        metrics.SENDS.labels(name, "failed").inc(counts[State.FAILED])
        metrics.SENDS.labels(name, "postponed").inc(counts[State.FORWARDED])
        metrics.DLQ.labels(self.stage).inc(counts[State.FAILED])

    def _account_batch(self, *, skipped: int, poison: int) -> None:
        self.policy.flush_metrics()
        metrics.SENDS.labels(self.channel.name, "skipped").inc(skipped)
        metrics.DLQ.labels(self.stage).inc(poison)


def _due(record: Record) -> float:
    """When a retry-lane record is due; a time later than any retry delay was not written
    by a notificator (or by a clock far off) and counts as due now."""
    due = headers.read_float(record, headers.NOT_BEFORE, default=0.0, low=0.0, high=math.inf)
    return due if due <= time.time() + MAX_RETRY_DELAY + 60 else 0.0


def _replayed(record: Record) -> Replayed | None:
    """The operator's requeue a lane message carries, if any (both headers, or neither)."""
    at = headers.read_float(record, headers.REPLAYED_AT, default=-1.0, low=-1.0, high=math.inf)
    if at < 0 or record.header(headers.REPLAYED_FROM) is None:
        return None
    return Replayed(headers.read_int(record, headers.REPLAYED_FROM), at)


def _replay_headers(replayed: Replayed | None) -> Headers:
    """The headers that carry ``replayed`` on to the retry lane."""
    return () if replayed is None else headers.replayed(replayed.attempts, replayed.at)


def _uuid_of(record: Record) -> uuid_mod.UUID | None:
    """The notification a record is about, from its value or else its key."""
    try:
        return Notification.decode(record.value).uuid
    except InvalidNotification:
        pass
    try:
        return uuid_mod.UUID((record.key or b"").decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
