"""The router: the idempotency boundary between client retries and delivery.

Per batch: one multi-row insert (new UUIDs come back), one look-up of the UUIDs that
already existed, place the new rows and the stored rows still in state ``received``
(a crash between insert and placement left them there), wait for every delivery report,
mark them placed in one statement per kind, and only then commit the batch's offsets.
A re-post of a UUID with a different payload keeps the first and counts a conflict.

Placement (:func:`place`): a notification whose ``expires_at`` passed is never forwarded
(``expired``, with its ``notification.expired`` event); one whose ``send_at`` is ahead
goes to its delay tier, or stays parked in the database (:func:`notifsvc.schedule.first_hop`),
and becomes ``scheduled``; any other is forwarded to its channel's lane.

Beside the batch loop run its duties: the :class:`~notifsvc.reconciler.Reconciler`, which
forwards again the rows of this replica's partitions (slices) that stopped moving, and the
:class:`~notifsvc.replays.ReplayRunner`, which works on the operators' replay jobs, and the
:class:`~notifsvc.scheduler.Scheduler`, whose delay tiers hold scheduled notifications until due.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid as uuid_mod
from collections import Counter
from dataclasses import dataclass, field

from notifsvc import channels, events, metrics, preflight, schedule, topics, tracing
from notifsvc.batching import BatchLoop
from notifsvc.config import Settings
from notifsvc.db.replays import ReplayStore
from notifsvc.db.store import Store, StoredRow
from notifsvc.deadletter import Message, dead_letter, isolate
from notifsvc.kafka import Consumer, Producer, Record
from notifsvc.model import FieldError, InvalidNotification, Notification, Priority, State, uuid_text
from notifsvc.reconciler import Reconciler
from notifsvc.replays import ReplayRunner
from notifsvc.retention import Retention
from notifsvc.scheduler import Scheduler

log = logging.getLogger(__name__)

#: Seconds a reconciler or replay page under way may take to finish when the router stops;
#: then it is abandoned, which is safe: the reconciler's rows are claimed and come round
#: again a period later, and a replay job's page is done again by whoever takes the job.
RECONCILER_STOP_SECONDS = 5.0


@dataclass
class Plan:
    """What one batch decided: what to forward, what is poison, what conflicted."""

    unique: dict[uuid_mod.UUID, Notification] = field(default_factory=dict)
    poison: list[Message] = field(default_factory=list)
    conflicts: Counter[uuid_mod.UUID] = field(default_factory=Counter)
    duplicates: int = 0
    trace: dict[uuid_mod.UUID, tracing.Headers] = field(default_factory=dict)  # tracing on
    #: The value each of ``unique`` was decoded from, forwarded as it came: decoding is a
    #: function of the bytes, so a notificator reads from them what it would read from
    #: ``encode()``'s (the router spent 3 % of its time re-encoding them).
    raw: dict[uuid_mod.UUID, bytes] = field(default_factory=dict)


@dataclass
class Placement:
    """Where the notifications of a batch go (see :func:`place`)."""

    due: list[Notification] = field(default_factory=list)  # to their lanes now
    later: list[Notification] = field(default_factory=list)  # to a delay tier, or parked
    expired: list[Notification] = field(default_factory=list)  # never sent


def place(notifications: list[Notification], now: float) -> Placement:
    """Expired first (an expired one is dropped even if it was also due later), then due
    later, else due now; ``now`` is this process's clock (unix seconds)."""
    out = Placement()
    for n in notifications:
        if n.expired(now):
            out.expired.append(n)
        elif n.send_at is not None and n.send_at > now:
            out.later.append(n)
        else:
            out.due.append(n)
    return out


class Router:
    def __init__(self, settings: Settings, *, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store or Store(settings.database)
        self.producer = Producer(settings, client_id=topics.ROUTER)
        self.tracing = tracing.Tracing(settings, topics.ROUTER)
        self.consumer = Consumer(
            settings,
            group_id=topics.router_group(settings),
            topics=[topics.outstanding(settings)],
            client_id=topics.ROUTER,
        )
        self.loop = BatchLoop(
            self.consumer,
            self.handle,
            on_poison=self.isolate,
            batch_size=settings.batch_size,
            batch_timeout=settings.batch_timeout_ms / 1000,
            name="router",
        )
        self.forwarded = 0
        self.duplicates = 0
        self._lanes: dict[tuple[str, Priority], str] = {}
        self.reconciler = Reconciler(settings, self.store, self.producer, owns=self.owns_slice)
        self.retention = Retention(settings, self.store, owns=self.owns_slice)
        replays = ReplayStore(settings.database, max_connections=2)
        self.replays = ReplayRunner(settings, replays, self.producer)
        self.scheduler = Scheduler(settings, self.producer)

    async def start(self) -> None:
        self.tracing.start()
        await self.store.start()
        names = topics.all_topics(self.settings, list(channels.REGISTRY))
        await preflight.check(self.settings, self.store, names)
        await self.replays.start()
        await self.producer.start()
        await self.consumer.start()
        await self.scheduler.start()

    async def stop(self) -> None:
        await self.scheduler.stop()
        await self.consumer.stop()
        await self.producer.stop()
        await self.replays.stop()
        await self.store.stop()
        await self.tracing.stop()

    async def run(self, stopping: asyncio.Event) -> None:
        """The batch loop, and beside it the reconciler's and retention's passes over the
        slices this replica owns and the replay jobs (duties that never raise; a page under
        way when stopping gets a few seconds to end)."""
        duties = {
            asyncio.create_task(self.reconciler.run(stopping), name="reconciler"),
            asyncio.create_task(self.retention.run(stopping), name="retention"),
            asyncio.create_task(self.replays.run(stopping), name="replays"),
        }
        try:
            async with asyncio.TaskGroup() as group:  # the scheduler's tiers fail the stage too
                group.create_task(self.loop.run(stopping))
                group.create_task(self.scheduler.run(stopping))
        finally:
            await asyncio.wait(duties, timeout=RECONCILER_STOP_SECONDS if stopping.is_set() else 0)
            for duty in duties:
                duty.cancel()
            await asyncio.gather(*duties, return_exceptions=True)

    def owns_slice(self, partition: int) -> bool:
        """Whether this replica owns that partition of the topic it reads (so the
        reconciler's slice of the same number)."""
        return (topics.outstanding(self.settings), partition) in self.consumer.assignment

    async def isolate(self, record: Record, reason: str) -> None:
        """Dead-letter a record that fails on its own (the batch loop found it)."""
        await isolate(self.producer, self.settings, record, reason=reason, stage="router")

    def plan(self, records: list[Record]) -> Plan:
        plan = Plan()
        for record in records:
            try:
                n = Notification.decode(record.value)
                if n.channel not in channels.REGISTRY:
                    why = f"unknown destination {n.channel!r}"
                    raise InvalidNotification([FieldError("destination", why)])
            except InvalidNotification as exc:
                poison = dead_letter(self.settings, record, reason=str(exc), stage="router")
                plan.poison.append(poison)
                continue
            first = plan.unique.setdefault(n.uuid, n)
            if first is n and record.value is not None:  # (never None: it decoded)
                plan.raw[n.uuid] = record.value
            if first is n and self.tracing.enabled:
                plan.trace[n.uuid] = tracing.carried(record.headers)
            if first is not n:
                plan.duplicates += 1
                if first.fingerprint() != n.fingerprint():
                    plan.conflicts[n.uuid] += 1
        return plan

    async def handle(self, records: list[Record]) -> None:
        started = time.time_ns()
        plan = self.plan(records)
        inserted = await self.store.insert(list(plan.unique.values()))
        existing = await self.store.lookup([u for u in plan.unique if u not in inserted])
        now = time.time()
        placed = place([plan.unique[u] for u in inserted] + self._unforwarded(plan, existing), now)
        forward = placed.due
        gone = [events.expired_event(n, at=now) for n in placed.expired]
        with self._route_spans(plan, forward + placed.later, inserted, started) as spans:
            await self.producer.send_all(
                [
                    (self._lane_topic(n), _value(plan, n), n.key, spans.headers(n.uuid))
                    for n in forward
                ]
                + self._first_hops(placed.later, spans, now)
                + events.messages(self.settings, gone)
                + plan.poison
            )
            await self.store.mark_forwarded([n.uuid for n in forward])
            await self.store.mark_scheduled([n.uuid for n in placed.later])
            await self.store.expire([n.uuid for n in placed.expired])
        await self.store.add_conflicts(dict(plan.conflicts))
        self._account(plan, forward, duplicates=plan.duplicates + len(existing))
        if placed.later or placed.expired:
            log.debug("router: %d scheduled, %d expired", len(placed.later), len(placed.expired))

    def _first_hops(
        self, later: list[Notification], spans: tracing.Spans, now: float
    ) -> list[Message]:
        """The delay-tier messages of the notifications due later (none for a parked one)."""
        hops = (schedule.first_hop(self.settings, n, spans.headers(n.uuid), now) for n in later)
        return [m for m in hops if m is not None]

    def _route_spans(
        self, plan: Plan, forward: list[Notification], inserted: set[uuid_mod.UUID], started: int
    ) -> tracing.Spans:
        """With tracing on, a span per forwarded notification, continuing its trace."""
        spans = tracing.Spans()
        if not self.tracing.enabled:
            return spans
        for n in forward:
            spans[n.uuid] = self.tracing.begin(
                "route notification",
                parent=plan.trace.get(n.uuid, ()),
                kind=tracing.SpanKind.CONSUMER,
                attributes={
                    "notifsvc.uuid": uuid_text(n.uuid),
                    "notifsvc.channel": n.channel,
                    "notifsvc.priority": n.priority.value,
                    "notifsvc.reforwarded": n.uuid not in inserted,
                },
                start_time=started,
            )
        return spans

    def _account(self, plan: Plan, forward: list[Notification], *, duplicates: int) -> None:
        self.forwarded += len(forward)
        self.duplicates += duplicates
        metrics.DEDUPE_HITS.inc(duplicates)
        metrics.CONFLICTS.inc(sum(plan.conflicts.values()))
        now = time.time()
        for channel, count in Counter(n.channel for n in forward).items():
            metrics.FORWARDED.labels(channel).inc(count)
        metrics.observe_all(
            metrics.FORWARD_SECONDS, [max(0.0, now - n.accepted_at) for n in forward]
        )
        if plan.poison:
            metrics.DLQ.labels("router").inc(len(plan.poison))
            log.warning("router: %d poison messages sent to the DLQ", len(plan.poison))

    def _lane_topic(self, n: Notification) -> str:
        """Its lane's topic name, built once per channel and priority (3 % of the router's
        time went to building it per notification)."""
        lane = (n.channel, n.priority)
        topic = self._lanes.get(lane)
        if topic is None:
            topic = self._lanes[lane] = topics.channel(self.settings, n.channel, n.priority.value)
        return topic

    @staticmethod
    def _unforwarded(plan: Plan, existing: dict[uuid_mod.UUID, StoredRow]) -> list[Notification]:
        """Stored rows never marked forwarded (re-sent as stored), counting payload conflicts."""
        out = []
        for uid, row in existing.items():
            if row.fingerprint != plan.unique[uid].fingerprint():
                plan.conflicts[uid] += 1
            if row.state is State.RECEIVED:
                out.append(row.notification)
        return out


def _value(plan: Plan, n: Notification) -> bytes:
    """What to forward for ``n``: the value it came in, unless it is a stored row (a
    re-forward, whose first payload wins over this batch's)."""
    raw = plan.raw.get(n.uuid)
    return raw if raw is not None and plan.unique.get(n.uuid) is n else n.encode()
