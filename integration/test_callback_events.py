"""Status-callback events from the running pipeline: the receiver stamps each notification
with its API key's id and default callback URL, and the notificator produces the events of
every pass to the callbacks topic with the outcome (delivering them is the dispatcher's:
integration/test_callbacks.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import time
import uuid
from collections.abc import Mapping

import aiohttp

from integration.helpers import eventually, read_topic, running
from notifsvc import topics
from notifsvc.callbacks import Dispatcher
from notifsvc.channels.log import LogChannel
from notifsvc.channels.sms import SmsChannel
from notifsvc.config import CallbackClients, Secret, Settings
from notifsvc.db.store import Store
from notifsvc.dev.fakes.script import HANG, Script
from notifsvc.dev.fakes.twilio import FakeTwilio
from notifsvc.dev.fakes.webhook import WebhookSink
from notifsvc.events import Event, EventType
from notifsvc.kafka import Producer
from notifsvc.model import Notification
from notifsvc.notificator import Notificator
from notifsvc.receiver import ReceiverServer
from notifsvc.router import Router

KEY = "k-callbacks"
KEY_ID = hashlib.sha256(KEY.encode()).hexdigest()[:16]
DEFAULT_URL = "https://cb.example/default"


def keyed(settings: Settings) -> Settings:
    clients = CallbackClients(f'{{"{KEY_ID}": {{"url": "{DEFAULT_URL}"}}}}')
    return dataclasses.replace(
        settings,
        api_keys=(Secret(KEY),),
        callback_allowed_hosts=frozenset({"cb.example"}),
        callback_clients=clients,
    )


async def post(settings: Settings, body: Mapping[str, object]) -> aiohttp.ClientResponse:
    url = f"http://127.0.0.1:{settings.http_port}/notification"
    headers = {"Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession() as http, http.post(url, json=body, headers=headers) as r:
        await r.read()
        return r


async def test_a_failed_attempt_and_the_send_become_events_in_version_order(
    settings: Settings, store: Store
) -> None:
    async with FakeTwilio() as twilio:
        twilio.script.push(503)
        sms = keyed(settings).with_sections(twilio.config())
        body = {
            "uuid": str(uuid.uuid4()),
            "destination": "sms",
            "to": twilio.recipient(),
            "txt": "disk almost full",
            "callback_url": "https://cb.example/mine",
        }
        async with (
            running(ReceiverServer(sms)),
            running(Router(sms)),
            running(Notificator(sms, SmsChannel(sms))),
        ):
            response = await post(sms, body)
            assert response.status == 202
            records = await read_topic(sms, topics.callbacks(sms), 2)
    events = [Event.decode(r.value) for r in records]
    assert [(e.type, e.data["state_version"]) for e in events] == [
        (EventType.ATTEMPT_FAILED, 2),
        (EventType.SENT, 5),
    ]
    assert {e.url for e in events} == {"https://cb.example/mine"}
    assert {e.client for e in events} == {KEY_ID}
    assert events[0].data["status_code"] == 503 and events[0].data["retryable"] is True
    assert {r.key for r in records} == {body["uuid"].encode()}


async def test_the_keys_default_callback_url_is_kept_with_the_row(
    settings: Settings, store: Store
) -> None:
    """A notification without callback_url gets its key's default, stored with it, so a
    re-drive from the database still knows where its events go."""
    own = keyed(settings)
    uid = uuid.uuid4()
    body = {"uuid": str(uid), "destination": "log", "to": "ops", "txt": "x"}
    async with running(ReceiverServer(own)), running(Router(own)):
        assert (await post(own, body)).status == 202

        async def stored() -> bool:
            return bool(await store.lookup([uid]))

        await eventually(stored)
    [row] = (await store.lookup([uid])).values()
    assert row.notification.callback_url == DEFAULT_URL
    assert row.notification.client == KEY_ID


async def test_a_callback_url_off_the_allowed_hosts_is_refused_by_name(settings: Settings) -> None:
    own = keyed(settings)
    body = {
        "uuid": str(uuid.uuid4()),
        "destination": "log",
        "to": "ops",
        "txt": "x",
        "callback_url": "https://evil.example/steal",
    }
    async with running(ReceiverServer(own)):
        url = f"http://127.0.0.1:{own.http_port}/notification"
        headers = {"Authorization": f"Bearer {KEY}"}
        async with aiohttp.ClientSession() as http, http.post(url, json=body, headers=headers) as r:
            assert r.status == 422
            problem = await r.json()
    assert problem["errors"] == [
        {
            "field": "callback_url",
            "message": "host 'evil.example' is not in NOTIFSVC_CALLBACK_ALLOWED_HOSTS",
        }
    ]


async def test_a_hanging_callback_receiver_never_holds_up_the_sends(
    settings: Settings, store: Store
) -> None:
    """Callbacks go through their own stage: once the dispatcher is stuck on a receiver
    whose every callback hangs, more notifications are still sent, every one of them."""
    async with WebhookSink(Script(*[HANG] * 200)) as hanging:
        own = dataclasses.replace(
            settings, callback_allowed_hosts=frozenset({"127.0.0.1"}), callback_timeout_ms=2_000
        )

        def batch(count: int) -> list[Notification]:
            url = hanging.hook_url()
            return [
                Notification(
                    uuid.uuid4(), "log", "ops", "x", accepted_at=time.time(), callback_url=url
                )
                for _ in range(count)
            ]

        first, second = batch(5), batch(20)
        async with (
            running(Dispatcher(own)),
            running(Router(own)),
            running(Notificator(own, LogChannel(own))),
        ):
            await produce(own, first)

            async def stuck() -> bool:
                return bool(hanging.seen)

            await eventually(stuck)  # the dispatcher is waiting on hanging callbacks
            await produce(own, second)

            async def all_sent() -> bool:
                rows = [await store.get(n.uuid) for n in first + second]
                return all(r is not None and r["state"] == "sent" for r in rows)

            await eventually(all_sent)
            assert hanging.delivered == []


async def produce(settings: Settings, batch: list[Notification]) -> None:
    producer = Producer(settings, client_id="test-feeder")
    await producer.start()
    try:
        topic = topics.outstanding(settings)
        await producer.send_all([(topic, n.encode(), n.key, ()) for n in batch])
    finally:
        await producer.stop()
