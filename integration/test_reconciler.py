"""The reconciler on the real broker and database: lost lane messages are delivered once,
slow rows are left alone, replicas never re-drive a row twice, old rows expire, plans are
index scans."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta

import asyncpg
import msgspec
import orjson
import pytest
from confluent_kafka.admin import AdminClient
from prometheus_client import REGISTRY

from integration.helpers import (
    connection,
    deliveries,
    eventually,
    feed,
    plan_reader,
    read_topic,
    running,
    set_state,
)
from notifsvc import deadletter, kafka, topics
from notifsvc.channels.log import LogChannel, LogSettings
from notifsvc.config import Settings
from notifsvc.db.migrate import is_cockroach
from notifsvc.db.store import _CLAIM_STALLED, _REDRIVEN_LAST_HOUR, _STALLED_BY_CHANNEL, Store
from notifsvc.duty import START, slice_of
from notifsvc.kafka import Producer, Record
from notifsvc.model import Notification, parse
from notifsvc.notificator import Notificator
from notifsvc.reconciler import EXPIRED, Reconciler
from notifsvc.router import Router
from notifsvc.status import collect, render

TEN_MINUTES = timedelta(minutes=10)


def make(txt: str = "hi", **fields: object) -> Notification:
    body = {"uuid": str(uuid.uuid4()), "destination": "log", "to": "ops", "txt": txt}
    return parse(body | fields)


async def put(
    settings: Settings,
    store: Store,
    notifications: Sequence[Notification],
    *,
    state: str = "forwarded",
    idle: timedelta = TEN_MINUTES,
    received: timedelta | None = None,
) -> list[uuid.UUID]:
    """Store ``notifications`` in ``state``, last moved ``idle`` ago (the clock of the
    database is what the reconciler reads, so time passes by moving the rows back)."""
    await store.insert(notifications)
    uuids = [n.uuid for n in notifications]
    await set_state(settings, uuids, state, changed=idle, received=received or idle)
    return uuids


async def rows(settings: Settings, uuids: Collection[uuid.UUID]) -> dict[uuid.UUID, asyncpg.Record]:
    async with connection(settings) as conn:
        found = await conn.fetch(
            "SELECT uuid, state, redriven, updated_at, last_error FROM notifications"
            " WHERE uuid = ANY($1)",
            list(uuids),
        )
    return {r["uuid"]: r for r in found}


def uuids_of(records: list[Record]) -> Counter[uuid.UUID]:
    return Counter(uuid.UUID(orjson.loads(r.value or b"{}")["uuid"]) for r in records)


@asynccontextmanager
async def replica(
    settings: Settings, store: Store, *, owned: Collection[int] | None = None
) -> AsyncIterator[Reconciler]:
    """A reconciler as a router replica runs it, owning ``owned`` of 4 slices (all: None)."""
    producer = Producer(settings, client_id="test-reconciler")
    await producer.start()

    async def four() -> int:
        return 4

    def owns(n: int) -> bool:
        return owned is None or n in owned

    try:
        yield Reconciler(settings, store, producer, owns=owns, slices=four)
    finally:
        await producer.stop()


async def recreate(settings: Settings, topic: str) -> None:
    """Delete ``topic`` and create it again, empty: what a broker that lost data leaves."""
    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    for future in admin.delete_topics([topic], operation_timeout=30).values():
        await asyncio.to_thread(future.result, 30)

    async def gone() -> list[str]:
        return await asyncio.to_thread(kafka.missing_topics, settings, [topic])

    await eventually(gone)
    await asyncio.to_thread(kafka.create_topics, settings, [topic])


def redriven_metric(channel: str = "log") -> float:
    return REGISTRY.get_sample_value("notifsvc_redriven_total", {"channel": channel}) or 0.0


async def test_notifications_lost_from_their_lane_are_delivered_once_by_the_router(
    settings: Settings, store: Store
) -> None:
    own = dataclasses.replace(settings, redrive_period_seconds=1)
    forwarded = [make() for _ in range(20)]
    first = Router(own)
    async with running(first):
        await feed(own, forwarded)
        await eventually(lambda: _forwarded(first, 20))
    await recreate(own, topics.channel(own, "log"))  # the lane lost every forward
    stranded = make("stranded")  # a router died after its insert, and its batch was lost
    everything = [n.uuid for n in [*forwarded, stranded]]
    await store.insert([stranded])
    async with connection(own) as conn:  # ten minutes pass (received before last moved)
        await conn.execute(
            "UPDATE notifications SET updated_at = now() - $2::interval,"
            " received_at = now() - $2::interval WHERE uuid = ANY($1)",
            everything,
            TEN_MINUTES,
        )
    before = redriven_metric()
    async with running(Router(own)), running(Notificator(own, LogChannel(own))):

        async def all_sent() -> bool:
            found = await rows(own, everything)
            return all(r["state"] == "sent" for r in found.values())

        await eventually(all_sent)
        snap = await collect(own)
    path = own.section(LogSettings).path
    assert path is not None
    assert deliveries(path) == Counter({str(u): 1 for u in everything})
    assert {r["redriven"] for r in (await rows(own, everything)).values()} == {1}
    assert redriven_metric() - before == 21
    assert snap.redriven == {"log": 21} and snap.stalled == {}
    assert "re-driven" in render(snap)


async def _forwarded(router: Router, count: int) -> bool:
    return router.forwarded >= count


async def test_rows_that_are_only_slow_or_still_moving_are_not_redriven(
    settings: Settings, store: Store
) -> None:
    own = dataclasses.replace(settings, redrive_after_seconds=600)
    [stalled] = await put(own, store, [make("stalled")], idle=timedelta(minutes=11))
    [slow] = await put(own, store, [make("slow")], idle=timedelta(minutes=9))
    [moving] = await put(  # received an hour ago, in the retry lane: updated 30 s ago
        own, store, [make("moving")], idle=timedelta(seconds=30), received=timedelta(hours=1)
    )
    [finished] = await put(own, store, [make("sent")], state="sent", idle=timedelta(hours=1))
    [received] = await put(own, store, [make("received")], state="received", idle=TEN_MINUTES)
    untouched = await rows(own, [slow, moving, finished])
    async with replica(own, store) as one:
        assert await one.run_pass() == 2
    lane = await read_topic(own, topics.channel(own, "log"), 2)
    assert uuids_of(lane) == Counter({stalled: 1, received: 1})
    after = await rows(own, [stalled, slow, moving, finished, received])
    assert after[stalled]["redriven"] == 1 and after[received]["redriven"] == 1
    assert after[received]["state"] == "forwarded"  # re-driven like the router's forward
    for uid, row in untouched.items():
        assert (after[uid]["redriven"], after[uid]["updated_at"]) == (0, row["updated_at"])


async def test_two_replicas_reading_the_same_rows_redrive_each_once(
    settings: Settings, store: Store
) -> None:
    async with connection(settings) as conn:
        if await is_cockroach(conn):
            pytest.skip("watches PostgreSQL's lock waits; CockroachDB retries one of them")
    uuids = await put(settings, store, [make() for _ in range(100)])
    other = Store(settings.dsn)  # the second replica's own pool
    await other.start()
    try:
        async with (
            replica(settings, store) as one,
            replica(settings, other) as two,
            connection(settings) as blocker,
            connection(settings) as watcher,  # in a transaction, pg_stat_activity stands still
        ):
            lock = blocker.transaction()
            await lock.start()
            await blocker.execute(
                "SELECT uuid FROM notifications WHERE uuid = ANY($1) FOR UPDATE", uuids
            )
            passes = asyncio.gather(one.run_pass(), two.run_pass())
            await eventually(lambda: _claims_waiting(watcher, 2))  # both read the same rows
            await lock.rollback()
            counts = await passes
    finally:
        await other.stop()
    assert sorted(counts) == [0, 100]
    assert {r["redriven"] for r in (await rows(settings, uuids)).values()} == {1}
    lane = await read_topic(settings, topics.channel(settings, "log"), 100)
    assert uuids_of(lane) == Counter({u: 1 for u in uuids})


async def _claims_waiting(conn: asyncpg.Connection, count: int) -> bool:
    waiting = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND query LIKE '%UPDATE notifications AS n%'"
    )
    return bool(waiting == count)


async def test_replicas_split_the_rows_by_the_partitions_they_own(
    settings: Settings, store: Store
) -> None:
    uuids = await put(settings, store, [make() for _ in range(200)])
    ours = {u for u in uuids if slice_of(u, 4) in {0, 3}}
    async with replica(settings, store, owned={0, 3}) as one:
        assert await one.run_pass() == len(ours)
    found = await rows(settings, uuids)
    assert {u for u, r in found.items() if r["redriven"]} == ours
    async with replica(settings, store, owned={1, 2}) as two:
        assert await two.run_pass() == 200 - len(ours)
    assert {r["redriven"] for r in (await rows(settings, uuids)).values()} == {1}


async def test_rows_unfinished_too_long_fail_as_expired_unfinished(
    settings: Settings, store: Store
) -> None:
    old = msgspec.structs.replace(make("old"), accepted_at=time.time() - 2 * 86_400)
    [expired] = await put(settings, store, [old])
    [fresh] = await put(settings, store, [make("fresh")])
    async with replica(settings, store) as one:
        assert await one.run_pass() == 2
    found = await rows(settings, [expired, fresh])
    assert found[expired]["state"] == "failed"
    assert found[expired]["last_error"].startswith(EXPIRED)
    assert found[fresh]["state"] == "forwarded" and found[fresh]["redriven"] == 1
    [dead] = await read_topic(settings, topics.dlq(settings), 1)
    assert uuids_of([dead]) == Counter({expired: 1})
    assert (dead.header(deadletter.REASON) or b"").startswith(EXPIRED.encode())
    assert dead.header(deadletter.STAGE) == b"reconciler"
    lane = await read_topic(settings, topics.channel(settings, "log"), 1)
    assert uuids_of(lane) == Counter({fresh: 1})
    snap = await collect(settings)
    assert snap.expired == {"log": 1} and snap.redriven == {"log": 1}


async def test_a_message_the_broker_refuses_does_not_hold_back_its_page(
    settings: Settings, store: Store
) -> None:
    huge = make("x" * 1_200_000)  # over librdkafka's message.max.bytes: refused for good
    uuids = await put(settings, store, [huge, *(make() for _ in range(5))])
    async with replica(settings, store) as one:
        await one.run_pass()
        assert one.redriven == 5
    lane = await read_topic(settings, topics.channel(settings, "log"), 5)
    assert uuids_of(lane) == Counter({u: 1 for u in uuids[1:]})
    # Refused again at every re-drive: it ends failed with the broker's reason instead,
    # dead-lettered without the value that was refused.
    view = await store.get(uuids[0])
    assert view is not None and view["state"] == "failed"
    assert "the broker refused it" in str(view["last_error"])
    [dead] = await read_topic(settings, topics.dlq(settings), 1)
    assert dead.value == b"" and dead.header(deadletter.VALUE_DROPPED) == b"1"


async def test_the_reconcilers_queries_read_partial_indexes_never_the_table(
    settings: Settings, store: Store
) -> None:
    async with plan_reader(settings) as conn:
        await conn.execute(
            "INSERT INTO notifications (uuid, channel, recipient, body, priority, fingerprint,"
            " state, accepted_at) SELECT gen_random_uuid(), 'log', 'ops', 'done', 'normal',"
            " '\\x00', 'sent', now() FROM generate_series(1, 20000)"
        )
        await put(settings, store, [make() for _ in range(20)])
        await conn.execute("ANALYZE notifications")
        args = (TEN_MINUTES, START[0], START[1], 4, [0, 1, 2, 3], 200)
        plans = {
            "claim": await conn.fetch("EXPLAIN " + _CLAIM_STALLED, *args),
            "stalled": await conn.fetch("EXPLAIN " + _STALLED_BY_CHANNEL, TEN_MINUTES),
            "redriven": await conn.fetch("EXPLAIN " + _REDRIVEN_LAST_HOUR),
        }
    for name, plan in plans.items():
        text = "\n".join(r[0] for r in plan)
        print(f"{name}:\n{text}")
        assert "Seq Scan" not in text, name
    claim = "\n".join(r[0] for r in plans["claim"])
    assert "notifications_listed_in_flight" in claim
    assert "Limit" in claim
    # only rows received before the wait: the index's recent end is never read
    assert re.search(r"Index Cond: \(\(received_at < \(now\(\) - ", claim) is not None
