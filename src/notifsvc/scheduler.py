"""The scheduler: the delay tiers' consumers and the parked reader, a duty of the router.

**Tiers.** One batched consumer per tier topic (:data:`notifsvc.schedule.TIERS`, a group
each, so that the hour tier's long waits never hold up the second's). A batch is worked in
the order its messages need acting on (:func:`~notifsvc.schedule.acts_at`): the consumer
waits until the earliest is due to be looked at, plus :data:`GATHER` so that those falling
due meanwhile share its statements (as the retry lane waits for its
not-before header, in steps of at most :data:`~notifsvc.batching.MAX_WAIT`, the batch loop
keeping the group membership meanwhile), then for all that are: one statement reads their
rows' states (a canceled or already released row is dropped), the expired ones get their
``notification.expired`` event and move to ``expired``, the due ones are produced to their
channel's lane and the others to the tier for their time left; once the broker acknowledged
them, the released rows are marked ``forwarded``. Offsets are committed by the batch loop
only after all of that, so a restart, rebalance or SIGKILL re-reads the batch: a row
released already is dropped by the state check, a second message in a tier or a lane is
harmless (the release is conditional, the notificator claims a row before sending). A
message is never released before its ``send_at`` by this process's clock.

**Parked rows.** A :class:`ParkedReader` per router; the one holding the lease
(``schedule_leases``, :mod:`notifsvc.db.schedule`) reads, once per bucket
(``NOTIFSVC_SCHEDULE_BUCKET_SECONDS``), the parked rows due within the look-ahead
(``NOTIFSVC_SCHEDULE_PARK_AFTER_SECONDS`` less :data:`SKEW_MARGIN`) and moves them into the
tiers: produce, then touch the rows. The others try for the lease at each bucket, and take
it over when its holder has not renewed it for ``NOTIFSVC_SCHEDULE_LEASE_SECONDS``.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import logging
import time
import uuid as uuid_mod
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from notifsvc import batching, errors, events, process, schedule, topics, tracing
from notifsvc.batching import BatchLoop
from notifsvc.config import Settings
from notifsvc.db.schedule import Cursor, ScheduleStore
from notifsvc.db.store import StoreUnavailable
from notifsvc.deadletter import Message, dead_letter, isolate
from notifsvc.kafka import Consumer, Producer, Record
from notifsvc.model import InvalidNotification, Notification, State
from notifsvc.schedule import Action, Tier

log = logging.getLogger(__name__)

Clock = Callable[[], float]
#: Waits up to the seconds given; True when stopping (:func:`notifsvc.batching.wait_or_stop`).
Wait = Callable[[asyncio.Event, float], Awaitable[bool]]
#: Seconds the router's clock may be off the database's before a parked row could be missed
#: by the reader's test ``send_at > updated_at + look-ahead`` (the overdue net then finds it).
SKEW_MARGIN = 60.0
#: Seconds a ``scheduled`` row may be overdue before the parked reader puts it into a tier
#: again (its message was lost, or its tier's consumers were down that long).
OVERDUE_GRACE = 300.0
#: Seconds a tier batch waits past the head's due time, so that the messages falling due
#: meanwhile are acted on in the same statements (never earlier than due: later by this).
GATHER = 0.05
#: Rows per page of the parked reader.
PAGE = 500
#: Row states whose tier messages are still worked (``received``: the router produced the
#: first hop and stopped before marking it; no row: written to a tier directly).
_LIVE = frozenset({State.SCHEDULED, State.RECEIVED, None})
_START: Cursor = (datetime(1970, 1, 1, tzinfo=UTC), uuid_mod.UUID(int=0))


class Waiting(NamedTuple):
    """A message of a tier batch, and when to act on it."""

    record: Record
    notification: Notification
    hop_at: float
    acts_at: float
    trace: tracing.Headers


class Scheduler:
    """The tiers' consumers and the parked reader, sharing the router's producer."""

    def __init__(
        self,
        settings: Settings,
        producer: Producer,
        *,
        store: ScheduleStore | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.store = store or ScheduleStore(settings.database, max_connections=2)
        self._clock = clock
        self.consumers: dict[str, Consumer] = {}
        self.loops: dict[str, BatchLoop] = {}
        for tier in schedule.TIERS:
            self.consumers[tier.name], self.loops[tier.name] = batching.lane(
                settings,
                group=topics.scheduler_group(settings, tier.name),
                topic=topics.delay(settings, tier.name),
                handler=functools.partial(self.handle, tier),
                on_poison=functools.partial(self.isolate, tier),
                name=f"scheduler[{tier.name}]",
                deferred=True,
            )
        self.reader = ParkedReader(settings, self.store, producer, clock=clock)
        self._stopping = asyncio.Event()
        self.released = 0
        self.hopped = 0
        self.expired = 0

    async def start(self) -> None:
        await self.store.start()
        try:
            await self.store.check_schema()
        except StoreUnavailable as exc:
            log.warning("scheduler: cannot check the schema now (will wait): %s", exc)
        await asyncio.gather(*(c.start() for c in self.consumers.values()))

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.consumers.values()))
        await self.store.stop()

    async def run(self, stopping: asyncio.Event) -> None:
        """The tiers' batch loops and the parked reader, until ``stopping`` is set."""
        self._stopping = stopping
        async with asyncio.TaskGroup() as group:
            for loop in self.loops.values():
                group.create_task(loop.run(stopping))
            group.create_task(self.reader.run(stopping))

    async def isolate(self, tier: Tier, record: Record, reason: str) -> None:
        await isolate(
            self.producer, self.settings, record, reason=reason, stage=f"scheduler[{tier.name}]"
        )

    async def handle(self, tier: Tier, records: list[Record]) -> None:
        """Work a tier batch: each message when it needs acting on, earliest first, those
        falling due within :data:`GATHER` of each other together."""
        pending, poison = self._decode(tier, records)
        await self.producer.send_all(poison)
        owned = self.consumers[tier.name].owns
        while pending:
            now = self._clock()
            due = bisect.bisect_right(pending, now, key=_acts_at)
            if not due:
                wait = min(pending[0].acts_at - now + GATHER, batching.MAX_WAIT)
                await batching.wait_until_due(wait, self._stopping)
                pending = [w for w in pending if owned(w.record)]  # a rebalance meanwhile
                continue
            ready, pending = pending[:due], pending[due:]
            await self.act([w for w in ready if owned(w.record)], now)

    def _decode(self, tier: Tier, records: list[Record]) -> tuple[list[Waiting], list[Message]]:
        now = self._clock()
        pending: list[Waiting] = []
        poison: list[Message] = []
        for record in records:
            try:
                n = Notification.decode(record.value)
            except InvalidNotification as exc:
                stage = f"scheduler[{tier.name}]"
                poison.append(dead_letter(self.settings, record, reason=str(exc), stage=stage))
                continue
            hop_at = schedule.hop_at(record, tier, now)
            trace = tracing.carried(record.headers)
            pending.append(Waiting(record, n, hop_at, schedule.acts_at(n, hop_at), trace))
        pending.sort(key=lambda w: w.acts_at)
        return pending, poison

    async def act(self, ready: list[Waiting], now: float) -> None:
        """Expire, release or hop ``ready`` (each row's state read in one statement first);
        the released rows are marked once their messages were acknowledged."""
        states = await self.store.states([w.notification.uuid for w in ready])
        seen: set[uuid_mod.UUID] = set()
        todo: dict[Action, list[Waiting]] = {a: [] for a in Action}
        for w in ready:
            uid = w.notification.uuid
            if uid in seen or states.get(uid) not in _LIVE:
                continue  # a second message of it, or canceled, released, expired
            seen.add(uid)
            todo[schedule.decide(w.notification, w.hop_at, now)].append(w)
        s = self.settings
        released = [schedule.release(s, w.notification, w.trace) for w in todo[Action.RELEASE]]
        hops = [schedule.hop(s, w.notification, w.trace, now) for w in todo[Action.HOP]]
        gone = [events.expired_event(w.notification, at=now) for w in todo[Action.EXPIRE]]
        await self.producer.send_all(released + hops + events.messages(s, gone))
        await self.store.mark_released([w.notification.uuid for w in todo[Action.RELEASE]])
        if todo[Action.EXPIRE]:
            await self.store.expire([w.notification.uuid for w in todo[Action.EXPIRE]])
        self.released += len(released)
        self.hopped += len(hops)
        self.expired += len(todo[Action.EXPIRE])


def _acts_at(w: Waiting) -> float:
    return w.acts_at


class ParkedReader:
    """Moves the parked rows coming near into the tiers, once per bucket, while it holds
    the lease. ``clock`` times the hops it writes; ``wait`` is the pause between buckets
    (both injectable, so that a test runs buckets without waiting for them)."""

    def __init__(
        self,
        settings: Settings,
        store: ScheduleStore,
        producer: Producer,
        *,
        owner: str | None = None,
        clock: Clock = time.time,
        wait: Wait = batching.wait_or_stop,
    ) -> None:
        self.settings = settings
        self.store = store
        self.producer = producer
        self.owner = owner or process.owner_id()
        self._clock = clock
        self._wait = wait
        self.bucket = float(settings.schedule_bucket_seconds)
        self.lease = timedelta(seconds=settings.schedule_lease_seconds)
        self.lookahead = timedelta(
            seconds=max(0.0, settings.schedule_park_after_seconds - SKEW_MARGIN)
        )
        self.passes = 0
        self.moved = 0

    async def run(self, stopping: asyncio.Event) -> None:
        """A pass per bucket until ``stopping`` is set (the lease given up then); never
        raises."""
        while not stopping.is_set():
            await self.tick()
            if await self._wait(stopping, self.bucket):
                break
        try:
            await self.store.release_reader(self.owner)
        except Exception as exc:  # noqa: BLE001 - the lease then runs out by itself
            log.info("scheduler: cannot give up the parked reader's lease: %s", exc)

    async def tick(self) -> int:
        """One bucket: take or renew the lease, and if this runner holds it, move the
        rows due within the look-ahead; how many it moved."""
        self.passes += 1
        try:
            if not await self.store.claim_reader(self.owner, self.lease):
                return 0
            moved = await self.move()
        except errors.PipelineError as exc:
            log.warning("scheduler: parked rows not read (%s): %s", exc.kind.value, exc)
            return 0
        except Exception:  # a bug must not stop the router
            log.exception("scheduler: reading parked rows failed unexpectedly")
            return 0
        if moved:
            log.info("scheduler: moved %d parked notifications into the tiers", moved)
        self.moved += moved
        return moved

    async def move(self) -> int:
        """Pages of parked rows into their tiers: produce, then touch (a crash between
        leaves them parked, to be moved again: a second message is harmless)."""
        grace = timedelta(seconds=OVERDUE_GRACE)
        cursor, moved = _START, 0
        while True:
            rows = await self.store.parked(self.lookahead, grace, cursor, PAGE)
            now = self._clock()
            await self.producer.send_all([schedule.hop(self.settings, n, (), now) for n, _ in rows])
            await self.store.touch([n.uuid for n, _ in rows])
            moved += len(rows)
            if len(rows) < PAGE:
                return moved
            cursor = rows[-1][1]
