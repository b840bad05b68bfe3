"""Failover between sms providers on the real broker and database, with fake Twilio and
Vonage servers: where each error sends a notification, and the breaker's life.

The failover channel gets a hand-driven clock (its breakers' cool-down); the pipeline runs
as it does in production: receiver -> router -> notificator -> providers.
"""

from __future__ import annotations

import socket
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import generate_latest

from integration.channels.support import SHORT_TIMEOUT_MS, Clock, note, started
from integration.helpers import eventually, notification, running
from notifsvc import channels, metrics, providers, status
from notifsvc.breaker import State
from notifsvc.channels import TransientError
from notifsvc.channels.email import EmailChannel, EmailSettings, SmtpBackupChannel
from notifsvc.channels.sms import SmsChannel, SmsSettings
from notifsvc.channels.vonage import VonageChannel
from notifsvc.config import Settings
from notifsvc.db.store import Store
from notifsvc.dev.fakes.script import HANG, Reply
from notifsvc.dev.fakes.smtp import FakeSmtp, FakeSmtpBackup
from notifsvc.dev.fakes.twilio import FakeTwilio
from notifsvc.dev.fakes.vonage import FakeVonage
from notifsvc.dev.standins import StandIns
from notifsvc.notificator import Notificator
from notifsvc.providers import Failover
from notifsvc.router import Router

TO = "+14155552671"
COOLDOWN = 30.0


def closed_port() -> int:
    """A port nothing listens on: connections to it are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@dataclass(frozen=True)
class Fakes:
    twilio: FakeTwilio
    vonage: FakeVonage


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    async with FakeTwilio() as twilio, FakeVonage() as vonage:
        yield Fakes(twilio, vonage)


@pytest.fixture
async def settings(settings: Settings, fakes: Fakes) -> Settings:
    sms = replace(
        fakes.twilio.config(),
        providers="twilio,vonage",
        breaker_min_calls=4,
        breaker_failure_rate=0.5,
        breaker_cooldown_seconds=COOLDOWN,
    )
    return replace(settings, send_timeout_ms=SHORT_TIMEOUT_MS, inprocess_attempts=3).with_sections(
        sms, fakes.vonage.config()
    )


def sms(settings: Settings, clock: Clock) -> Failover:
    channel = providers.build(SmsChannel, settings, channels.PROVIDERS, clock)
    assert isinstance(channel, Failover)
    return channel


async def post_all(api: aiohttp.ClientSession, count: int) -> list[str]:
    uids = []
    for i in range(count):
        body = notification("sms", to=TO, txt=f"disk {i} almost full")
        async with api.post("/notification", json=body) as resp:
            assert resp.status == 202, await resp.text()
        uids.append(str(body["uuid"]))
    return uids


async def all_sent(store: Store, uids: list[str]) -> bool:
    rows = [await store.get(uuid.UUID(u)) for u in uids]
    return all(r is not None and r["state"] == "sent" for r in rows)


def vonage_refs(fakes: Fakes) -> Counter[str]:
    return Counter(m["client-ref"] for m in fakes.vonage.messages)


async def test_primary_refusing_connections_fails_over_once_and_opens_its_breaker(
    settings: Settings, api: aiohttp.ClientSession, store: Store, fakes: Fakes
) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    settings = settings.configure(SmsSettings, api_url=dead)
    channel = sms(settings, Clock())
    async with running(Router(settings)), running(Notificator(settings, channel)):
        uids = await post_all(api, 20)
        await eventually(lambda: all_sent(store, uids))
    assert vonage_refs(fakes) == Counter({u: 1 for u in uids})  # each once, none lost
    assert channel.states() == {"twilio": State.OPEN, "vonage": State.CLOSED}
    assert metrics.BREAKER_STATE.labels("sms", "twilio")._value.get() == 2
    async with api.get(f"/notification/{uids[-1]}/attempts") as resp:
        [attempt] = (await resp.json())["attempts"]
    assert attempt["provider"] == "vonage"
    assert attempt["message_id"] in {m["message-id"] for m in fakes.vonage.answered}


async def test_primary_timing_out_after_accepting_is_retried_there_not_duplicated(
    settings: Settings, api: aiohttp.ClientSession, store: Store, fakes: Fakes
) -> None:
    fakes.twilio.script.push(HANG)
    channel = sms(settings, Clock())
    async with running(Router(settings)), running(Notificator(settings, channel)):
        [uid] = await post_all(api, 1)
        await eventually(lambda: all_sent(store, [uid]))
    assert fakes.vonage.seen == []  # never through the secondary
    assert len(fakes.twilio.seen) == 2 and len(fakes.twilio.messages) == 1
    async with api.get(f"/notification/{uid}/attempts") as resp:
        attempts = (await resp.json())["attempts"]
    assert [(a["provider"], a["outcome"]) for a in attempts] == [
        ("twilio", "transient"),
        ("twilio", "sent"),
    ]
    assert attempts[1]["message_id"].startswith("SM")


async def test_primary_recovering_half_opens_then_closes_and_traffic_returns(
    settings: Settings, api: aiohttp.ClientSession, store: Store, fakes: Fakes
) -> None:
    fakes.twilio.script.push(*(Reply(503) for _ in range(4)))  # 5xx on submit: not taken
    clock = Clock()
    channel = sms(settings, clock)
    seen: list[State] = []
    breaker = channel.breakers["twilio"]
    notify = breaker.on_change

    def changed(b: Any, state: State) -> None:
        seen.append(state)
        assert notify is not None
        notify(b, state)

    breaker.on_change = changed
    async with running(Router(settings)), running(Notificator(settings, channel)):
        failing = await post_all(api, 4)  # each answered 503, then sent by the secondary
        await eventually(lambda: all_sent(store, failing))
        assert channel.states()["twilio"] is State.OPEN
        down = await post_all(api, 4)  # the open breaker sends nothing to the primary
        await eventually(lambda: all_sent(store, down))
        assert vonage_refs(fakes) == Counter({u: 1 for u in failing + down})
        assert len(fakes.twilio.seen) == 4
        clock.now += COOLDOWN  # the primary is back; the cool-down is over
        probe = await post_all(api, 1)  # half-open: the first call goes to the primary
        await eventually(lambda: all_sent(store, probe))
        assert seen == [State.OPEN, State.HALF_OPEN, State.CLOSED]
        up = await post_all(api, 5)
        await eventually(lambda: all_sent(store, up))
    assert channel.states()["twilio"] is State.CLOSED
    assert not set(vonage_refs(fakes)) & set(probe + up)  # traffic is back on the primary
    assert len(fakes.twilio.messages) == 6


# Where errors enter: which of them prove that the provider did not take the message.


async def test_http_errors_say_whether_the_provider_took_the_message(fakes: Fakes) -> None:
    config = replace(fakes.vonage.config(), api_url=f"http://127.0.0.1:{closed_port()}")
    cases: list[tuple[Settings, bool]] = [(Settings().with_sections(config), True)]
    for step, expected in ((Reply(200, "1"), True), (Reply(503), True), (Reply(500), True)):
        fakes.vonage.script.push(step)
        cases.append((Settings().with_sections(fakes.vonage.config()), expected))
    for settings, expected in cases:
        async with started(VonageChannel(settings)) as channel:
            with pytest.raises(TransientError) as caught:
                await channel.send(note("sms", TO))
            assert caught.value.failover is expected, caught.value


async def test_an_http_timeout_after_sending_is_not_failover(fakes: Fakes) -> None:
    fakes.vonage.script.push(HANG)
    settings = Settings(send_timeout_ms=SHORT_TIMEOUT_MS).with_sections(fakes.vonage.config())
    async with started(VonageChannel(settings)) as channel:
        with pytest.raises(TransientError) as caught:
            await channel.send(note("sms", TO))
    assert not caught.value.failover
    assert len(fakes.vonage.seen) == 1


async def test_smtp_errors_say_whether_the_relay_took_the_message() -> None:
    async with FakeSmtp() as smtp, FakeSmtpBackup() as backup:
        refused = replace(smtp.config(), port=closed_port())
        settings = Settings(send_timeout_ms=SHORT_TIMEOUT_MS).with_sections(refused)
        async with started(EmailChannel(settings)) as channel:
            with pytest.raises(TransientError) as caught:
                await channel.send(note("email", "alice@example.com"))
            assert caught.value.failover
        backup.script.push(Reply(451, "4.3.0 try later"), HANG)
        settings = Settings(send_timeout_ms=SHORT_TIMEOUT_MS).with_sections(backup.config())
        async with started(SmtpBackupChannel(settings)) as channel:
            with pytest.raises(TransientError) as caught:
                await channel.send(note("email", "alice@example.com"))
            assert caught.value.failover  # answered 451: not taken
            with pytest.raises(TransientError) as caught:
                await channel.send(note("email", "alice@example.com"))
            assert not caught.value.failover  # timed out during DATA: may have been taken
            await channel.send(n := note("email", "alice@example.com"))
        assert [m.message["Message-ID"] for m in backup.messages] == [f"<{n.uuid}@notifsvc>"]


async def test_email_fails_over_to_the_backup_relay() -> None:
    async with FakeSmtpBackup() as backup:
        c = backup.config()
        email = EmailSettings(
            host=c.host, port=closed_port(), from_=c.from_, tls="none", providers="smtp,smtp_backup"
        )
        settings = Settings(send_timeout_ms=2000).with_sections(email, backup.config())
        channel = channels.enabled(settings)["email"]
        async with started(channel):
            receipt = await channel.send(note("email", "alice@example.com"))
        assert receipt is not None and receipt.provider == "smtp_backup"
        assert len(backup.messages) == 1


async def exposition(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest())


async def test_status_shows_the_worst_breaker_state_of_the_notificators() -> None:
    app = web.Application()
    app.router.add_get("/metrics", exposition)
    runner = web.AppRunner(app)
    await runner.setup()
    port = closed_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        metrics.BREAKER_STATE.labels("email", "smtp_backup").set(int(State.HALF_OPEN))
        snap = status.Snapshot()
        url = f"http://127.0.0.1:{port}/metrics"
        await status.read_breakers([url, f"http://127.0.0.1:{closed_port()}/"], snap, explicit=True)
    finally:
        await runner.cleanup()
    assert snap.breakers[("email", "smtp_backup")] is State.HALF_OPEN
    assert len(snap.problems) == 1  # the URL that did not answer
    assert "email     smtp_backup   half-open" in status.render(snap)


def test_dev_starts_a_stand_in_for_every_listed_provider() -> None:
    settings = Settings().configure(SmsSettings, providers="twilio,vonage")
    standins = StandIns(settings, port=0)
    standins.start()
    try:
        assert set(standins.provider_fakes) >= {"twilio", "vonage"}
        applied = standins.apply(settings)
        sms = channels.enabled(applied)["sms"]
        assert isinstance(sms, Failover)
        assert [p.provider for p in sms.providers] == ["twilio", "vonage"]
        env = standins.env()
        assert env["NOTIFSVC_SMS_PROVIDERS"] == "twilio,vonage"
        assert env["NOTIFSVC_VONAGE_API_URL"] == standins.url
    finally:
        standins.stop()
