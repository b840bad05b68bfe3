"""The webpush channel against a fake push service that decrypts every payload with the
subscription's private key: what the browser receives is exactly what was sent."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from integration.channels.support import SHORT_TIMEOUT_MS, Clock, note, started
from notifsvc.channels import PermanentError, Throttled, TransientError
from notifsvc.channels.webpush import (
    MAX_BODY_BYTES,
    MAX_PAYLOAD_BYTES,
    TOKEN_LIFETIME,
    TOKEN_REFRESH_MARGIN,
    WebPushChannel,
    payload,
    public_key_b64,
)
from notifsvc.config import Settings
from notifsvc.dev.fakes.script import HANG, Reply, Script
from notifsvc.dev.fakes.webpush import SUBJECT, FakePushService, push_error
from notifsvc.model import Priority, Reason, reason_of


@pytest.fixture
async def push(clock: Clock) -> AsyncIterator[FakePushService]:
    async with FakePushService(clock=clock) as fake:
        yield fake


def channel_for(
    fake: FakePushService, clock: Clock, *, send_timeout_ms: int = 2000, **overrides: Any
) -> WebPushChannel:
    config = dataclasses.replace(fake.config(), **overrides)
    settings = Settings(send_timeout_ms=send_timeout_ms).with_sections(config)
    return WebPushChannel(settings, clock=clock)


async def send(fake: FakePushService, clock: Clock, to: str, **overrides: Any) -> None:
    async with started(channel_for(fake, clock, **overrides)) as channel:
        await channel.send(note("webpush", to))


def token_of(authorization: str) -> str:
    return authorization.removeprefix("vapid t=").partition(", k=")[0]


async def test_the_browser_decrypts_exactly_what_was_sent(
    push: FakePushService, clock: Clock
) -> None:
    to = push.subscribe()
    n = note("webpush", to, "Plattenplatz 95 % & mehr ⚠", subject="Disk", priority=Priority.HIGH)
    channel = channel_for(push, clock, ttl_seconds=3600)
    assert channel.validate(n) == []
    async with started(channel):
        await channel.send(n)
    assert push.messages == [{"title": "Disk", "body": n.txt, "uuid": str(n.uuid)}]
    [seen] = push.seen
    assert seen.path == orjson.loads(to)["endpoint"].removeprefix(push.url)
    assert payload(n) not in seen.body  # encrypted
    assert {k: seen.headers[k] for k in ("Content-Encoding", "TTL", "Urgency")} == {
        "Content-Encoding": "aes128gcm",
        "TTL": "3600",
        "Urgency": "high",
    }
    authorization = seen.headers["Authorization"]
    assert authorization.endswith(f", k={push.application_server_key}")
    claims = jwt.decode(
        token_of(authorization),
        push.vapid_key.public_key(),
        algorithms=["ES256"],
        audience=push.url,
        options={"verify_exp": False},
    )
    assert claims == {"aud": push.url, "exp": int(clock.now) + TOKEN_LIFETIME, "sub": SUBJECT}
    [pushed] = push.pushes
    assert (pushed.subscription, pushed.ttl, pushed.urgency, pushed.topic) == (
        to,
        3600,
        "high",
        None,
    )
    [delivery] = push.deliveries()
    assert (delivery.channel, delivery.to, delivery.text, delivery.subject, delivery.uuid) == (
        "webpush",
        to,
        n.txt,
        "Disk",
        str(n.uuid),
    )


async def test_the_largest_payload_fills_the_4096_bytes_and_is_delivered(
    push: FakePushService, clock: Clock
) -> None:
    to = push.subscribe()
    empty = len(payload(note("webpush", to, "", subject="Full")))
    n = note("webpush", to, "x" * (MAX_PAYLOAD_BYTES - empty), subject="Full")
    channel = channel_for(push, clock)
    assert channel.validate(n) == []
    async with started(channel):
        await channel.send(n)
    assert len(push.seen[0].body) == MAX_BODY_BYTES
    assert push.messages[0]["body"] == n.txt


async def test_each_browser_gets_its_own_encryption(push: FakePushService, clock: Clock) -> None:
    one, two = push.subscribe(), push.subscribe()
    async with started(channel_for(push, clock)) as channel:
        await channel.send(note("webpush", one, "for one"))
        await channel.send(note("webpush", two, "for two"))
    assert [m["body"] for m in push.messages] == ["for one", "for two"]


async def test_an_expired_subscription_is_token_invalid(
    push: FakePushService, clock: Clock
) -> None:
    to = push.subscribe()
    push.expire(to)
    with pytest.raises(PermanentError, match="HTTP 410") as caught:
        await send(push, clock, to)
    assert caught.value.reason is Reason.TOKEN_INVALID
    assert reason_of(str(caught.value)) is Reason.TOKEN_INVALID
    assert push.messages == []


async def test_an_unknown_subscription_is_token_invalid(
    push: FakePushService, clock: Clock
) -> None:
    other = FakePushService()
    other.serve_at(push.port)  # same origin, but the subscription was never made here
    with pytest.raises(PermanentError, match="HTTP 404") as caught:
        await send(push, clock, other.subscribe())
    assert caught.value.reason is Reason.TOKEN_INVALID


async def test_a_subscription_made_for_another_vapid_key_is_403_and_logged(
    push: FakePushService, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    someone_else = public_key_b64(ec.generate_private_key(ec.SECP256R1()))
    to = push.subscribe(application_server_key=someone_else)
    with (
        caplog.at_level(logging.WARNING, logger="notifsvc.channels.webpush"),
        pytest.raises(PermanentError, match="HTTP 403: VAPID authorization refused") as caught,
    ):
        await send(push, clock, to)
    assert caught.value.reason is None
    assert "refused our VAPID authorization" in caplog.text
    endpoint_id = orjson.loads(to)["endpoint"].rsplit("/", 1)[1]
    token = token_of(push.seen[0].headers["Authorization"])
    for text in (str(caught.value), caplog.text):
        assert endpoint_id not in text and token not in text


async def test_another_vapid_key_is_refused_and_a_forged_jwt_too(
    push: FakePushService, clock: Clock
) -> None:
    to = push.subscribe()
    wrong = FakePushService().config().vapid_private_key
    with pytest.raises(PermanentError, match="HTTP 403"):  # k is not the subscription's key
        await send(push, clock, to, vapid_private_key=wrong)
    async with aiohttp.ClientSession() as http:
        assert await _forged_push(http, push, to) == 401  # signed by another key than k
    assert push.messages == []


async def _forged_push(http: aiohttp.ClientSession, fake: FakePushService, to: str) -> int:
    other = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode({"aud": fake.url, "exp": 1_800_000_100, "sub": SUBJECT}, other, "ES256")
    headers = {
        "Authorization": f"vapid t={token}, k={fake.application_server_key}",
        "Content-Encoding": "aes128gcm",
        "TTL": "60",
    }
    endpoint = orjson.loads(to)["endpoint"]
    async with http.post(endpoint, data=b"x" * 100, headers=headers) as resp:
        return resp.status


async def test_429_is_throttled_with_retry_after(push: FakePushService, clock: Clock) -> None:
    push.script.push(Reply(429, {"errno": 201}, {"Retry-After": "12"}))
    with pytest.raises(Throttled, match="HTTP 429") as caught:
        await send(push, clock, push.subscribe())
    assert caught.value.retry_after == 12.0


async def test_5xx_are_transient_then_it_succeeds(push: FakePushService, clock: Clock) -> None:
    to = push.subscribe()
    push.script.push(500, Reply(503, None, {"Retry-After": "3"}))
    async with started(channel_for(push, clock)) as channel:
        with pytest.raises(TransientError):
            await channel.send(note("webpush", to))
        with pytest.raises(TransientError) as caught:
            await channel.send(note("webpush", to))
        assert caught.value.retry_after == 3.0
        await channel.send(note("webpush", to))
    assert len(push.seen) == 3
    assert len(push.messages) == 1


async def test_413_is_permanent(push: FakePushService, clock: Clock) -> None:
    push.script.push(push_error(413, 104, "too big"))
    with pytest.raises(PermanentError, match="HTTP 413: the payload is too large") as caught:
        await send(push, clock, push.subscribe())
    assert caught.value.reason is None


async def test_400_is_permanent_and_scrubbed(push: FakePushService, clock: Clock) -> None:
    to = push.subscribe()
    endpoint = orjson.loads(to)["endpoint"]
    push.script.push(push_error(400, 110, f"cannot route {endpoint}"))
    with pytest.raises(PermanentError, match="HTTP 400") as caught:
        await send(push, clock, to)
    assert endpoint.rsplit("/", 1)[1] not in str(caught.value)
    assert "[redacted]" in str(caught.value)


async def test_a_hang_times_out_as_transient(push: FakePushService, clock: Clock) -> None:
    push.script.push(HANG)
    to = push.subscribe()
    with pytest.raises(TransientError, match="request failed"):
        await asyncio.wait_for(send(push, clock, to, send_timeout_ms=SHORT_TIMEOUT_MS), 5)
    assert len(push.seen) == 1
    assert push.messages == []


async def test_no_server_is_transient(clock: Clock) -> None:
    fake = FakePushService(script=Script())
    await fake.start()
    to = fake.subscribe()
    await fake.stop()  # the port is free again: connection refused
    with pytest.raises(TransientError):
        await send(fake, clock, to)


async def test_the_jwt_is_reused_then_replaced_before_it_expires(
    push: FakePushService, clock: Clock
) -> None:
    to = push.subscribe()
    start = clock.now
    async with started(channel_for(push, clock)) as channel:
        await channel.send(note("webpush", to))
        clock.now = start + TOKEN_LIFETIME - TOKEN_REFRESH_MARGIN - 1
        await channel.send(note("webpush", to))
        clock.now = start + TOKEN_LIFETIME - TOKEN_REFRESH_MARGIN
        await channel.send(note("webpush", to))
        clock.now = start + TOKEN_LIFETIME + 60  # the first token would now be refused
        await channel.send(note("webpush", to))
    tokens = [token_of(seen.headers["Authorization"]) for seen in push.seen]
    assert tokens[0] == tokens[1] != tokens[2] == tokens[3]
    assert len(push.messages) == 4


async def test_the_fake_refuses_what_a_push_service_refuses(
    push: FakePushService, clock: Clock
) -> None:
    """The checks that make the fake's acceptance mean something."""
    to = push.subscribe()
    now = int(clock.now)
    async with aiohttp.ClientSession() as http:
        assert await _signed_push(http, push, to, exp=now - 1) == 401  # expired
        assert await _signed_push(http, push, to, exp=now + 86_401) == 401  # over 24 hours
        assert await _signed_push(http, push, to, exp=now + 60, aud="https://x.example") == 401
        assert await _signed_push(http, push, to, exp=now + 60, ttl=None) == 400
        assert await _signed_push(http, push, to, exp=now + 60, encoding="aesgcm") == 400
        assert await _signed_push(http, push, to, exp=now + 60, size=MAX_BODY_BYTES + 1) == 413
        assert await _signed_push(http, push, to, exp=now + 60) == 400  # not decryptable
    assert push.messages == []


async def _signed_push(
    http: aiohttp.ClientSession,
    fake: FakePushService,
    to: str,
    *,
    exp: int,
    aud: str | None = None,
    ttl: str | None = "60",
    encoding: str = "aes128gcm",
    size: int = 100,
) -> int:
    claims = {"aud": aud or fake.url, "exp": exp, "sub": SUBJECT}
    token = jwt.encode(claims, fake.vapid_key, "ES256")
    headers = {
        "Authorization": f"vapid t={token}, k={fake.application_server_key}",
        "Content-Encoding": encoding,
    }
    if ttl is not None:
        headers["TTL"] = ttl
    endpoint = orjson.loads(to)["endpoint"]
    async with http.post(endpoint, data=b"x" * size, headers=headers) as resp:
        return resp.status


async def test_a_subscription_can_be_made_over_http(push: FakePushService, clock: Clock) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{push.url}/push/subscriptions") as resp,
    ):
        assert resp.status == 201
        to = await resp.text()
    channel = channel_for(push, clock)
    assert channel.validate_recipient(to) == []
    async with started(channel):
        await channel.send(note("webpush", to, "made over HTTP"))
    assert push.messages[0]["body"] == "made over HTTP"
