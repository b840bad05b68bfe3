"""Expiry on the real broker and database, with fake providers: a notification whose
``expires_at`` passed is never sent, wherever it is found (its lane, the retry lane after a
provider outage, a replay, a single retry, the reconciler), and ends ``expired`` with its
``notification.expired`` event; one that has not expired is sent, and push providers are
told how long it may still live."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import aiohttp
import asyncpg
import msgspec
import pytest
from prometheus_client import REGISTRY

from integration.channels.support import Clock, started
from integration.helpers import connection, eventually, read_topic, running
from notifsvc import topics
from notifsvc.channels.apns import ApnsChannel
from notifsvc.channels.fcm import FcmChannel
from notifsvc.channels.webhook import WebhookChannel
from notifsvc.channels.webpush import WebPushChannel
from notifsvc.config import Settings
from notifsvc.db.replays import ReplayFilter, ReplayStore
from notifsvc.db.store import Outcome, Store
from notifsvc.dev.fakes.apns import DEVICE_TOKEN, FakeApns
from notifsvc.dev.fakes.fcm import RECIPIENT, FakeFcm
from notifsvc.dev.fakes.webhook import WebhookSink
from notifsvc.dev.fakes.webpush import FakePushService
from notifsvc.events import Event, EventType
from notifsvc.kafka import Producer
from notifsvc.model import Notification, State
from notifsvc.notificator import Notificator
from notifsvc.reconciler import Reconciler
from notifsvc.replays import ReplayRunner

CALLBACK = "https://cb.example/status"


@pytest.fixture
async def sink() -> AsyncIterator[WebhookSink]:
    async with WebhookSink() as fake:
        yield fake


def hook(sink: WebhookSink, *, expires_in: float | None) -> Notification:
    """A webhook notification with a callback URL, expiring ``expires_in`` seconds from now."""
    now = time.time()
    expires_at = None if expires_in is None else now + expires_in
    return Notification(
        uuid.uuid4(),
        "webhook",
        sink.hook_url(),
        "one-time code 424242",
        accepted_at=now,
        callback_url=CALLBACK,
        expires_at=expires_at,
    )


async def seed(
    settings: Settings,
    store: Store,
    notifications: Sequence[Notification],
    state: str,
    **set_: object,
) -> None:
    """Store ``notifications`` in ``state`` (with the columns ``set_`` names set)."""
    await store.insert(notifications)
    columns = "".join(f", {name} = ${i + 3}" for i, name in enumerate(set_))
    async with connection(settings) as conn:
        await conn.execute(
            f"UPDATE notifications SET state = $2{columns} WHERE uuid = ANY($1)",
            [n.uuid for n in notifications],
            state,
            *set_.values(),
        )


async def to_lane(settings: Settings, notifications: Sequence[Notification], lane: str) -> None:
    producer = Producer(settings, client_id="test-expiry")
    await producer.start()
    try:
        await producer.send_all(
            [
                (topics.channel(settings, n.channel, lane), n.encode(), n.key, ())
                for n in notifications
            ]
        )
    finally:
        await producer.stop()


async def row(settings: Settings, uid: uuid.UUID) -> asyncpg.Record:
    async with connection(settings) as conn:
        found = await conn.fetchrow(
            "SELECT state, attempts, last_error, expired_at, sent_at FROM notifications"
            " WHERE uuid = $1",
            uid,
        )
    assert found is not None
    return found


async def reaches(
    settings: Settings, uid: uuid.UUID, state: str, within: float = 30
) -> asyncpg.Record:
    async def reached() -> list[asyncpg.Record]:
        found = await row(settings, uid)
        return [found] if found["state"] == state else []

    [result] = await eventually(reached, within=within)
    return result


async def events_of(settings: Settings, uid: uuid.UUID, count: int) -> list[Event]:
    """The callback events of ``uid``, in version order, once there are ``count`` (each test
    has topics of its own; a retried flush may produce one twice, with the same id)."""
    records = await read_topic(settings, topics.callbacks(settings), count)
    events = [e for r in records if (e := Event.decode(r.value)).data["uuid"] == str(uid)]
    by_id = {e.id: e for e in events}
    assert len(by_id) == count, [e.id for e in events]
    return sorted(by_id.values(), key=lambda e: int(e.data["state_version"]))


async def warmed_up(settings: Settings, store: Store, sink: WebhookSink) -> str:
    """Once a first notification went through, the notificator reads its lanes: what
    expires seconds from now then gets its first pass within them."""
    first = hook(sink, expires_in=None)
    await seed(settings, store, [first], "forwarded")
    await to_lane(settings, [first], "normal")
    await reaches(settings, first.uuid, "sent")
    return str(first.uuid)


def delivered(sink: WebhookSink) -> Counter[str]:
    return Counter(seen.headers["Idempotency-Key"] for seen in sink.delivered)


def dead_letters(channel: str) -> float:
    stage = f"notificator[{channel}]"
    return REGISTRY.get_sample_value("notifsvc_dlq_total", {"stage": stage}) or 0.0


async def test_an_expired_notification_read_from_its_lane_ends_expired_with_its_event(
    settings: Settings, store: Store, sink: WebhookSink
) -> None:
    stale = hook(sink, expires_in=-1.0)
    await seed(settings, store, [stale], "forwarded")
    dlq_before = dead_letters("webhook")
    async with running(Notificator(settings, WebhookChannel(settings))):
        await to_lane(settings, [stale], "normal")
        expired = await reaches(settings, stale.uuid, "expired")
    assert not sink.seen  # never sent
    assert expired["attempts"] == 0 and expired["expired_at"] is not None
    assert str(expired["last_error"]).startswith("expired: ")
    assert dead_letters("webhook") == dlq_before  # an expiry is no failure: no dead letter
    [event] = await events_of(settings, stale.uuid, 1)
    assert event.type is EventType.EXPIRED and event.url == CALLBACK
    assert event.data["state"] == "expired" and event.data["state_version"] == 2


async def test_a_provider_down_past_the_expiry_never_delivers_it_after_it_recovers(
    settings: Settings, store: Store, sink: WebhookSink
) -> None:
    """Two attempts per pass, the retry lane after 0.3 s doubling per pass: eight failures
    last at least 2.1 s (four passes), longer than the notification lives (1.5 s). Once the
    provider answers again, a fresh notification is delivered, never the expired one."""
    policy = dataclasses.replace(
        settings, inprocess_attempts=2, max_attempts=20, retry_delay_ms=300
    )
    async with running(Notificator(policy, WebhookChannel(policy))):
        first = await warmed_up(policy, store, sink)
        sink.script.push(*[500] * 8)
        code = hook(sink, expires_in=1.5)
        await seed(policy, store, [code], "forwarded")
        await to_lane(policy, [code], "normal")
        expired = await reaches(policy, code.uuid, "expired")
        later = hook(sink, expires_in=None)
        await seed(policy, store, [later], "forwarded")
        await to_lane(policy, [later], "normal")
        await reaches(policy, later.uuid, "sent")
    assert delivered(sink) == Counter({first: 1, str(later.uuid): 1})
    tried = [s for s in sink.seen if s.headers["Idempotency-Key"] == str(code.uuid)]
    assert 2 <= len(tried) == expired["attempts"] <= 8
    events = await events_of(policy, code.uuid, expired["attempts"] + 1)
    assert [e.type for e in events] == [EventType.ATTEMPT_FAILED] * len(tried) + [EventType.EXPIRED]
    assert events[-1].data["state_version"] == 2 * len(tried) + 2


async def test_the_retry_lane_drops_one_that_expires_before_it_is_due_at_once(
    settings: Settings, store: Store, sink: WebhookSink
) -> None:
    """Its retry is due in 60 s, it expires in 5 s: it is expired as soon as the retry lane
    reads it (well within the 30 s this test waits), not after waiting for the retry."""
    policy = dataclasses.replace(
        settings, inprocess_attempts=2, max_attempts=20, retry_delay_ms=60_000
    )
    async with running(Notificator(policy, WebhookChannel(policy))):
        first = await warmed_up(policy, store, sink)
        sink.script.push(500, 500)
        code = hook(sink, expires_in=5.0)
        await seed(policy, store, [code], "forwarded")
        await to_lane(policy, [code], "normal")
        expired = await reaches(policy, code.uuid, "expired", within=30)
    assert expired["attempts"] == 2 and len(sink.seen) == 3
    assert delivered(sink) == Counter({first: 1})
    [*_, end] = await events_of(policy, code.uuid, 3)
    assert end.type is EventType.EXPIRED and end.data["attempts"] == 2


async def test_a_notification_that_has_not_expired_is_delivered(
    settings: Settings, store: Store, sink: WebhookSink
) -> None:
    fresh = hook(sink, expires_in=600.0)
    await seed(settings, store, [fresh], "forwarded")
    async with running(Notificator(settings, WebhookChannel(settings))):
        await to_lane(settings, [fresh], "normal")
        sent = await reaches(settings, fresh.uuid, "sent")
    assert sent["expired_at"] is None and delivered(sink) == Counter({str(fresh.uuid): 1})


async def test_a_replay_expires_the_failed_rows_past_their_expiry_and_sends_the_rest(
    settings: Settings, store: Store, sink: WebhookSink
) -> None:
    stale, fresh = hook(sink, expires_in=-1.0), hook(sink, expires_in=600.0)
    await seed(settings, store, [stale, fresh], "failed", attempts=1, last_error="HTTP 503")
    replays = ReplayStore(settings.dsn)
    producer = Producer(settings, client_id="test-replays")
    await replays.start()
    await producer.start()
    try:
        runner = ReplayRunner(settings, replays, producer, limiter=None)
        async with running(Notificator(settings, WebhookChannel(settings))):
            job = await replays.create(ReplayFilter(channel="webhook"))
            claimed = await replays.claim_job(runner.owner, runner.lease)
            assert claimed is not None and claimed.id == job.id
            assert await runner.work(claimed, asyncio.Event())
            await reaches(settings, fresh.uuid, "sent")
        finished = await replays.job(job.id)
    finally:
        await producer.stop()
        await replays.stop()
    assert finished is not None and (finished.requeued, finished.skipped) == (1, 1)
    expired = await row(settings, stale.uuid)
    assert expired["state"] == "expired" and expired["expired_at"] is not None
    assert expired["attempts"] == 1 and str(expired["last_error"]).startswith("expired: ")
    assert delivered(sink) == Counter({str(fresh.uuid): 1})
    [event] = await events_of(settings, stale.uuid, 1)
    assert event.type is EventType.EXPIRED and event.data["state_version"] == 4


async def test_a_single_retry_of_an_expired_failure_ends_expired_unsent(
    settings: Settings, api: aiohttp.ClientSession, store: Store, sink: WebhookSink
) -> None:
    stale = hook(sink, expires_in=-1.0)
    await seed(settings, store, [stale], "failed", attempts=2, last_error="HTTP 503")
    async with running(Notificator(settings, WebhookChannel(settings))):
        async with api.post(f"/notification/{stale.uuid}/retry") as resp:
            assert resp.status in (202, 409), await resp.text()
        expired = await reaches(settings, stale.uuid, "expired")
    assert not sink.seen and expired["attempts"] == 2
    [event] = await events_of(settings, stale.uuid, 1)
    assert event.type is EventType.EXPIRED and event.data["state_version"] == 6


async def stalled_pass(
    settings: Settings, store: Store, stalled: Sequence[Notification], *, moved: int
) -> Reconciler:
    """Make ``stalled`` rows look unmoved for 10 minutes, then run one reconciler pass over
    every slice, which must move ``moved`` rows; the reconciler, for its counters."""
    async with connection(settings) as conn:
        await conn.execute(
            "UPDATE notifications SET updated_at = now() - INTERVAL '10 minutes',"
            " received_at = now() - INTERVAL '10 minutes' WHERE uuid = ANY($1)",
            [n.uuid for n in stalled],
        )
    producer = Producer(settings, client_id="test-reconciler")
    await producer.start()
    try:

        async def four() -> int:
            return 4

        reconciler = Reconciler(settings, store, producer, owns=lambda _: True, slices=four)
        assert await reconciler.run_pass() == moved
    finally:
        await producer.stop()
    return reconciler


async def test_the_reconciler_expires_a_stalled_row_past_its_expiry_instead_of_redriving(
    settings: Settings, store: Store, sink: WebhookSink
) -> None:
    stale, live = hook(sink, expires_in=-1.0), hook(sink, expires_in=600.0)
    await seed(settings, store, [stale, live], "forwarded")
    reconciler = await stalled_pass(settings, store, [stale, live], moved=2)
    assert reconciler.lapsed == 1 and reconciler.redriven == 1
    assert (await row(settings, stale.uuid))["state"] == "expired"
    assert (await row(settings, live.uuid))["state"] == "forwarded"  # re-driven to its lane
    [event] = await events_of(settings, stale.uuid, 1)
    assert event.type is EventType.EXPIRED and event.data["state_version"] == 2
    [redriven] = await read_topic(settings, topics.channel(settings, "webhook", "normal"), 1)
    assert redriven.key == str(live.uuid).encode()


# Push providers are told the time left (the channels against their fakes, on a clock).


async def test_fcm_receives_the_time_left_through_the_pipeline(
    settings: Settings, store: Store
) -> None:
    async with FakeFcm() as fcm:
        configured = settings.with_sections(fcm.config())
        n = Notification(
            uuid.uuid4(),
            "fcm",
            RECIPIENT,
            "code 1234",
            accepted_at=time.time(),
            expires_at=time.time() + 600,
        )
        await seed(configured, store, [n], "forwarded")
        async with running(Notificator(configured, FcmChannel(configured))):
            await to_lane(configured, [n], "high")
            await reaches(configured, n.uuid, "sent")
        [message] = fcm.messages
    seconds = int(message["android"]["ttl"].removesuffix("s"))
    assert 570 <= seconds <= 600
    assert message["apns"]["headers"]["apns-expiration"] == str(int(n.expires_at or 0))
    assert message["webpush"]["headers"]["TTL"] == str(seconds)


async def test_apns_receives_the_expiry_and_webpush_the_seconds_left() -> None:
    clock = Clock()
    n_at = clock.now + 90.5
    async with FakeApns(clock=clock) as apns:
        config = Settings().with_sections(apns.config())
        async with started(ApnsChannel(config, clock=clock)) as channel:
            await channel.send(
                Notification(uuid.uuid4(), "apns", DEVICE_TOKEN, "code", expires_at=n_at)
            )
        [push] = apns.messages
    assert push.headers["apns-expiration"] == str(int(n_at))
    async with FakePushService(clock=clock) as service:
        config = Settings().with_sections(service.config())
        async with started(WebPushChannel(config, clock=clock)) as channel:
            to = service.subscribe()
            await channel.send(Notification(uuid.uuid4(), "webpush", to, "code", expires_at=n_at))
        [delivery] = service.pushes
    assert delivery.ttl == 90


async def test_an_expired_row_stays_expired_unless_a_send_did_happen(
    settings: Settings, store: Store, sink: WebhookSink
) -> None:
    """A late outcome of a pass that raced the expiry: a postponement or a failure never
    revives the row; a send that happened is recorded as what it was."""
    late, sent = hook(sink, expires_in=-1.0), hook(sink, expires_in=-1.0)
    await seed(settings, store, [late, sent], "expired", expired_at=datetime.now(UTC))
    await store.record(
        [
            Outcome(late.uuid, State.FORWARDED, 1, "HTTP 503"),
            Outcome(sent.uuid, State.SENT, 1),
        ]
    )
    assert (await row(settings, late.uuid))["state"] == "expired"
    assert (await row(settings, sent.uuid))["state"] == "sent"


async def test_the_reconciler_places_a_stalled_row_due_later_in_its_tier_not_its_lane(
    settings: Settings, store: Store, sink: WebhookSink
) -> None:
    """A row the router inserted but never placed (it died in between) and whose send_at is
    ahead: the reconciler must not re-drive it to its lane (that would send it early)."""
    soon = msgspec.structs.replace(hook(sink, expires_in=None), send_at=time.time() + 120)
    far = msgspec.structs.replace(hook(sink, expires_in=None), send_at=time.time() + 7200)
    await seed(settings, store, [soon, far], "received")
    reconciler = await stalled_pass(settings, store, [soon, far], moved=2)
    assert reconciler.redriven == 0
    assert (await row(settings, soon.uuid))["state"] == "scheduled"
    assert (await row(settings, far.uuid))["state"] == "scheduled"  # parked in the database
    hops = await read_topic(settings, topics.delay(settings, "1m"), 1)
    assert str(soon.uuid).encode() in {h.key for h in hops}
