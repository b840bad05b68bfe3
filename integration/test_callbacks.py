"""The status-callback dispatcher against a real broker, database and HTTP receivers: events
are produced to the callbacks topic as the notificator does, and the fakes record what
arrived. Signatures are verified with the ``standardwebhooks`` package from PyPI."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import pytest
import standardwebhooks

from integration.helpers import eventually, read_topic, running, stage_env
from notifsvc import deadletter, headers, topics
from notifsvc.callbacks import Dispatcher
from notifsvc.config import CallbackClients, Settings
from notifsvc.db.callbacks import CallbackStore
from notifsvc.dev.fakes.script import HANG, Script
from notifsvc.dev.fakes.webhook import WebhookSink
from notifsvc.events import Event, EventType, event_id, iso
from notifsvc.kafka import Producer, Record
from notifsvc.signing import SigningSecrets, generate_secret

DEFAULT_SECRET = generate_secret()
CLIENT_SECRET = generate_secret()
CLIENT = "00112233445566ff"


@pytest.fixture
def cb_settings(settings: Settings) -> Settings:
    """Callbacks on for 127.0.0.1, signed, retried quickly."""
    return dataclasses.replace(
        settings,
        callback_allowed_hosts=frozenset({"127.0.0.1"}),
        callback_secret=SigningSecrets(DEFAULT_SECRET),
        callback_clients=CallbackClients(f'{{"{CLIENT}": {{"secrets": "{CLIENT_SECRET}"}}}}'),
        callback_retry_delay_ms=200,
        callback_max_attempts=3,
    )


@pytest.fixture
async def sink() -> AsyncIterator[WebhookSink]:
    async with WebhookSink() as fake:
        yield fake


@pytest.fixture
async def gone_store(cb_settings: Settings) -> AsyncIterator[CallbackStore]:
    store = CallbackStore(cb_settings.database)
    await store.start()
    yield store
    await store.stop()


def event(url: str, *, client: str | None = None, uid: uuid.UUID | None = None) -> Event:
    uid = uid or uuid.uuid4()
    data = {
        "uuid": str(uid),
        "channel": "webhook",
        "state": "sent",
        "state_version": 3,
        "attempts": 1,
        "at": iso(time.time()),
    }
    return Event(event_id(uid, 3), EventType.SENT, url, client, data)


async def produce(settings: Settings, *values: Event | bytes) -> None:
    """Write events (or raw values) to the callbacks topic, in order, in one go."""
    producer = Producer(settings, client_id="test-notificator")
    await producer.start()
    try:
        topic = topics.callbacks(settings)
        await producer.send_all(
            (topic, v.encode(), v.key, ()) if isinstance(v, Event) else (topic, v, b"k", ())
            for v in values
        )
    finally:
        await producer.stop()


async def counted(dispatcher: Dispatcher, **expected: int) -> None:
    """Wait until the dispatcher has settled exactly these outcomes."""

    async def settled() -> bool:
        return {o.value: n for o, n in dispatcher.counts.items() if n} == expected

    await eventually(settled, within=60)


def verify(secret: str, body: bytes, sent: Mapping[str, str]) -> None:
    standardwebhooks.Webhook(secret).verify(body, dict(sent))


def header(record: Record, name: str) -> str:
    return (record.header(name) or b"").decode()


async def test_events_are_delivered_signed_with_the_clients_or_the_default_secrets(
    cb_settings: Settings, sink: WebhookSink
) -> None:
    anyone = event(sink.hook_url("/a"))
    mine = event(sink.hook_url("/b?token=t0ken"), client=CLIENT)
    await produce(cb_settings, anyone, mine)
    async with running(Dispatcher(cb_settings)) as dispatcher:
        await counted(dispatcher, delivered=2)
    by_id = {seen.headers["webhook-id"]: seen for seen in sink.delivered}
    assert set(by_id) == {anyone.id, mine.id}
    for sent, secret in ((anyone, DEFAULT_SECRET), (mine, CLIENT_SECRET)):
        seen = by_id[sent.id]
        assert seen.body == sent.body() and seen.json()["type"] == "notification.sent"
        assert seen.headers["Content-Type"] == "application/json"
        verify(secret, seen.body, seen.headers)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        verify(DEFAULT_SECRET, by_id[mine.id].body, by_id[mine.id].headers)
    assert sorted(s.path for s in sink.seen) == ["/a", "/b"]


async def test_a_5xx_is_retried_through_the_retry_lane_and_delivered_once(
    cb_settings: Settings, sink: WebhookSink
) -> None:
    sink.script.push(500)
    sent = event(sink.hook_url())
    await produce(cb_settings, sent)
    async with running(Dispatcher(cb_settings)) as dispatcher:
        await counted(dispatcher, retried=1, delivered=1)
    assert len(sink.seen) == 2 and len(sink.delivered) == 1
    assert [s.headers["webhook-id"] for s in sink.seen] == [sent.id, sent.id]
    for seen in sink.seen:  # each attempt signed afresh
        verify(DEFAULT_SECRET, seen.body, seen.headers)
    [requeued] = await read_topic(cb_settings, topics.callbacks(cb_settings, "retry"), 1)
    assert requeued.value == sent.encode() and requeued.key == sent.key
    assert header(requeued, headers.ATTEMPTS) == "1" and header(requeued, headers.PASSES) == "1"


async def test_a_410_stops_callbacks_to_that_url_and_later_events_are_dropped(
    cb_settings: Settings, sink: WebhookSink, gone_store: CallbackStore
) -> None:
    sink.script.push(410)
    gone, other = sink.hook_url("/gone"), sink.hook_url("/other")
    async with running(Dispatcher(cb_settings)) as dispatcher:
        await produce(cb_settings, event(gone))
        await counted(dispatcher, gone=1)
        assert await gone_store.gone([gone, other]) == {gone}
        await produce(cb_settings, event(gone), event(other))
        await counted(dispatcher, gone=1, dropped=1, delivered=1)
    assert [s.path for s in sink.seen] == ["/gone", "/other"]
    assert await gone_store.count_gone() == 1
    assert await gone_store.forget([gone]) == {gone}
    assert await gone_store.gone([gone]) == set()


async def test_a_4xx_goes_to_the_callbacks_dlq_at_once(
    cb_settings: Settings, sink: WebhookSink
) -> None:
    sink.script.push(400)
    sent = event(sink.hook_url())
    await produce(cb_settings, sent)
    async with running(Dispatcher(cb_settings)) as dispatcher:
        await counted(dispatcher, failed=1)
    assert len(sink.seen) == 1
    [dead] = await read_topic(cb_settings, topics.callbacks_dlq(cb_settings), 1)
    assert dead.value == sent.encode()
    assert "HTTP 400" in header(dead, deadletter.REASON)
    assert header(dead, deadletter.STAGE) == "callbacks"
    assert header(dead, headers.ATTEMPTS) == "1"


async def test_records_that_cannot_be_sent_are_dead_lettered_without_a_request(
    cb_settings: Settings, sink: WebhookSink
) -> None:
    uid = uuid.uuid4()  # one key: one partition, so the good event comes after the others
    outside = event(f"http://localhost:{sink.port}/hook", uid=uid)  # localhost is not allowed
    good = event(sink.hook_url(), uid=uid)
    await produce(cb_settings, b"{not an event", outside, good)
    async with running(Dispatcher(cb_settings)) as dispatcher:
        await counted(dispatcher, failed=2, delivered=1)
    assert [s.headers["webhook-id"] for s in sink.seen] == [good.id]
    dead = await read_topic(cb_settings, topics.callbacks_dlq(cb_settings), 2)
    reasons = sorted(header(d, deadletter.REASON) for d in dead)
    assert reasons[0].startswith("callback URL to localhost")
    assert "NOTIFSVC_CALLBACK_ALLOWED_HOSTS" in reasons[0]
    assert reasons[1].startswith("not a callback event")


async def test_a_hanging_receiver_does_not_hold_up_another_receivers_event(
    cb_settings: Settings,
) -> None:
    quick = dataclasses.replace(cb_settings, callback_timeout_ms=20_000)
    patience = quick.callback_timeout_ms / 1000 / 2  # well before the hung request times out
    uid = uuid.uuid4()  # one key: one partition, the hanging receiver's event first
    async with WebhookSink(Script(HANG)) as slow, WebhookSink() as fast:
        await produce(quick, event(slow.hook_url(), uid=uid), event(fast.hook_url(), uid=uid))
        async with running(Dispatcher(quick)) as dispatcher:

            async def other_delivered() -> bool:
                return len(fast.delivered) == 1

            await eventually(other_delivered, within=patience)
            # Delivered while the hung request is still open: nothing was settled yet.
            assert len(slow.seen) == 1 and not slow.delivered and not dispatcher.counts
            slow.script.release()  # the fake answers 503: retried, then delivered
            await counted(dispatcher, delivered=2, retried=1)
    assert len(slow.delivered) == 1


async def run_command(
    args: list[str], env: dict[str, str], *, until: Callable[[], Awaitable[bool]] | None = None
) -> tuple[int, str]:
    """Run ``notifsvc <args>``; with ``until``, SIGTERM it once ``until()`` holds."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "notifsvc",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        if until is not None:
            await eventually(until, within=60)
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_the_callbacks_command_delivers_and_stops_cleanly(
    cb_settings: Settings, sink: WebhookSink
) -> None:
    sent = event(sink.hook_url())
    await produce(cb_settings, sent)

    async def delivered() -> bool:
        return len(sink.delivered) == 1

    code, out = await run_command(["callbacks"], stage_env(cb_settings), until=delivered)
    assert code == 0, out
    verify(DEFAULT_SECRET, sink.delivered[0].body, sink.delivered[0].headers)


async def test_the_callbacks_command_refuses_to_start_without_its_topics(
    cb_settings: Settings,
) -> None:
    env = stage_env(cb_settings) | {"NOTIFSVC_TOPIC_PREFIX": "never-created."}
    code, out = await run_command(["callbacks"], env)
    assert code == 2
    assert "missing topics: never-created.notifications.callbacks" in out
    assert "notifsvc topics create" in out
