"""The notificator's delivery policy against a real webhook server, end to end."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

import aiohttp
import pytest
from aiohttp import web

from integration.helpers import eventually, notification, read_topic, running
from notifsvc import topics
from notifsvc.channels.sms import SmsChannel
from notifsvc.channels.webhook import WebhookChannel
from notifsvc.config import Settings
from notifsvc.db.store import Store
from notifsvc.dev.fakes.script import HANG, Reply
from notifsvc.dev.fakes.twilio import FakeTwilio
from notifsvc.dev.fakes.webhook import WebhookSink
from notifsvc.headers import ATTEMPTS, NOT_BEFORE
from notifsvc.kafka import Producer
from notifsvc.model import Notification
from notifsvc.notificator import Notificator
from notifsvc.process import free_port
from notifsvc.router import Router


@pytest.fixture
async def sink() -> AsyncIterator[WebhookSink]:
    async with WebhookSink() as fake:
        yield fake


async def post(api: aiohttp.ClientSession, body: dict[str, object]) -> None:
    async with api.post("/notification", json=body) as resp:
        assert resp.status == 202, await resp.text()


async def wait_state(
    store: Store, uid: object, state: str, within: float = 60
) -> dict[str, object]:
    """The stored row once it reaches ``state``."""

    async def reached() -> dict[str, object]:
        row = await store.get(uuid.UUID(str(uid)))
        return row if row is not None and row["state"] == state else {}

    return await eventually(reached, within=within)


async def test_throttled_provider_slows_the_channel_without_spending_attempts(
    settings: Settings, api: aiohttp.ClientSession, store: Store, sink: WebhookSink
) -> None:
    sink.script.push(Reply(429, "slow down", {"Retry-After": "1"}))
    body = notification("webhook", to=sink.hook_url())
    async with running(Router(settings)), running(Notificator(settings, WebhookChannel(settings))):
        await post(api, body)
        row = await wait_state(store, body["uuid"], "sent")
    # How long the channel paused is checked with an injected clock in unit/test_delivery.py.
    assert row["attempts"] == 1
    assert len(sink.seen) == 2 and len(sink.delivered) == 1


async def test_permanent_error_fails_at_once_into_the_dlq(
    settings: Settings, api: aiohttp.ClientSession, store: Store, sink: WebhookSink
) -> None:
    sink.script.push(Reply(400, {"error": "bad recipient"}))
    body = notification("webhook", to=sink.hook_url())
    async with running(Router(settings)), running(Notificator(settings, WebhookChannel(settings))):
        await post(api, body)
        row = await wait_state(store, body["uuid"], "failed")
    assert row["attempts"] == 1 and "HTTP 400" in str(row["last_error"])
    assert len(sink.seen) == 1
    [dead] = await read_topic(settings, topics.dlq(settings), 1)
    assert dead.key == str(body["uuid"]).encode()
    assert b"HTTP 400" in (dead.header("notifsvc-error") or b"")


async def test_long_failures_go_through_the_retry_lane_then_succeed(
    settings: Settings, api: aiohttp.ClientSession, store: Store, sink: WebhookSink
) -> None:
    policy = dataclasses.replace(settings, inprocess_attempts=2, max_attempts=6, retry_delay_ms=300)
    sink.script.push(500, 503, 500, 502)
    body = notification("webhook", to=sink.hook_url())
    async with running(Router(policy)), running(Notificator(policy, WebhookChannel(policy))):
        await post(api, body)
        row = await wait_state(store, body["uuid"], "sent")
    assert row["attempts"] == 5 and len(sink.delivered) == 1
    retried = await read_topic(policy, topics.channel(policy, "webhook", "retry"), 2)
    assert [r.header(ATTEMPTS) for r in retried] == [b"2", b"4"]
    for r in retried:
        assert float(r.header(NOT_BEFORE) or 0) > 0
    # That a retry pass waits until its not-before is checked against the recorded due time
    # in test_stopping_does_not_wait_for_a_retry_that_is_not_due, not by elapsed time.


async def test_attempts_run_out_and_the_notification_fails(
    settings: Settings, api: aiohttp.ClientSession, store: Store, sink: WebhookSink
) -> None:
    policy = dataclasses.replace(settings, inprocess_attempts=2, max_attempts=3, retry_delay_ms=100)
    sink.script.push(500, 500, 500, 500)
    body = notification("webhook", to=sink.hook_url())
    async with running(Router(policy)), running(Notificator(policy, WebhookChannel(policy))):
        await post(api, body)
        row = await wait_state(store, body["uuid"], "failed")
    assert row["attempts"] == 3 and len(sink.seen) == 3 and not sink.delivered


async def test_hanging_provider_hits_the_send_timeout_and_is_retried(
    settings: Settings, api: aiohttp.ClientSession, store: Store, sink: WebhookSink
) -> None:
    quick = dataclasses.replace(settings, send_timeout_ms=300)
    sink.script.push(HANG)
    body = notification("webhook", to=sink.hook_url())
    async with running(Router(quick)), running(Notificator(quick, WebhookChannel(quick))):
        await post(api, body)
        row = await wait_state(store, body["uuid"], "sent")
    assert row["attempts"] == 2 and len(sink.delivered) == 1


class SlowSink:
    """A webhook server that takes a while per request and records arrival order."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.order: list[str] = []
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    async def _hook(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.delay)
        self.order.append((await request.json())["uuid"])
        return web.json_response({"ok": True})

    async def __aenter__(self) -> SlowSink:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


async def test_high_priority_is_not_stuck_behind_a_low_priority_flood(
    settings: Settings, api: aiohttp.ClientSession
) -> None:
    narrow = dataclasses.replace(settings, send_concurrency=16, batch_size=200)
    async with SlowSink(0.05) as slow:
        url = f"http://127.0.0.1:{slow.port}/hook"
        async with running(Router(narrow)), running(Notificator(narrow, WebhookChannel(narrow))):
            warm = notification("webhook", to=url, priority="high")
            await post(api, warm)
            await eventually(lambda: _arrived(slow, warm["uuid"]))
            flood = [notification("webhook", to=url, priority="low") for _ in range(1000)]
            for start in range(0, len(flood), 500):
                async with api.post("/notifications", json=flood[start : start + 500]) as resp:
                    assert (await resp.json())["accepted"] == 500
            await eventually(lambda: _arrived_count(slow, 50))
            urgent = notification("webhook", to=url, priority="high")
            await post(api, urgent)
            await eventually(lambda: _arrived(slow, urgent["uuid"]), within=30)
            low_done = len(slow.order) - 2
    # The urgent one arrives while most of the flood is still waiting: an ordering, not a
    # duration, so a slow machine cannot fail it.
    assert low_done < 700, low_done


async def _arrived(sink: SlowSink, uid: object) -> bool:
    return str(uid) in sink.order


async def _arrived_count(sink: SlowSink, count: int) -> bool:
    return len(sink.order) >= count


async def test_stopping_does_not_wait_for_a_retry_that_is_not_due(
    settings: Settings,
    api: aiohttp.ClientSession,
    store: Store,
    sink: WebhookSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stop request while a retry batch waits for its due time returns at once and leaves
    the batch uncommitted: the next notificator delivers it when due."""
    policy = dataclasses.replace(
        settings, inprocess_attempts=1, max_attempts=3, retry_delay_ms=8000
    )
    sink.script.push(500)
    body = notification("webhook", to=sink.hook_url())
    async with running(Router(policy)):
        first = Notificator(policy, WebhookChannel(policy))
        async with running(first):
            await post(api, body)

            async def waiting_for_the_retry() -> bool:
                # The retry lane holds the batch until it is due; after the keepalive
                # period its consumer is paused while it waits.
                return first.retried == 1 and first.loops["retry"].paused

            await eventually(waiting_for_the_retry)
            caplog.set_level(logging.WARNING, logger="notifsvc.batching")
        # The stop left the retry batch unfinished instead of waiting for its due time.
        assert "stopping with an unfinished batch" in caplog.text
        assert not sink.delivered
        [retry] = await read_topic(policy, topics.channel(policy, "webhook", "retry"), 1)
        due = float(retry.header(NOT_BEFORE) or 0)
        async with running(Notificator(policy, WebhookChannel(policy))):
            row = await wait_state(store, body["uuid"], "sent", within=60)
    assert row["attempts"] == 2 and len(sink.delivered) == 1
    sent_at = datetime.fromisoformat(str(row["sent_at"])).timestamp()
    assert sent_at >= due  # never sent before it was due


async def test_the_running_pipeline_records_every_attempt_with_its_provider_ids(
    settings: Settings, api: aiohttp.ClientSession, store: Store
) -> None:
    """The notificator writes the attempt history with the outcomes: what a client sees at
    ``GET /notification/{uuid}/attempts`` is every request the provider saw."""
    async with FakeTwilio() as twilio:
        twilio.script.push(503)
        sms = settings.with_sections(twilio.config())
        n = Notification(uuid.uuid4(), "sms", twilio.recipient(), "disk", accepted_at=time.time())
        async with running(Router(sms)), running(Notificator(sms, SmsChannel(sms))):
            producer = Producer(sms, client_id="test-feeder")
            await producer.start()
            try:
                await producer.send_all([(topics.outstanding(sms), n.encode(), n.key, ())])
            finally:
                await producer.stop()
            await wait_state(store, n.uuid, "sent")
        [accepted] = twilio.messages
    async with api.get(f"/notification/{n.uuid}/attempts") as resp:
        assert resp.status == 200
        got = (await resp.json())["attempts"]
    assert [(a["attempt"], a["outcome"], a["status_code"]) for a in got] == [
        (1, "transient", 503),
        (2, "sent", 201),
    ]
    assert accepted["To"] == twilio.recipient()
    assert got[1]["message_id"] is not None and got[1]["message_id"].startswith("SM")
