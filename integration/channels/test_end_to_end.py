"""Each provider channel through the real pipeline: receiver -> router -> notificator -> fake.

The module overrides ``settings`` so that the receiver (``api``), the router and the
notificators all see the channels configured against the fakes.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from integration.helpers import eventually, notification, running
from notifsvc.channels import AnyChannel
from notifsvc.channels.email import EmailChannel
from notifsvc.channels.slack import SlackChannel
from notifsvc.channels.sms import SmsChannel
from notifsvc.config import Settings
from notifsvc.db.store import Store
from notifsvc.dev.fakes.slack import FakeSlack
from notifsvc.dev.fakes.smtp import FakeSmtp
from notifsvc.dev.fakes.twilio import FakeTwilio
from notifsvc.notificator import Notificator
from notifsvc.router import Router


@dataclass(frozen=True)
class Fakes:
    smtp: FakeSmtp
    twilio: FakeTwilio
    slack: FakeSlack


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    async with (
        FakeSmtp(username="notifier", password="hunter2") as smtp,
        FakeTwilio() as twilio,
        FakeSlack() as slack,
    ):
        yield Fakes(smtp, twilio, slack)


@pytest.fixture
async def settings(settings: Settings, fakes: Fakes) -> Settings:
    configs = (fakes.smtp.config(), fakes.twilio.config(), fakes.slack.config())
    configured = settings.with_sections(*configs)
    assert configured.max_attempts >= 3
    return configured


async def deliver(
    settings: Settings,
    api: aiohttp.ClientSession,
    store: Store,
    channel: AnyChannel,
    body: dict[str, object],
) -> dict[str, Any]:
    """Post ``body``, run the router and ``channel``'s notificator until it is finished."""
    uid = uuid.UUID(str(body["uuid"]))

    async def finished() -> dict[str, Any] | None:
        row = await store.get(uid)
        return row if row is not None and row["state"] in {"sent", "failed"} else None

    async with running(Router(settings)), running(Notificator(settings, channel)):
        async with api.post("/notification", json=body) as resp:
            assert resp.status == 202, await resp.text()
        row = await eventually(finished)
    assert row is not None
    return row


async def test_email(
    settings: Settings, api: aiohttp.ClientSession, store: Store, fakes: Fakes
) -> None:
    body = notification("EMAIL", to="alice@example.com", subject="Disk", txt="90% full")
    row = await deliver(settings, api, store, EmailChannel(settings), body)
    assert (row["state"], row["attempts"]) == ("sent", 1)
    [mail] = fakes.smtp.messages
    assert mail.login == "notifier"
    assert mail.rcpt_tos == ("alice@example.com",)
    assert mail.message["Message-ID"] == f"<{body['uuid']}@notifsvc>"
    assert mail.message["Subject"] == "Disk"


async def test_sms(
    settings: Settings, api: aiohttp.ClientSession, store: Store, fakes: Fakes
) -> None:
    body = notification("sms", to="+14155552671", txt="disk almost full")
    row = await deliver(settings, api, store, SmsChannel(settings), body)
    assert (row["state"], row["attempts"]) == ("sent", 1)
    assert [(m["To"], m["Body"]) for m in fakes.twilio.messages] == [
        ("+14155552671", "disk almost full")
    ]


async def test_slack(
    settings: Settings, api: aiohttp.ClientSession, store: Store, fakes: Fakes
) -> None:
    body = notification("Slack", to="#ops-alerts", txt="deploy finished")
    row = await deliver(settings, api, store, SlackChannel(settings), body)
    assert (row["state"], row["attempts"]) == ("sent", 1)
    assert fakes.slack.messages == [{"channel": "#ops-alerts", "text": "deploy finished"}]


async def test_provider_failing_twice_then_succeeding_delivers_exactly_once(
    settings: Settings, api: aiohttp.ClientSession, store: Store, fakes: Fakes
) -> None:
    fakes.twilio.script.push(500, 500)
    body = notification("sms", to="+14155552671", txt="third time lucky")
    row = await deliver(settings, api, store, SmsChannel(settings), body)
    assert (row["state"], row["attempts"]) == ("sent", 3)
    assert len(fakes.twilio.seen) == 3
    assert [m["Body"] for m in fakes.twilio.messages] == ["third time lucky"]
