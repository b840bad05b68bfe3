"""The webhook channel against a real sink: signature, idempotency key, failures."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator

import orjson
import pytest

from integration.channels.support import SHORT_TIMEOUT_MS, note, started
from integration.fakes import HANG, Reply, WebhookSink
from notifsvc.channels import PermanentError, TransientError
from notifsvc.channels.webhook import SIGNATURE_HEADER, WebhookChannel
from notifsvc.config import Secret, Settings

SECRET = "webhook-secret"


@pytest.fixture
async def sink() -> AsyncIterator[WebhookSink]:
    async with WebhookSink() as fake:
        yield fake


def channel_for(sink: WebhookSink, **overrides: object) -> WebhookChannel:
    base = sink.settings() | {"webhook_secret": Secret(SECRET), "send_timeout_ms": 2000}
    return WebhookChannel(Settings(**(base | overrides)))


async def send(sink: WebhookSink, **overrides: object) -> None:
    async with started(channel_for(sink, **overrides)) as channel:
        await channel.send(note("webhook", sink.hook_url(), "deploy finished"))


async def test_delivers_signed_json_with_idempotency_key(sink: WebhookSink) -> None:
    n = note("webhook", sink.hook_url(), "deploy finished", subject="CI")
    async with started(channel_for(sink)) as channel:
        await channel.send(n)
    [seen] = sink.delivered
    assert seen.path == "/hook"
    assert seen.headers["Idempotency-Key"] == str(n.uuid)
    expected = hmac.new(SECRET.encode(), seen.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(seen.headers[SIGNATURE_HEADER], f"sha256={expected}")
    body = orjson.loads(seen.body)
    assert (body["uuid"], body["txt"], body["subject"]) == (str(n.uuid), "deploy finished", "CI")


async def test_gone_is_permanent(sink: WebhookSink) -> None:
    sink.script.push(410)
    with pytest.raises(PermanentError, match="410"):
        await send(sink)
    assert sink.delivered == []


async def test_503_is_transient_with_retry_after(sink: WebhookSink) -> None:
    sink.script.push(Reply(503, "busy", {"Retry-After": "4"}))
    with pytest.raises(TransientError) as caught:
        await send(sink)
    assert caught.value.retry_after == 4.0


async def test_hang_times_out_as_transient(sink: WebhookSink) -> None:
    sink.script.push(HANG)
    with pytest.raises(TransientError, match="webhook request failed"):
        await asyncio.wait_for(send(sink, send_timeout_ms=SHORT_TIMEOUT_MS), 5)
    assert sink.delivered == []


async def test_redirect_off_the_allowed_hosts_is_not_followed(sink: WebhookSink) -> None:
    async with WebhookSink() as elsewhere:
        target = elsewhere.hook_url().replace("127.0.0.1", "localhost")  # not allowed
        sink.script.push(Reply(307, headers={"Location": target}))
        with pytest.raises(PermanentError, match="307"):
            await send(sink)
        assert elsewhere.seen == []
