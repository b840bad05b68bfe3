"""Nothing stops a stage: poison, refused data, broken headers and slow providers, on the
real broker and database."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator, Iterable

import aiohttp
import orjson
import pytest

from integration.helpers import deliveries, eventually, notification, read_topic, running
from integration.test_notificator import SlowSink, post, wait_state
from notifsvc import deadletter, headers, kafka, topics
from notifsvc.channels.log import LogChannel, LogSettings
from notifsvc.channels.webhook import WebhookChannel
from notifsvc.config import Settings
from notifsvc.db.callbacks import CallbackStore
from notifsvc.db.replays import ReplayStore
from notifsvc.db.schedule import ScheduleStore
from notifsvc.db.store import Outcome, Store, StoreMisconfigured
from notifsvc.dev.fakes.webhook import WebhookSink
from notifsvc.kafka import Headers, Producer, Record
from notifsvc.model import Notification, State, parse
from notifsvc.notificator import Notificator
from notifsvc.router import Router

Message = tuple[str, bytes, bytes | None, Headers]


def log_note(txt: str = "hello") -> Notification:
    return parse(notification("log", txt=txt))


async def produce(settings: Settings, messages: Iterable[Message]) -> None:
    producer = Producer(settings, client_id="test-writer")
    await producer.start()
    try:
        await producer.send_all(list(messages))
    finally:
        await producer.stop()


def plain(topic: str, n: Notification, hdrs: Headers = ()) -> Message:
    return topic, n.encode(), n.key, hdrs


@pytest.fixture
async def refusing_store(store: Store, settings: Settings) -> AsyncIterator[Store]:
    """The table refuses one body, as a database refuses data it cannot store (23514)."""
    import asyncpg  # noqa: PLC0415

    conn = await asyncpg.connect(settings.dsn)
    try:
        await conn.execute(
            "ALTER TABLE notifications ADD CONSTRAINT refuse CHECK (body <> 'refused-by-db')"
        )
    finally:
        await conn.close()
    yield store


async def test_the_router_isolates_a_record_the_database_refuses_and_forwards_the_rest(
    settings: Settings, refusing_store: Store
) -> None:
    good = [log_note(f"good {i}") for i in range(20)]
    bad = log_note("refused-by-db")
    topic = topics.outstanding(settings)
    batch = [plain(topic, n) for n in good[:10]] + [plain(topic, bad)]
    await produce(settings, batch + [plain(topic, n) for n in good[10:]])
    router = Router(settings)
    async with running(router):

        async def all_forwarded() -> bool:
            rows = await refusing_store.lookup([n.uuid for n in good])
            return len(rows) == 20 and all(r.state.value == "forwarded" for r in rows.values())

        await eventually(all_forwarded)
        [dead] = await read_topic(settings, topics.dlq(settings), 1)
    assert dead.key == bad.key
    assert b"23514" in (dead.header(deadletter.REASON) or b"")
    assert dead.header(deadletter.SOURCE_TOPIC) == topic.encode()
    assert await refusing_store.lookup([bad.uuid]) == {}


def broken_values() -> list[bytes]:
    body = {"uuid": str(uuid.uuid4()), "destination": "log", "to": "ops", "txt": "x"}
    return [
        b"",
        b"\xff\xfe\x00",
        b"{}",
        b"[1, 2]",
        b"null",
        orjson.dumps({**body, "accepted_at": 1e300}),
        orjson.dumps({**body, "txt": "nul \x00 inside"}),
        orjson.dumps({**body, "destination": "carrier-pigeon"}),
    ]


GARBAGE_HEADERS: list[Headers] = [
    ((headers.ATTEMPTS, b"abc"), (headers.NOT_BEFORE, b"1e999")),
    ((headers.ATTEMPTS, b"-7"), (headers.NOT_BEFORE, b"nan"), (headers.PASSES, b"\xff")),
    ((headers.ATTEMPTS, b"99999999999999999999"), (headers.NOT_BEFORE, b"99999999999")),
]


async def test_broken_messages_on_every_topic_are_dead_lettered_and_nothing_stops(
    settings: Settings, store: Store
) -> None:
    lanes = [topics.channel(settings, "log", lane) for lane in topics.LANES]
    messages: list[Message] = []
    for topic in [topics.outstanding(settings), *lanes]:
        messages += [(topic, v, None, ()) for v in broken_values()]
    good_routed = [log_note(f"routed {i}") for i in range(5)]
    good_direct = [log_note(f"direct {i}") for i in range(3)]
    retry = topics.channel(settings, "log", "retry")
    messages += [plain(topics.outstanding(settings), n) for n in good_routed]
    messages += [plain(retry, n, h) for n, h in zip(good_direct, GARBAGE_HEADERS, strict=True)]
    await produce(settings, messages)
    notificator = Notificator(settings, LogChannel(settings))
    path = settings.section(LogSettings).path
    assert path is not None
    async with running(Router(settings)) as router, running(notificator):

        async def delivered() -> bool:
            seen = deliveries(path)
            return all(str(n.uuid) in seen for n in good_routed + good_direct)

        await eventually(delivered)
        broken = len(broken_values()) * (1 + len(lanes))
        dead = await read_topic(settings, topics.dlq(settings), broken)
        assert router.loop.batches > 0
    assert len(dead) == broken
    assert all(d.header(deadletter.REASON) for d in dead)


async def test_a_value_too_large_for_the_dlq_is_dead_lettered_without_it(
    settings: Settings,
) -> None:
    producer = Producer(settings, client_id="test-dlq")
    await producer.start()
    try:
        huge = Record("somewhere", 3, 42, b"k", b"x" * 2_000_000, (), 0)
        await deadletter.isolate(producer, settings, huge, reason="too large", stage="test")
    finally:
        await producer.stop()
    [dead] = await read_topic(settings, topics.dlq(settings), 1)
    assert dead.value in (b"", None) and dead.header(deadletter.VALUE_DROPPED) == b"1"
    assert dead.header(deadletter.SOURCE_OFFSET) == b"42"
    assert dead.header(deadletter.REASON) == b"too large"


class FlakyDlqProducer(Producer):
    """Fails the first send that includes a dead-letter message, as a broker hiccup would;
    records the row's state at that moment."""

    def __init__(self, settings: Settings, store: Store, uid: uuid.UUID) -> None:
        super().__init__(settings, client_id="test-flaky")
        self.dlq = topics.dlq(settings)
        self.store, self.uid = store, uid
        self.state_when_failing: object = None

    async def send_all(self, messages: Iterable[Message]) -> None:
        batch = list(messages)
        if self.state_when_failing is None and any(m[0] == self.dlq for m in batch):
            row = await self.store.get(self.uid)
            self.state_when_failing = row["state"] if row else "missing"
            raise kafka.KafkaUnavailable("broker hiccup")
        await super().send_all(batch)


async def test_a_failed_row_always_has_its_dead_letter_record(
    settings: Settings, api: aiohttp.ClientSession, store: Store
) -> None:
    """Defect 5: the outcome 'failed' was written before the DLQ produce; when that failed,
    the retry skipped the notification as finished and the DLQ record was never written."""
    async with WebhookSink() as sink:
        sink.script.push(400)
        body = notification("webhook", to=sink.hook_url())
        uid = uuid.UUID(str(body["uuid"]))
        notificator = Notificator(settings, WebhookChannel(settings))
        notificator.producer = FlakyDlqProducer(settings, store, uid)
        async with running(Router(settings)), running(notificator):
            await post(api, body)
            await wait_state(store, uid, "failed")
            [dead] = await read_topic(settings, topics.dlq(settings), 1)
    assert notificator.producer.state_when_failing == "sending"  # claimed, not yet failed
    assert dead.key == str(uid).encode() and len(sink.seen) == 1


async def test_a_slow_provider_never_costs_the_group_membership(
    settings: Settings, api: aiohttp.ClientSession, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Defect 7: a batch against a slow provider outlasted max.poll.interval.ms; the member
    was evicted and the whole batch sent again. Now the loop polls while the batch runs and
    outcomes are written as they finish."""
    slow = dataclasses.replace(
        settings, send_concurrency=1, kafka_max_poll_interval_ms=7_000, send_timeout_ms=5_000
    )
    caplog.set_level(logging.WARNING, logger="notifsvc.librdkafka")
    async with SlowSink(0.4) as sink:
        url = f"http://127.0.0.1:{sink.port}/hook"
        bodies = [notification("webhook", to=url) for _ in range(25)]  # ~10 s in one batch
        async with running(Router(slow)), running(Notificator(slow, WebhookChannel(slow))):
            async with api.post("/notifications", json=bodies) as resp:
                assert (await resp.json())["accepted"] == 25

            async def some_recorded_while_in_flight() -> bool:
                # any of them: the lane's partitions, and so the order of the sends, vary
                in_flight = len(sink.order) < 25
                for body in bodies:
                    row = await store.get(uuid.UUID(str(body["uuid"])))
                    if row is not None and row["state"] == "sent":
                        return in_flight
                return False

            await eventually(some_recorded_while_in_flight, within=30)
            for body in bodies:
                await wait_state(store, body["uuid"], "sent")
    assert sorted(sink.order) == sorted(str(b["uuid"]) for b in bodies)  # each exactly once
    assert "max.poll" not in caplog.text.lower() and "poll interval" not in caplog.text.lower()


async def test_a_stage_refuses_to_start_without_its_topics_or_schema(
    settings: Settings, store: Store
) -> None:
    elsewhere = dataclasses.replace(settings, topic_prefix=f"missing-{uuid.uuid4().hex[:8]}.")
    router = Router(elsewhere)
    with pytest.raises(kafka.KafkaStageError, match="topics create"):
        await router.start()
    await router.stop()
    await router.stop()  # twice is harmless
    import asyncpg  # noqa: PLC0415

    conn = await asyncpg.connect(settings.dsn)
    try:
        await conn.execute("DROP TABLE notifications")
    finally:
        await conn.close()
    notificator = Notificator(settings, LogChannel(settings))
    with pytest.raises(StoreMisconfigured, match="migrate"):
        await notificator.start()
    await notificator.stop()


@pytest.mark.parametrize("kind", [Store, ScheduleStore, ReplayStore, CallbackStore])
async def test_every_store_refuses_a_database_never_migrated(
    settings: Settings, kind: type[Store]
) -> None:
    import asyncpg  # noqa: PLC0415

    conn = await asyncpg.connect(settings.dsn)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()
    store = kind(settings.dsn, max_connections=1)
    await store.start()
    try:
        with pytest.raises(StoreMisconfigured, match="has `notifsvc migrate` run"):
            await store.check_schema()
    finally:
        await store.stop()


async def test_an_outcome_whose_error_quotes_a_nul_is_stored(store: Store) -> None:
    """Found by the hostile chaos scenario: a provider's body with NUL in last_error."""
    n = log_note("nul in the answer")
    await store.insert([n])
    await store.record([Outcome(n.uuid, State.FAILED, 1, "HTTP 400: bad\x00body \ud800")])
    row = await store.get(n.uuid)
    assert row is not None and row["state"] == "failed"
    assert row["last_error"] == "HTTP 400: bad\ufffdbody ?"
