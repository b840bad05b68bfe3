"""The fcm channel against a fake FCM HTTP v1 API and its OAuth2 token endpoint.

The access token is real: google-auth signs the JWT-bearer grant with the fake's service
account key and the fake checks it before it issues a token. Time is a :class:`Clock` that
the channel and the fake share, so that a token's expiry is reached without waiting.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from integration.channels.support import SHORT_TIMEOUT_MS, Clock, note, started
from notifsvc.channels import PermanentError, Throttled, TransientError
from notifsvc.channels.fcm import REFRESH_MARGIN, SCOPE, FcmChannel
from notifsvc.config import Secret, Settings
from notifsvc.dev.fakes.fcm import (
    GOOGLE_TOKEN_URI,
    RECIPIENT,
    FakeFcm,
    fcm_error,
    invalid_token,
    oauth_error,
    quota_exceeded,
    service_account_key,
)
from notifsvc.dev.fakes.script import HANG, Reply
from notifsvc.model import Notification, Priority, Reason

TO = RECIPIENT


@pytest.fixture
async def fcm(clock: Clock) -> AsyncIterator[FakeFcm]:
    async with FakeFcm(clock=clock) as fake:
        yield fake


def channel_for(
    fake: FakeFcm, *, send_timeout_ms: int = 5_000, clock: Clock | None = None, **overrides: Any
) -> FcmChannel:
    config = dataclasses.replace(fake.config(), **overrides)
    settings = Settings(send_timeout_ms=send_timeout_ms).with_sections(config)
    return FcmChannel(settings, clock=clock or fake.clock)


def fcm_note(txt: str = "disk almost full", **kw: Any) -> Notification:
    return note("fcm", kw.pop("to", TO), txt, **kw)


async def send(fake: FakeFcm, n: Notification | None = None, **overrides: Any) -> None:
    async with started(channel_for(fake, **overrides)) as channel:
        await channel.send(n or fcm_note())


def bearer(fake: FakeFcm, index: int = -1) -> str:
    scheme, _, token = fake.seen[index].headers["Authorization"].partition(" ")
    assert scheme == "Bearer"
    return token


async def test_delivers_the_message_with_a_granted_access_token(fcm: FakeFcm) -> None:
    n = fcm_note("Plattenplatz 95 % ⚠", subject="Disk", priority=Priority.HIGH)
    await send(fcm, n)
    assert fcm.messages == [
        {
            "token": TO,
            "notification": {"title": "Disk", "body": "Plattenplatz 95 % ⚠"},
            "data": {"uuid": str(n.uuid)},
            "android": {"priority": "HIGH"},
            "apns": {"headers": {"apns-priority": "10"}},
        }
    ]
    [seen] = fcm.seen
    assert seen.path == f"/v1/projects/{fcm.project_id}/messages:send"
    assert seen.headers["Content-Type"] == "application/json; charset=UTF-8"
    assert bearer(fcm) in fcm.tokens
    [grant] = fcm.grants
    assert grant["iss"] == fcm.client_email
    assert grant["scope"] == SCOPE
    assert grant["aud"] == GOOGLE_TOKEN_URI


async def test_normal_priority_without_subject(fcm: FakeFcm) -> None:
    await send(fcm, fcm_note("disk almost full", priority=Priority.LOW))
    [message] = fcm.messages
    assert message["notification"] == {"body": "disk almost full"}
    assert message["android"] == {"priority": "NORMAL"}
    assert message["apns"] == {"headers": {"apns-priority": "5"}}


async def test_the_fake_shows_the_delivery_in_the_outbox(fcm: FakeFcm) -> None:
    n = fcm_note("disk almost full", subject="Disk")
    await send(fcm, n)
    [delivery] = fcm.deliveries()
    assert (delivery.channel, delivery.to, delivery.text) == ("fcm", TO, "disk almost full")
    assert (delivery.subject, delivery.uuid) == ("Disk", str(n.uuid))


async def test_base_url_with_trailing_slash_and_an_explicit_project(fcm: FakeFcm) -> None:
    await send(fcm, api_url=fcm.url + "/", project_id=fcm.project_id)
    assert len(fcm.messages) == 1


async def test_another_project_is_permanent(fcm: FakeFcm) -> None:
    with pytest.raises(PermanentError, match="HTTP 403: PERMISSION_DENIED") as caught:
        await send(fcm, project_id="someone-else")
    assert caught.value.reason is None
    assert fcm.messages == []


async def test_concurrent_sends_share_one_access_token(fcm: FakeFcm) -> None:
    settings = Settings(send_concurrency=64).with_sections(fcm.config())
    async with started(FcmChannel(settings, clock=fcm.clock)) as channel:
        await asyncio.gather(*(channel.send(fcm_note(f"n{i}")) for i in range(64)))
    assert len(fcm.messages) == 64
    assert len(fcm.grants) == 1
    assert {s.headers["Authorization"] for s in fcm.seen} == {f"Bearer {bearer(fcm)}"}


# --- token lifecycle -----------------------------------------------------------------------


async def test_an_unregistered_token_is_permanent_token_invalid(fcm: FakeFcm) -> None:
    fcm.unregistered.add(TO)
    with pytest.raises(PermanentError) as caught:
        await send(fcm)
    assert caught.value.reason is Reason.TOKEN_INVALID
    assert str(caught.value) == (
        "token_invalid: fcm answered HTTP 404: UNREGISTERED: Requested entity was not found."
    )
    assert fcm.messages == []


async def test_a_token_fcm_finds_malformed_is_token_invalid(fcm: FakeFcm) -> None:
    fcm.script.push(invalid_token())
    with pytest.raises(PermanentError, match=r"^token_invalid: .*INVALID_ARGUMENT") as caught:
        await send(fcm)
    assert caught.value.reason is Reason.TOKEN_INVALID


async def test_a_token_of_another_sender_is_token_invalid(fcm: FakeFcm) -> None:
    mismatch = fcm_error(
        403, "PERMISSION_DENIED", "SenderId mismatch", error_code="SENDER_ID_MISMATCH"
    )
    fcm.script.push(mismatch)
    with pytest.raises(PermanentError) as caught:
        await send(fcm)
    assert caught.value.reason is Reason.TOKEN_INVALID


async def test_an_invalid_argument_not_about_the_token_is_permanent_without_reason(
    fcm: FakeFcm,
) -> None:
    fcm.script.push(fcm_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument."))
    with pytest.raises(PermanentError, match="HTTP 400: INVALID_ARGUMENT") as caught:
        await send(fcm)
    assert caught.value.reason is None


# --- throttling, server errors, hangs ------------------------------------------------------


async def test_quota_exceeded_is_throttled_with_retry_after(fcm: FakeFcm) -> None:
    fcm.script.push(quota_exceeded(retry_after=7))
    with pytest.raises(Throttled, match="QUOTA_EXCEEDED") as caught:
        await send(fcm)
    assert caught.value.retry_after == 7.0


async def test_5xx_are_transient_then_it_succeeds(fcm: FakeFcm) -> None:
    unavailable = fcm_error(503, "UNAVAILABLE", "The service is unavailable.")
    fcm.script.push(Reply(500, "<html>Error 500</html>"), unavailable)
    async with started(channel_for(fcm)) as channel:
        for _ in range(2):
            with pytest.raises(TransientError) as caught:
                await channel.send(fcm_note())
            assert not isinstance(caught.value, Throttled)
        await channel.send(fcm_note())
    assert len(fcm.seen) == 3
    assert len(fcm.messages) == 1
    assert len(fcm.grants) == 1


async def test_hang_times_out_as_transient(fcm: FakeFcm) -> None:
    fcm.script.push(HANG)
    with pytest.raises(TransientError, match="fcm request failed"):
        await asyncio.wait_for(send(fcm, send_timeout_ms=SHORT_TIMEOUT_MS), 5)
    assert len(fcm.seen) == 1
    assert fcm.messages == []


async def test_no_server_is_transient(clock: Clock) -> None:
    fake = FakeFcm(clock=clock)
    await fake.start()
    config = fake.config()
    await fake.stop()  # the port is free again: connection refused
    channel = FcmChannel(Settings(send_timeout_ms=2_000).with_sections(config), clock=clock)
    async with started(channel):
        with pytest.raises(TransientError, match="fcm could not get an access token"):
            await channel.send(fcm_note())


async def test_an_echoed_access_token_is_scrubbed_from_errors(fcm: FakeFcm) -> None:
    async with started(channel_for(fcm)) as channel:
        await channel.send(fcm_note())
        token = bearer(fcm)
        fcm.script.push(Reply(500, f"upstream refused Bearer {token}"))
        with pytest.raises(TransientError) as caught:
            await channel.send(fcm_note())
    assert token not in str(caught.value)
    assert "[redacted]" in str(caught.value)


# --- the access token ----------------------------------------------------------------------


async def test_the_access_token_is_refreshed_before_it_expires(fcm: FakeFcm, clock: Clock) -> None:
    async with started(channel_for(fcm)) as channel:
        await channel.send(fcm_note())
        first = bearer(fcm)
        clock.now += fcm.token_lifetime - REFRESH_MARGIN - 1
        await channel.send(fcm_note())
        assert bearer(fcm) == first
        clock.now += 2  # fewer than five minutes left: a new token, while the old one works
        assert fcm.tokens[first] > clock.now
        await channel.send(fcm_note())
        assert bearer(fcm) != first
        clock.now += fcm.token_lifetime - REFRESH_MARGIN - 2  # the first one has expired
        await channel.send(fcm_note())
    assert len(fcm.messages) == 4
    assert len(fcm.grants) == 2


async def test_a_refused_access_token_is_dropped_and_the_next_send_gets_a_new_one(
    fcm: FakeFcm,
) -> None:
    async with started(channel_for(fcm)) as channel:
        await channel.send(fcm_note())
        first = bearer(fcm)
        fcm.expire_tokens()  # revoked, or the clocks disagree
        with pytest.raises(TransientError, match="HTTP 401: UNAUTHENTICATED") as caught:
            await channel.send(fcm_note())
        assert not isinstance(caught.value, Throttled)
        await channel.send(fcm_note())
        assert bearer(fcm) != first
    assert len(fcm.grants) == 2
    assert len(fcm.messages) == 2


async def test_a_key_the_token_endpoint_refuses_is_transient_and_never_quoted(
    fcm: FakeFcm,
) -> None:
    info = fcm.key_file(service_account_key())  # signed with a key the fake does not know
    credentials = orjson.dumps(info).decode()
    with pytest.raises(TransientError, match="invalid_grant: Invalid JWT Signature") as caught:
        await send(fcm, credentials=Secret(credentials))
    assert "PRIVATE KEY" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert fcm.seen == []
    assert fcm.grants == []


async def test_a_failing_token_endpoint_is_transient_then_it_recovers(fcm: FakeFcm) -> None:
    fcm.token_script.push(oauth_error("invalid_grant", "Invalid grant: account not found"))
    async with started(channel_for(fcm)) as channel:
        with pytest.raises(TransientError, match="account not found"):
            await channel.send(fcm_note())
        await channel.send(fcm_note())
    assert len(fcm.messages) == 1


async def test_a_hanging_token_endpoint_times_out_as_transient(fcm: FakeFcm) -> None:
    fcm.token_script.push(HANG)
    with pytest.raises(TransientError, match="access token"):
        await asyncio.wait_for(send(fcm, send_timeout_ms=SHORT_TIMEOUT_MS), 5)
    assert fcm.seen == []


async def test_a_failed_early_refresh_keeps_sending_with_the_current_token(
    fcm: FakeFcm, clock: Clock
) -> None:
    async with started(channel_for(fcm)) as channel:
        await channel.send(fcm_note())
        first = bearer(fcm)
        clock.now += fcm.token_lifetime - REFRESH_MARGIN + 1
        fcm.token_script.push(oauth_error("invalid_grant", "Invalid grant: account not found"))
        await channel.send(fcm_note())
        assert bearer(fcm) == first
    assert len(fcm.messages) == 2
    assert len(fcm.grants) == 1
