"""The router against the real broker and database: dedupe, re-forwarding, poison, outages."""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter

import msgspec
import orjson

from integration.helpers import eventually, feed, read_topic, running
from notifsvc import deadletter, topics
from notifsvc.config import Secret, Settings
from notifsvc.db.migrate import migrate
from notifsvc.db.store import Store
from notifsvc.dev.postgres import EmbeddedPostgres
from notifsvc.kafka import Producer, Record
from notifsvc.model import Notification, Priority, State, parse
from notifsvc.router import Router


def make(txt: str = "hi", uid: uuid.UUID | None = None) -> Notification:
    return parse({"uuid": str(uid or uuid.uuid4()), "destination": "log", "to": "ops", "txt": txt})


async def produce(settings: Settings, values: list[bytes], keys: list[bytes | None]) -> None:
    producer = Producer(settings, client_id="test-feeder")
    await producer.start()
    try:
        topic = topics.outstanding(settings)
        await producer.send_all([(topic, v, k, ()) for v, k in zip(values, keys, strict=True)])
    finally:
        await producer.stop()


def forwarded_counts(records: list[Record]) -> Counter[str]:
    return Counter(orjson.loads(r.value or b"{}")["uuid"] for r in records)


async def test_duplicates_within_and_across_batches_are_forwarded_once(
    settings: Settings, store: Store
) -> None:
    a, b, c = make(), make(), make()
    router = Router(settings)
    async with running(router):
        await feed(settings, [a, b, a, a])

        async def first_batch_done() -> bool:
            return router.forwarded == 2

        await eventually(first_batch_done)
        await feed(settings, [a, c, b])

        async def all_seen() -> bool:
            return router.forwarded == 3 and router.duplicates == 4

        await eventually(all_seen)
    records = await read_topic(settings, topics.channel(settings, "log"), 3)
    assert forwarded_counts(records) == {str(a.uuid): 1, str(b.uuid): 1, str(c.uuid): 1}
    row = await store.get(a.uuid)
    assert row is not None and row["state"] == "forwarded"


async def test_row_stored_but_never_forwarded_is_forwarded_on_redelivery(
    settings: Settings, store: Store
) -> None:
    n = make("stranded")
    await store.insert([n])  # a router died right after its insert
    assert (await store.lookup([n.uuid]))[n.uuid].state is State.RECEIVED
    router = Router(settings)
    async with running(router):
        await feed(settings, [n])

        async def forwarded() -> bool:
            return router.forwarded == 1

        await eventually(forwarded)
    records = await read_topic(settings, topics.channel(settings, "log"), 1)
    assert Notification.decode(records[0].value).txt == "stranded"
    assert (await store.lookup([n.uuid]))[n.uuid].state is State.FORWARDED


async def test_conflicting_repost_keeps_the_first_and_counts_the_conflict(
    settings: Settings, store: Store
) -> None:
    first = make("first")
    second = msgspec.structs.replace(first, txt="second", priority=Priority.HIGH)
    router = Router(settings)
    async with running(router):
        await feed(settings, [first])
        await eventually(lambda: _forwarded(router, 1))
        await feed(settings, [second])

        async def conflict_recorded() -> bool:
            row = await store.get(first.uuid)
            return row is not None and row["conflicts"] == 1

        await eventually(conflict_recorded)
    records = await read_topic(settings, topics.channel(settings, "log"), 1)
    assert [Notification.decode(r.value).txt for r in records] == ["first"]


async def _forwarded(router: Router, count: int) -> bool:
    return router.forwarded >= count


async def test_poison_goes_to_the_dlq_and_neighbours_are_processed(settings: Settings) -> None:
    good = [make(), make()]
    poison = [b"\x00not json", orjson.dumps({"uuid": str(uuid.uuid4()), "destination": "fax"})]
    router = Router(settings)
    async with running(router):
        await produce(
            settings,
            [good[0].encode(), poison[0], poison[1], good[1].encode()],
            [good[0].key, b"p1", b"p2", good[1].key],
        )
        await eventually(lambda: _forwarded(router, 2))
    dead = await read_topic(settings, topics.dlq(settings), 2)
    assert sorted(r.value or b"" for r in dead) == sorted(poison)
    for record in dead:
        assert record.header(deadletter.STAGE) == b"router"
        assert record.header(deadletter.SOURCE_TOPIC) == topics.outstanding(settings).encode()
        assert record.header(deadletter.REASON)


async def test_database_outage_mid_run_loses_nothing(settings: Settings) -> None:
    postgres = EmbeddedPostgres()  # a database of its own, to stop and start
    postgres.start()  # not via to_thread: the child dies with its spawning thread
    try:
        await migrate(postgres.dsn())
        own = dataclasses.replace(settings, database_url=Secret(postgres.dsn()))
        before = [make() for _ in range(300)]
        during = [make() for _ in range(300)]
        router = Router(own)
        async with running(router):
            await feed(own, before)
            await eventually(lambda: _forwarded(router, 300))
            postgres.stop()
            await feed(own, during)

            async def paused() -> bool:
                return router.loop.paused

            await eventually(paused)
            postgres.start()  # not via to_thread: the child dies with its spawning thread
            await eventually(lambda: _forwarded(router, 600))
        assert not router.loop.paused
        records = await read_topic(own, topics.channel(own, "log"), 600)
        assert set(forwarded_counts(records)) == {str(n.uuid) for n in before + during}
    finally:
        postgres.close()
