"""The sms channel against a fake Twilio Messages API."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

from integration.channels.support import SHORT_TIMEOUT_MS, note, started
from notifsvc.channels import PermanentError, Throttled, TransientError
from notifsvc.channels.sms import SmsChannel
from notifsvc.config import Secret, Settings
from notifsvc.dev.fakes.script import HANG, Reply, Script
from notifsvc.dev.fakes.twilio import FROM_NUMBER, FakeTwilio, decode_basic_auth, twilio_error

TO = "+14155552671"


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as fake:
        yield fake


def channel_for(fake: FakeTwilio, *, send_timeout_ms: int = 2000, **overrides: Any) -> SmsChannel:
    config = dataclasses.replace(fake.config(), **overrides)
    return SmsChannel(Settings(send_timeout_ms=send_timeout_ms).with_sections(config))


async def send(fake: FakeTwilio, txt: str = "disk almost full", **overrides: Any) -> None:
    async with started(channel_for(fake, **overrides)) as channel:
        await channel.send(note("sms", TO, txt, subject="ignored"))


async def test_delivers_form_encoded_with_basic_auth(twilio: FakeTwilio) -> None:
    body = "Plattenplatz 95 % & mehr ⚠"
    await send(twilio, body)
    assert twilio.messages == [{"To": TO, "From": FROM_NUMBER, "Body": body}]
    [seen] = twilio.seen
    assert seen.path == f"/2010-04-01/Accounts/{twilio.account_sid}/Messages.json"
    assert seen.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    auth = decode_basic_auth(seen.headers["Authorization"])
    assert auth == (twilio.account_sid, twilio.auth_token)


async def test_base_url_with_trailing_slash(twilio: FakeTwilio) -> None:
    await send(twilio, api_url=twilio.url + "/")
    assert len(twilio.messages) == 1


async def test_wrong_token_is_permanent(twilio: FakeTwilio) -> None:
    with pytest.raises(PermanentError, match="20003"):
        await send(twilio, auth_token=Secret("wrong"))
    assert twilio.messages == []


async def test_twilio_400_is_permanent_with_its_code_and_message(twilio: FakeTwilio) -> None:
    twilio.script.push(twilio_error(400, 21211, "Invalid 'To' Phone Number"))
    with pytest.raises(PermanentError, match=r"HTTP 400: Twilio error 21211: Invalid 'To'"):
        await send(twilio)
    assert twilio.messages == []


async def test_429_is_throttled_with_retry_after(twilio: FakeTwilio) -> None:
    throttled = twilio_error(429, 20429, "Too Many Requests")
    twilio.script.push(Reply(429, throttled.body, {"Retry-After": "7"}))
    with pytest.raises(Throttled, match="20429") as caught:
        await send(twilio)
    assert caught.value.retry_after == 7.0


async def test_500s_are_transient_then_it_succeeds(twilio: FakeTwilio) -> None:
    twilio.script.push(500, 503, 201)
    async with started(channel_for(twilio)) as channel:
        for _ in range(2):
            with pytest.raises(TransientError):
                await channel.send(note("sms", TO))
        await channel.send(note("sms", TO))
    assert len(twilio.seen) == 3
    assert len(twilio.messages) == 1


async def test_hang_times_out_as_transient(twilio: FakeTwilio) -> None:
    twilio.script.push(HANG)
    with pytest.raises(TransientError, match="twilio request failed"):
        await asyncio.wait_for(send(twilio, send_timeout_ms=SHORT_TIMEOUT_MS), 5)
    assert len(twilio.seen) == 1
    assert twilio.messages == []


async def test_no_server_is_transient() -> None:
    fake = FakeTwilio(script=Script())
    await fake.start()
    await fake.stop()  # the port is free again: connection refused
    with pytest.raises(TransientError):
        await send(fake)
