"""The apns channel against a fake APNs: HTTP/2 over TLS, ES256 provider tokens."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import orjson
import pytest

from integration.channels.support import SHORT_TIMEOUT_MS, START, Clock, note, started
from notifsvc.channels import DeliveryError, PermanentError, Throttled, TransientError
from notifsvc.channels.apns import TOKEN_REFRESH_SECONDS, ApnsChannel
from notifsvc.config import Secret, Settings
from notifsvc.dev.fakes.apns import DEVICE_TOKEN, KEY_ID, TEAM_ID, TOPIC, FakeApns, apns_error
from notifsvc.dev.fakes.script import HANG, Script
from notifsvc.model import Priority, Reason


@pytest.fixture
async def apns(clock: Clock) -> AsyncIterator[FakeApns]:
    async with FakeApns(clock=clock) as fake:
        yield fake


def channel_for(
    fake: FakeApns,
    clock: Clock,
    *,
    send_timeout_ms: int = 2000,
    send_concurrency: int = 64,
    **overrides: Any,
) -> ApnsChannel:
    config = dataclasses.replace(fake.config(), **overrides)
    settings = Settings(send_timeout_ms=send_timeout_ms, send_concurrency=send_concurrency)
    return ApnsChannel(settings.with_sections(config), clock=clock)


async def send(
    fake: FakeApns, clock: Clock, txt: str = "disk almost full", **overrides: Any
) -> None:
    async with started(channel_for(fake, clock, **overrides)) as channel:
        await channel.send(note("apns", DEVICE_TOKEN, txt))


async def refused(fake: FakeApns, clock: Clock, **overrides: Any) -> DeliveryError:
    """The error a send raises; it never shows the provider token."""
    with pytest.raises(DeliveryError) as caught:
        await send(fake, clock, **overrides)
    sent = [p.headers.get("authorization", "").partition(" ")[2] for p in fake.seen]
    assert sent and all(token and token not in str(caught.value) for token in sent)
    return caught.value


async def test_delivers_an_alert_over_http2_with_an_es256_provider_token(
    apns: FakeApns, clock: Clock
) -> None:
    n = note("apns", DEVICE_TOKEN, "Platte voll ⚠", subject="Alarm", priority=Priority.HIGH)
    async with started(channel_for(apns, clock)) as channel:
        await channel.send(n)
    [push] = apns.messages
    assert push.http_version == "2"
    assert push.path == f"/3/device/{DEVICE_TOKEN}"
    assert push.body == '{"aps":{"alert":{"title":"Alarm","body":"Platte voll ⚠"}}}'.encode()
    assert {k: v for k, v in push.headers.items() if k.startswith("apns-")} == {
        "apns-topic": TOPIC,
        "apns-push-type": "alert",
        "apns-priority": "10",
        "apns-expiration": "0",
        "apns-id": str(n.uuid),
    }
    scheme, _, token = push.headers["authorization"].partition(" ")
    assert scheme == "bearer"
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": KEY_ID}
    public = apns.signing_key.public_key()
    claims = jwt.decode(token, public, algorithms=["ES256"], options={"verify_iat": False})
    assert claims == {"iss": TEAM_ID, "iat": int(START)}
    assert apns.provider_tokens == [token]


async def test_low_priority_and_a_ttl(apns: FakeApns, clock: Clock) -> None:
    async with started(channel_for(apns, clock, ttl_seconds=600)) as channel:
        await channel.send(note("apns", DEVICE_TOKEN, "x", priority=Priority.LOW))
    [push] = apns.messages
    assert push.headers["apns-priority"] == "5"
    assert push.headers["apns-expiration"] == "1700000600"  # accepted_at + 600
    assert push.payload == {"aps": {"alert": {"body": "x"}}}


async def test_64_concurrent_sends_share_one_connection_and_one_token(
    apns: FakeApns, clock: Clock
) -> None:
    async with started(channel_for(apns, clock)) as channel:
        notes = [note("apns", DEVICE_TOKEN, f"message {i}") for i in range(64)]
        await asyncio.gather(*(channel.send(n) for n in notes))
    assert len(apns.messages) == 64
    assert {p.headers["apns-id"] for p in apns.messages} == {str(n.uuid) for n in notes}
    assert len({p.client for p in apns.seen}) == 1  # multiplexed on one HTTP/2 connection
    assert len(apns.provider_tokens) == 1


async def test_the_fake_refuses_http_1_1_as_apns_does(apns: FakeApns, clock: Clock) -> None:
    tls = ssl.create_default_context(cafile=str(apns.ca_file))
    async with httpx.AsyncClient(verify=tls) as client:  # HTTP/1.1 only
        response = await client.post(f"{apns.url}/3/device/{DEVICE_TOKEN}", content=b"{}")
    assert response.http_version == "HTTP/1.1"
    assert response.status_code == 400
    assert "HTTP/2" in response.json()["reason"]
    assert apns.messages == []


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "reason"),
    [
        ("GET", f"/3/device/{DEVICE_TOKEN}", {}, 405, "MethodNotAllowed"),
        ("POST", f"/2/device/{DEVICE_TOKEN}", {}, 404, "BadPath"),
        ("POST", f"/3/device/{DEVICE_TOKEN}", {}, 403, "MissingProviderToken"),
        ("POST", f"/3/device/{DEVICE_TOKEN}", {"authorization": "bearer x"}, 403, "Invalid"),
    ],
)
async def test_the_fake_refuses_what_apns_refuses(
    apns: FakeApns, method: str, path: str, headers: dict[str, str], status: int, reason: str
) -> None:
    tls = ssl.create_default_context(cafile=str(apns.ca_file))
    async with httpx.AsyncClient(verify=tls, http1=False, http2=True) as client:
        response = await client.request(method, apns.url + path, headers=headers, content=b"{}")
    assert response.http_version == "HTTP/2"
    assert response.status_code == status
    assert response.json()["reason"].startswith(reason)


async def test_an_unregistered_device_token_is_token_invalid(apns: FakeApns, clock: Clock) -> None:
    apns.unregistered.add(DEVICE_TOKEN)
    error = await refused(apns, clock)
    assert isinstance(error, PermanentError)
    assert error.reason is Reason.TOKEN_INVALID
    assert str(error).startswith("token_invalid: apns answered HTTP 410: Unregistered")
    assert "inactive since 2027-01-15T08:00:00+00:00" in str(error)  # the fake's clock
    assert apns.messages == []


@pytest.mark.parametrize("reason", ["BadDeviceToken", "DeviceTokenNotForTopic"])
async def test_a_device_token_apns_refuses_is_token_invalid(
    apns: FakeApns, clock: Clock, reason: str
) -> None:
    apns.script.push(apns_error(400, reason))
    error = await refused(apns, clock)
    assert isinstance(error, PermanentError)
    assert error.reason is Reason.TOKEN_INVALID
    assert reason in str(error)


async def test_429_is_throttled_with_retry_after(apns: FakeApns, clock: Clock) -> None:
    apns.script.push(apns_error(429, "TooManyRequests", retry_after=7))
    error = await refused(apns, clock)
    assert isinstance(error, Throttled)
    assert error.retry_after == 7.0
    assert "TooManyRequests" in str(error)


async def test_500s_are_transient_then_it_succeeds(apns: FakeApns, clock: Clock) -> None:
    apns.script.push(apns_error(500, "InternalServerError"), apns_error(503, "ServiceUnavailable"))
    async with started(channel_for(apns, clock)) as channel:
        for _ in range(2):
            with pytest.raises(TransientError) as caught:
                await channel.send(note("apns", DEVICE_TOKEN))
            assert not isinstance(caught.value, Throttled)
        await channel.send(note("apns", DEVICE_TOKEN))
    assert len(apns.seen) == 3
    assert len(apns.messages) == 1


async def test_hang_times_out_as_transient(apns: FakeApns, clock: Clock) -> None:
    apns.script.push(HANG)
    channel = channel_for(apns, clock, send_timeout_ms=SHORT_TIMEOUT_MS)
    async with started(channel):
        with pytest.raises(TransientError, match="apns request failed: TimeoutError"):
            await asyncio.wait_for(channel.send(note("apns", DEVICE_TOKEN)), 5)
        await channel.send(note("apns", DEVICE_TOKEN))  # the connection is still good
    assert len(apns.seen) == 2
    assert len(apns.messages) == 1


async def test_no_server_is_transient(clock: Clock) -> None:
    fake = FakeApns(script=Script(), clock=clock)
    await fake.start()
    async with started(channel_for(fake, clock)) as channel:
        await fake.stop()  # the port is free again: connection refused
        with pytest.raises(TransientError, match="apns request failed"):
            await channel.send(note("apns", DEVICE_TOKEN))


async def test_the_fake_stops_at_once_under_an_open_connection(clock: Clock) -> None:
    """An idle HTTP/2 client never answers TLS close_notify; the fake does not wait for it."""
    fake = FakeApns(clock=clock)
    await fake.start()
    async with started(channel_for(fake, clock)) as channel:
        await channel.send(note("apns", DEVICE_TOKEN))
        await asyncio.wait_for(fake.stop(), 5)  # asyncio would wait 30 s per connection
        with pytest.raises(TransientError, match="apns request failed"):
            await channel.send(note("apns", DEVICE_TOKEN))
    assert len(fake.messages) == 1


async def test_a_server_with_another_ca_is_not_trusted(apns: FakeApns, clock: Clock) -> None:
    with pytest.raises(TransientError, match="apns request failed: ConnectError"):
        await send(apns, clock, ca_file=None)  # the system's CAs: the fake's is not among them
    assert apns.seen == []


async def test_the_token_is_reused_and_replaced_before_its_hour_is_up(
    apns: FakeApns, clock: Clock
) -> None:
    async with started(channel_for(apns, clock)) as channel:
        await channel.send(note("apns", DEVICE_TOKEN))
        clock.now += TOKEN_REFRESH_SECONDS - 1
        await channel.send(note("apns", DEVICE_TOKEN))
        assert len(apns.provider_tokens) == 1
        clock.now += 1
        await channel.send(note("apns", DEVICE_TOKEN))
        clock.now += 15 * 60  # the first token would be 65 minutes old now
        await channel.send(note("apns", DEVICE_TOKEN))
    assert len(apns.messages) == 4
    assert len(apns.provider_tokens) == 2
    public = apns.signing_key.public_key()
    iats = [
        jwt.decode(t, public, algorithms=["ES256"], options={"verify_iat": False})["iat"]
        for t in apns.provider_tokens
    ]
    assert iats == [int(START), int(START + TOKEN_REFRESH_SECONDS)]


async def test_a_stale_token_is_dropped_once_and_the_next_send_signs_a_new_one(
    clock: Clock,
) -> None:
    apns_clock = Clock()
    async with (
        FakeApns(clock=apns_clock) as apns,
        started(channel_for(apns, clock)) as channel,
    ):
        await channel.send(note("apns", DEVICE_TOKEN))
        apns_clock.now += 3601  # APNs' clock says the token is over an hour old
        sends = [channel.send(note("apns", DEVICE_TOKEN)) for _ in range(8)]
        results = await asyncio.gather(*sends, return_exceptions=True)
        assert all(isinstance(r, TransientError) for r in results)
        assert all("ExpiredProviderToken" in str(r) for r in results)
        clock.now += 600  # ours, 10 minutes on: the token is young, but it was refused
        await channel.send(note("apns", DEVICE_TOKEN))
        await channel.send(note("apns", DEVICE_TOKEN))
    assert len(apns.messages) == 3
    assert len(apns.provider_tokens) == 2  # the eight refusals cost one new token


async def test_a_new_token_within_20_minutes_is_throttled_by_apns(
    apns: FakeApns, clock: Clock
) -> None:
    apns.script.push(apns_error(403, "ExpiredProviderToken"))
    async with started(channel_for(apns, clock)) as channel:
        with pytest.raises(TransientError, match="ExpiredProviderToken"):
            await channel.send(note("apns", DEVICE_TOKEN))  # the token is dropped
        with pytest.raises(Throttled, match="TooManyProviderTokenUpdates"):
            await channel.send(note("apns", DEVICE_TOKEN))
    assert len(apns.provider_tokens) == 1


async def test_a_key_apns_does_not_know_is_transient_and_never_shown(
    apns: FakeApns, clock: Clock
) -> None:
    other = FakeApns()  # never started: only its key is used
    error = await refused(apns, clock, key=Secret(other.key_pem))
    assert isinstance(error, TransientError)
    assert "InvalidProviderToken" in str(error)


async def test_a_topic_apns_does_not_allow_is_permanent(apns: FakeApns, clock: Clock) -> None:
    error = await refused(apns, clock, topic="com.example.other")
    assert isinstance(error, PermanentError) and error.reason is None
    assert "HTTP 400: TopicDisallowed" in str(error)


async def test_a_payload_over_4096_bytes_is_permanent(apns: FakeApns, clock: Clock) -> None:
    error = await refused(apns, clock, txt="€" * 1400)  # past validation: APNs refuses it
    assert isinstance(error, PermanentError) and error.reason is None
    assert "HTTP 413: PayloadTooLarge" in str(error)


async def test_base_url_with_trailing_slash(apns: FakeApns, clock: Clock) -> None:
    async with started(channel_for(apns, clock, api_url=apns.url + "/")) as channel:
        await channel.send(note("apns", DEVICE_TOKEN))
    assert len(apns.messages) == 1


async def test_deliveries_show_what_the_device_would(apns: FakeApns, clock: Clock) -> None:
    n = note("apns", DEVICE_TOKEN, "disk almost full", subject="Alert")
    async with started(channel_for(apns, clock)) as channel:
        await channel.send(n)
    [delivery] = apns.deliveries()
    assert (delivery.channel, delivery.to, delivery.text) == ("apns", DEVICE_TOKEN, n.txt)
    assert (delivery.subject, delivery.uuid) == ("Alert", str(n.uuid))
    assert delivery.details["apns-topic"] == TOPIC
    assert orjson.loads(apns.messages[0].body)["aps"]["alert"]["title"] == "Alert"
