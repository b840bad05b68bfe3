"""The delay tiers and the parked reader against the real broker and database.

Notifications are stored ``scheduled`` and put into their first tier as the router does;
the scheduler (in this process, or the router as a process SIGKILLed while they wait) must
release each to its lane once, never before its ``send_at``.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from integration.helpers import connection, eventually, read_topic, running
from loadtest.chaos.infra import Lane
from loadtest.chaos.procs import ASSIGNED, StageProcess
from notifsvc import schedule, topics
from notifsvc.config import Settings
from notifsvc.db.schedule import ScheduleStore
from notifsvc.db.store import Store
from notifsvc.kafka import Producer
from notifsvc.model import Notification
from notifsvc.scheduler import OVERDUE_GRACE, ParkedReader, Scheduler


async def _schedule(
    settings: Settings, store: Store, dues: list[float], expires_at: float | None = None
) -> list[Notification]:
    """Store and place notifications due at ``dues`` as the router does."""
    now = time.time()
    batch = [
        Notification(
            uuid.uuid4(), "log", "ops", f"at {d}", accepted_at=now, send_at=d, expires_at=expires_at
        )
        for d in dues
    ]
    await store.insert(batch)
    producer = Producer(settings, client_id="test-schedule")
    await producer.start()
    try:
        hops = [schedule.first_hop(settings, n, (), now) for n in batch]
        await producer.send_all([h for h in hops if h is not None])
    finally:
        await producer.stop()
    await store.mark_scheduled([n.uuid for n in batch])
    return batch


async def _states(settings: Settings) -> Counter[str]:
    async with connection(settings) as conn:
        rows = await conn.fetch("SELECT state, count(*) AS n FROM notifications GROUP BY state")
    return Counter({r["state"]: r["n"] for r in rows})


async def _lane(settings: Settings, count: int) -> Counter[uuid.UUID]:
    """How often each notification is on the log lane; none produced before its send_at."""
    records = await read_topic(settings, topics.channel(settings, "log"), count, within=60)
    seen: Counter[uuid.UUID] = Counter()
    for r in records:
        n = Notification.decode(r.value)
        assert n.send_at is not None
        assert r.timestamp_ms >= int(n.send_at * 1000), f"{n.uuid} released early"
        seen[n.uuid] += 1
    return seen


async def test_due_sends_are_released_once_and_never_early(
    settings: Settings, store: Store
) -> None:
    now = time.time()
    dues = [now + random.uniform(0.5, 12) for _ in range(40)]
    batch = await _schedule(settings, store, dues)
    expiring = await _schedule(settings, store, [now + 3], expires_at=now + 2)
    canceled = await _schedule(settings, store, [now + 2])
    async with connection(settings) as conn:
        await conn.execute(
            "UPDATE notifications SET state = 'canceled' WHERE uuid = $1", canceled[0].uuid
        )
    producer = Producer(settings, client_id="test-scheduler")
    await producer.start()
    try:
        async with running(scheduler := Scheduler(settings, producer)):
            await eventually(
                lambda: _done(settings, {"forwarded": 40, "expired": 1, "canceled": 1}), within=60
            )
    finally:
        await producer.stop()
    assert (scheduler.released, scheduler.expired) == (40, 1)
    seen = await _lane(settings, 40)
    assert set(seen) == {n.uuid for n in batch}
    assert max(seen.values()) == 1
    assert expiring[0].uuid not in seen


async def _done(settings: Settings, wanted: dict[str, int]) -> bool:
    return await _states(settings) == Counter(wanted)


@pytest.mark.slow
async def test_sigkill_of_every_tier_consumer_while_notifications_wait_loses_nothing(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    now = time.time()
    batch = await _schedule(settings, store, [now + random.uniform(4, 25) for _ in range(60)])
    lane = Lane.for_settings("schedule-kill", settings, tmp_path)
    router = StageProcess(lane, "router", ["router"])
    try:
        for _ in range(3):  # the router holds every tier's only consumer
            router.start()
            assert await router.logged(ASSIGNED, within=60)
            await asyncio.sleep(random.uniform(1, 4))  # a kill at a random moment
            router.kill()
        router.start()
        await eventually(lambda: _done(settings, {"forwarded": 60}), within=90, interval=0.2)
    finally:
        router.stop()
    seen = await _lane(settings, 60)
    assert set(seen) == {n.uuid for n in batch}
    assert router.unexpected_exits == []


async def test_parked_reader_moves_rows_coming_near_once_per_bucket(settings: Settings) -> None:
    store = ScheduleStore(settings.dsn)
    await store.start()
    now = time.time()
    try:
        near = await _schedule(settings, store, [now + 30])
        far = await _schedule(settings, store, [now + settings.schedule_park_after_seconds + 7200])
        await _schedule(settings, store, [now + 30])  # placed in a tier just now
        await _schedule(settings, store, [now - OVERDUE_GRACE - 60])  # its message lost
        async with connection(settings) as conn:  # written long ago: parked then
            await conn.execute(
                "UPDATE notifications SET updated_at = now() - interval '7 days'"
                " WHERE uuid = ANY($1::uuid[])",
                [near[0].uuid, far[0].uuid],
            )
        waits: list[float] = []

        async def wait(stopping: asyncio.Event, seconds: float) -> bool:
            waits.append(seconds)
            return len(waits) >= 3

        producer = Producer(settings, client_id="test-parked")
        await producer.start()
        try:
            reader = ParkedReader(settings, store, producer, owner="a", wait=wait)
            other = ParkedReader(settings, store, producer, owner="b")
            moved = await reader.tick()
            assert moved == 2, "the near parked row and the overdue one"
            assert await other.tick() == 0, "the lease is a's"
            assert await reader.tick() == 1, "moved rows are no longer parked (overdue stays)"
            await reader.run(asyncio.Event())
            lease = timedelta(seconds=settings.schedule_lease_seconds)
            assert await store.claim_reader("b", lease), "a stopped reader gives its lease up"
        finally:
            await producer.stop()
    finally:
        await store.stop()
    assert waits == [settings.schedule_bucket_seconds] * 3, "one pass per bucket, never a hot loop"
    assert reader.passes == 5
