"""The webhook channel against a real sink: signature, idempotency key, failures.

Signatures are checked on the receiving side with the Standard Webhooks library
(``standardwebhooks``), and by the sink itself when it is given secrets."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from datetime import datetime, tzinfo
from typing import Any, Self

import aiohttp
import pytest
import standardwebhooks
import standardwebhooks.webhooks
from aiohttp import web

from integration.channels.support import SHORT_TIMEOUT_MS, Clock, note, started
from notifsvc.channels import DeliveryError, PermanentError, Throttled, TransientError
from notifsvc.channels.http import Answer, Request
from notifsvc.channels.webhook import WebhookChannel
from notifsvc.config import Settings
from notifsvc.dev.fakes.http import Seen
from notifsvc.dev.fakes.script import HANG, Reply, Script
from notifsvc.dev.fakes.webhook import WebhookSink
from notifsvc.signing import (
    DEFAULT_TOLERANCE_SECONDS,
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SigningSecrets,
    generate_secret,
)

SECRET = generate_secret()
OLD_SECRET = generate_secret()


@pytest.fixture
async def sink() -> AsyncIterator[WebhookSink]:
    async with WebhookSink() as fake:
        yield fake


def channel_for(
    sink: WebhookSink, *, send_timeout_ms: int = 2000, **overrides: Any
) -> WebhookChannel:
    overrides.setdefault("secret", SigningSecrets(SECRET))
    config = dataclasses.replace(sink.config(), **overrides)
    return WebhookChannel(Settings(send_timeout_ms=send_timeout_ms).with_sections(config))


async def send(sink: WebhookSink, **overrides: Any) -> None:
    async with started(channel_for(sink, **overrides)) as channel:
        await channel.send(note("webhook", sink.hook_url(), "deploy finished"))


async def test_delivers_signed_json_with_idempotency_key(sink: WebhookSink) -> None:
    n = note("webhook", sink.hook_url(), "deploy finished", subject="CI")
    async with started(channel_for(sink)) as channel:
        await channel.send(n)
    [seen] = sink.delivered
    assert seen.path == "/hook"
    assert seen.headers["Idempotency-Key"] == seen.headers[ID_HEADER] == str(n.uuid)
    body = standardwebhooks.Webhook(SECRET).verify(seen.body, dict(seen.headers))
    assert (body["uuid"], body["txt"], body["subject"]) == (str(n.uuid), "deploy finished", "CI")
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(OLD_SECRET).verify(seen.body, dict(seen.headers))
    assert "X-Notifsvc-Signature" not in seen.headers


async def test_a_sink_with_the_secret_verifies_and_takes_the_delivery() -> None:
    async with WebhookSink(secrets=[SECRET]) as sink, started(channel_for(sink)) as channel:
        await channel.send(note("webhook", sink.hook_url()))
        [delivery] = sink.deliveries()
    assert delivery.details["signature"] == "verified"
    assert delivery.details[ID_HEADER] == delivery.uuid


async def test_a_sink_with_another_secret_answers_401() -> None:
    async with WebhookSink(secrets=[OLD_SECRET]) as sink:
        with pytest.raises(PermanentError, match=r"answered HTTP 401.*no signature matches"):
            await send(sink)
        unsigned = channel_for(sink, secret=None)
        with pytest.raises(PermanentError, match=r"answered HTTP 401.*missing header"):
            async with started(unsigned) as channel:
                await channel.send(note("webhook", sink.hook_url()))
        assert len(sink.seen) == 2
        assert sink.delivered == []


async def test_during_a_rotation_receivers_on_either_secret_accept() -> None:
    rotating = SigningSecrets(f"{SECRET},{OLD_SECRET}")
    async with (
        WebhookSink(secrets=[OLD_SECRET]) as behind,
        WebhookSink(secrets=[SECRET]) as ahead,
    ):
        for sink in (behind, ahead):
            await send(sink, secret=rotating)
            [seen] = sink.delivered
            assert len(seen.headers[SIGNATURE_HEADER].split(" ")) == 2
            for secret in (SECRET, OLD_SECRET):
                standardwebhooks.Webhook(secret).verify(seen.body, dict(seen.headers))


async def test_a_retry_keeps_the_id_and_is_signed_afresh() -> None:
    async with WebhookSink(Script(503), secrets=[SECRET]) as sink:
        n = note("webhook", sink.hook_url())
        async with started(channel_for(sink)) as channel:
            with pytest.raises(TransientError, match="503"):
                await channel.send(n)
            await asyncio.sleep(1.05)  # the next second: a fresh timestamp
            await channel.send(n)
    first, retry = sink.seen
    assert sink.delivered == [retry]
    assert first.headers[ID_HEADER] == retry.headers[ID_HEADER] == str(n.uuid)
    assert int(retry.headers[TIMESTAMP_HEADER]) > int(first.headers[TIMESTAMP_HEADER])
    for seen in (first, retry):
        standardwebhooks.Webhook(SECRET).verify(seen.body, dict(seen.headers))


class _Later(datetime):
    """The library's clock, moved past its tolerance (a request replayed that much later)."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> Self:
        return cls.fromtimestamp(time.time() + DEFAULT_TOLERANCE_SECONDS + 5, tz)


async def replay(sink: WebhookSink, seen: Seen) -> int:
    """POST a captured request again, byte for byte; the sink's answer status."""
    headers = {k: v for k, v in seen.headers.items() if k.lower() != "content-length"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(sink.url + seen.path, data=seen.body, headers=headers) as resp,
    ):
        return resp.status


async def test_a_replay_outside_the_tolerance_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(time.time())
    async with WebhookSink(secrets=[SECRET], clock=clock) as sink:
        await send(sink)
        [captured] = sink.delivered
        assert await replay(sink, captured) == 200  # within the tolerance: the id de-duplicates
        clock.now += DEFAULT_TOLERANCE_SECONDS + 5
        assert await replay(sink, captured) == 401
        assert len(sink.seen) == 3 and len(sink.delivered) == 2
    library = standardwebhooks.Webhook(SECRET)
    library.verify(captured.body, dict(captured.headers))  # signed right: only its age fails
    monkeypatch.setattr(standardwebhooks.webhooks, "datetime", _Later)
    with pytest.raises(standardwebhooks.WebhookVerificationError, match="too old"):
        library.verify(captured.body, dict(captured.headers))


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
    with pytest.raises(TransientError, match=r"webhook to 127\.0\.0\.1:\d+ request failed"):
        await asyncio.wait_for(send(sink, send_timeout_ms=SHORT_TIMEOUT_MS), 5)
    assert sink.delivered == []


async def test_redirect_off_the_allowed_hosts_is_not_followed(sink: WebhookSink) -> None:
    async with WebhookSink() as elsewhere:
        target = elsewhere.hook_url().replace("127.0.0.1", "localhost")  # not allowed
        sink.script.push(Reply(307, headers={"Location": target}))
        with pytest.raises(PermanentError, match="307"):
            await send(sink)
        assert elsewhere.seen == []


async def test_429_is_throttled_with_retry_after(sink: WebhookSink) -> None:
    sink.script.push(Reply(429, "slow down", {"Retry-After": "9"}), Reply(429, "slow down"))
    async with started(channel_for(sink)) as channel:
        with pytest.raises(Throttled) as caught:
            await channel.send(note("webhook", sink.hook_url()))
        assert caught.value.retry_after == 9.0
        with pytest.raises(Throttled) as caught:
            await channel.send(note("webhook", sink.hook_url()))
        assert caught.value.retry_after is None


SECRET_PATH = "/hook/T0001/s3cret-path-token"
SECRET_QUERY = "?token=s3cret-query-token"


async def test_errors_name_the_host_but_never_the_path_or_query(sink: WebhookSink) -> None:
    url = sink.hook_url(SECRET_PATH + SECRET_QUERY)
    sink.script.push(Reply(404, f"no route for POST {SECRET_PATH}{SECRET_QUERY} ({url})"))
    sink.script.push(HANG)
    async with started(channel_for(sink, send_timeout_ms=SHORT_TIMEOUT_MS)) as channel:
        with pytest.raises(PermanentError) as answered:
            await channel.send(note("webhook", url))
        with pytest.raises(TransientError) as hung:
            await asyncio.wait_for(channel.send(note("webhook", url)), 5)
    for error in (answered.value, hung.value):
        assert f"webhook to 127.0.0.1:{sink.port}" in str(error)
        assert "s3cret" not in str(error)
        assert error.__cause__ is None  # an exception's text or repr could hold the URL


async def test_connection_errors_name_the_host_only() -> None:
    fake = WebhookSink(script=Script())
    await fake.start()
    url = fake.hook_url(SECRET_PATH + SECRET_QUERY)
    await fake.stop()  # the port is free again: connection refused
    with pytest.raises(
        TransientError, match=f"webhook to 127.0.0.1:{fake.port} request failed"
    ) as caught:
        async with started(channel_for(fake)) as channel:
            await channel.send(note("webhook", url))
    assert "s3cret" not in str(caught.value)
    assert caught.value.__cause__ is None


async def test_a_url_with_credentials_is_never_posted(sink: WebhookSink) -> None:
    url = sink.hook_url().replace("http://", "http://alice:hunter2@")
    with pytest.raises(PermanentError, match="credentials") as caught:
        async with started(channel_for(sink)) as channel:
            await channel.send(note("webhook", url))
    assert "hunter2" not in str(caught.value)
    assert sink.seen == []


async def test_an_endless_answer_is_read_only_up_to_its_bound() -> None:
    """A provider streaming an error page forever: the channel reads 64 KiB and classifies
    the answer, rather than reading until it times out (or runs out of memory)."""

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=500)
        await response.prepare(request)
        while True:  # until the client goes away
            await response.write(b"x" * 65_536)

    app = web.Application()
    app.router.add_post("/hook", endless)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        channel = channel_for(WebhookSink(), send_timeout_ms=60_000)
        async with started(channel):
            with pytest.raises(TransientError, match="answered HTTP 500: xxx"):
                await asyncio.wait_for(
                    channel.send(note("webhook", f"http://127.0.0.1:{port}/hook")), 30
                )
    finally:
        await runner.cleanup()


class _Buggy(WebhookChannel):
    """A channel whose classification has a bug."""

    def classify(self, answer: Answer, request: Request) -> DeliveryError | None:
        raise KeyError("ok")


async def test_a_surprise_while_sending_is_a_permanent_error(sink: WebhookSink) -> None:
    async with started(_Buggy(Settings().with_sections(sink.config()))) as channel:
        with pytest.raises(PermanentError, match="send failed unexpectedly: KeyError: 'ok'") as c:
            await channel.send(note("webhook", sink.hook_url()))
    assert f"webhook to 127.0.0.1:{sink.port}" in str(c.value)
    assert len(sink.seen) == 1
