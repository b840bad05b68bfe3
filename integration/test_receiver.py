"""Every status code the receiver answers, against a real broker and database."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import logging
import re
import uuid
import zlib
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from integration.helpers import notification, running
from notifsvc.channels.email import EmailSettings
from notifsvc.channels.webhook import WebhookSettings
from notifsvc.config import Secret, Settings
from notifsvc.model import FIELDS
from notifsvc.process import free_port
from notifsvc.receiver import ReceiverServer


async def problem_of(resp: aiohttp.ClientResponse, status: int) -> dict[str, object]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/problem+json"
    body: dict[str, object] = await resp.json(content_type=None)
    assert body["status"] == status
    return body


async def test_accepts_a_valid_notification(api: aiohttp.ClientSession) -> None:
    body = notification("Log", priority="HIGH", subject="s")
    async with api.post("/notification", json=body) as resp:
        assert resp.status == 202
        assert await resp.json() == {"uuid": body["uuid"], "status": "accepted"}


async def test_malformed_json_is_400(api: aiohttp.ClientSession) -> None:
    headers = {"Content-Type": "application/json"}
    async with api.post("/notification", data=b'{"uuid": ', headers=headers) as resp:
        assert "not valid JSON" in str((await problem_of(resp, 400))["detail"])


async def test_non_json_content_type_is_415(api: aiohttp.ClientSession) -> None:
    async with api.post(
        "/notification", data="uuid=1", headers={"Content-Type": "text/plain"}
    ) as resp:
        await problem_of(resp, 415)


async def test_body_over_the_limit_is_413_before_reading_it(
    api: aiohttp.ClientSession, settings: Settings
) -> None:
    big = b"x" * (settings.max_body_bytes + 1)
    async with api.post(
        "/notification", data=big, headers={"Content-Type": "application/json"}
    ) as resp:
        await problem_of(resp, 413)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(settings.max_body_bytes // 1024 + 2):
            yield b" " * 1024

    async with api.post(
        "/notification", data=chunks(), headers={"Content-Type": "application/json"}
    ) as resp:
        await problem_of(resp, 413)


async def test_wrong_method_is_405_with_allow(api: aiohttp.ClientSession) -> None:
    async with api.get("/notification") as resp:
        await problem_of(resp, 405)
        assert "POST" in resp.headers["Allow"]


async def test_invalid_notification_is_422_listing_every_field(api: aiohttp.ClientSession) -> None:
    body = {"uuid": "not-a-uuid", "destination": "fax", "to": 5, "extra": 1, "accepted_at": 1}
    async with api.post("/notification", json=body) as resp:
        problem = await problem_of(resp, 422)
    fields = sorted(e["field"] for e in problem["errors"])  # type: ignore[attr-defined]
    assert fields == ["accepted_at", "destination", "extra", "to", "txt", "uuid"]
    assert "unknown destination 'fax'" in str(problem["detail"])


async def test_channel_rules_are_applied(api: aiohttp.ClientSession) -> None:
    body = notification("webhook", to="http://evil.example/hook")
    async with api.post("/notification", json=body) as resp:
        problem = await problem_of(resp, 422)
    assert problem["errors"] == [
        {"field": "to", "message": "host 'evil.example' is not in NOTIFSVC_WEBHOOK_ALLOWED_HOSTS"}
    ]


async def test_disabled_channel_is_422_with_reason(settings: Settings) -> None:
    off = settings.configure(WebhookSettings, allowed_hosts=frozenset())
    async with (
        running(ReceiverServer(off)),
        aiohttp.ClientSession(f"http://127.0.0.1:{off.http_port}") as api,
        api.post("/notification", json=notification("webhook", to="http://127.0.0.1/x")) as resp,
    ):
        problem = await problem_of(resp, 422)
    assert "disabled: NOTIFSVC_WEBHOOK_ALLOWED_HOSTS is not set" in str(problem["detail"])


async def test_broker_not_acknowledging_is_503_never_202(settings: Settings) -> None:
    dead = dataclasses.replace(
        settings, kafka_bootstrap=f"127.0.0.1:{free_port()}", produce_timeout_ms=500
    )
    async with (
        running(ReceiverServer(dead)),
        aiohttp.ClientSession(f"http://127.0.0.1:{dead.http_port}") as api,
    ):
        async with api.post("/notification", json=notification()) as resp:
            await problem_of(resp, 503)
            assert resp.headers["Retry-After"] == "1"
        async with api.get("/readyz") as resp:
            assert resp.status == 503
            assert await resp.json() == {
                "status": "unavailable",
                "broker": "unavailable",
                "database": "ok",
            }
        batch = [notification(), {"uuid": "bad"}]
        async with api.post("/notifications", json=batch) as resp:
            assert resp.status == 503 and resp.headers["Retry-After"] == "1"
            body = await resp.json()
        assert [r["status"] for r in body["results"]] == ["unavailable", "rejected"]


async def test_status_of_a_notification(api: aiohttp.ClientSession, settings: Settings) -> None:
    async with api.get(f"/notification/{uuid.uuid4()}") as resp:
        await problem_of(resp, 404)
    async with api.get("/notification/nope") as resp:
        await problem_of(resp, 422)


async def test_batch_is_answered_per_item(api: aiohttp.ClientSession) -> None:
    good = [notification() for _ in range(3)]
    bad = {"uuid": "x", "destination": "log"}
    async with api.post("/notifications", json=[good[0], bad, *good[1:]]) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert (body["accepted"], body["rejected"], body["unavailable"]) == (3, 1, 0)
    assert [r["status"] for r in body["results"]] == [
        "accepted",
        "rejected",
        "accepted",
        "accepted",
    ]
    assert body["results"][1]["index"] == 1
    assert {e["field"] for e in body["results"][1]["errors"]} == {"uuid", "to", "txt"}


async def test_batch_limits(api: aiohttp.ClientSession, settings: Settings) -> None:
    async with api.post(
        "/notifications", json=[notification()] * (settings.max_batch_items + 1)
    ) as resp:
        problem = await problem_of(resp, 422)  # the document's maxItems: a validation error
    assert f"at most {settings.max_batch_items} notifications" in str(problem["detail"])
    async with api.post("/notifications", json={"not": "a list"}) as resp:
        await problem_of(resp, 422)
    async with api.post("/notifications", json=[]) as resp:
        await problem_of(resp, 422)


@pytest.fixture
async def keyed(settings: Settings) -> AsyncIterator[aiohttp.ClientSession]:
    secured = dataclasses.replace(
        settings, api_keys=(Secret("k-one"), Secret("k-two")), rate_limit_per_key=2
    )
    async with (
        running(ReceiverServer(secured)),
        aiohttp.ClientSession(f"http://127.0.0.1:{secured.http_port}") as s,
    ):
        yield s


async def test_api_keys_are_required_when_configured(keyed: aiohttp.ClientSession) -> None:
    async with keyed.post("/notification", json=notification()) as resp:
        await problem_of(resp, 401)
        assert resp.headers["WWW-Authenticate"] == "Bearer"
    wrong = {"Authorization": "Bearer k-three"}
    async with keyed.post("/notification", json=notification(), headers=wrong) as resp:
        await problem_of(resp, 401)
    right = {"Authorization": "Bearer k-two"}
    async with keyed.post("/notification", json=notification(), headers=right) as resp:
        assert resp.status == 202
    async with keyed.get("/healthz") as resp:
        assert resp.status == 200


async def test_noisy_key_is_rate_limited_alone(keyed: aiohttp.ClientSession) -> None:
    noisy = {"Authorization": "Bearer k-one"}
    statuses = []
    for _ in range(6):
        async with keyed.post("/notification", json=notification(), headers=noisy) as resp:
            statuses.append(resp.status)
            retry_after = resp.headers.get("Retry-After")
    # A budget of 2 per second: the burst of 2 passes, what follows within the second does not.
    assert statuses[:2] == [202, 202]
    assert statuses[-1] == 429 and statuses.count(429) >= 3
    assert retry_after is not None and int(retry_after) >= 1
    async with keyed.post(
        "/notification", json=notification(), headers={"Authorization": "Bearer k-two"}
    ) as resp:
        assert resp.status == 202


async def test_a_batch_over_a_keys_burst_is_refused_for_good(keyed: aiohttp.ClientSession) -> None:
    key = {"Authorization": "Bearer k-one"}
    batch = [notification() for _ in range(3)]  # the budget is 2 per second
    async with keyed.post("/notifications", json=batch, headers=key) as resp:
        problem = await problem_of(resp, 429)
        assert "Retry-After" not in resp.headers  # waiting would not help
    assert "exceed this API key's burst of 2" in str(problem["detail"])


async def test_a_batch_spends_one_unit_of_the_rate_limit_per_item(
    keyed: aiohttp.ClientSession,
) -> None:
    key = {"Authorization": "Bearer k-one"}
    batch = [notification() for _ in range(2)]  # the whole budget of 2 per second
    async with keyed.post("/notifications", json=batch, headers=key) as resp:
        assert resp.status == 200, await resp.text()
    async with keyed.post("/notification", json=notification(), headers=key) as resp:
        await problem_of(resp, 429)
        assert int(resp.headers["Retry-After"]) >= 1


async def test_a_rate_below_one_per_second_still_limits(settings: Settings) -> None:
    slow = dataclasses.replace(settings, api_keys=(Secret("k"),), rate_limit_per_key=0.5)
    key = {"Authorization": "Bearer k"}
    async with (
        running(ReceiverServer(slow)),
        aiohttp.ClientSession(f"http://127.0.0.1:{slow.http_port}") as api,
    ):
        async with api.post("/notification", json=notification(), headers=key) as resp:
            assert resp.status == 202
        async with api.post("/notification", json=notification(), headers=key) as resp:
            await problem_of(resp, 429)
            assert resp.headers["Retry-After"] == "2"


async def test_openapi_document_matches_validation(api: aiohttp.ClientSession) -> None:
    async with api.get("/openapi.json") as resp:
        doc = await resp.json()
    assert doc["openapi"].startswith("3.1")
    schema = doc["components"]["schemas"]["Notification"]
    # callback_url is documented only when NOTIFSVC_CALLBACK_ALLOWED_HOSTS turns callbacks on
    assert set(schema["properties"]) == set(FIELDS) - {"callback_url"}
    priority = re.compile(schema["properties"]["priority"]["pattern"])
    assert all(priority.search(p) for p in ("high", "normal", "LOW")) and not priority.search("x")
    example = {k: p["examples"][0] for k, p in schema["properties"].items() if "examples" in p}
    example["destination"], example["to"] = "log", "ops"
    async with api.post("/notification", json=example) as resp:
        assert resp.status == 202
    missing = {k: v for k, v in example.items() if k not in schema["required"][:1]}
    async with api.post("/notification", json=missing) as resp:
        assert resp.status == 422
    async with api.get("/docs") as resp:
        page = await resp.text()
    assert resp.content_type == "text/html" and "POST /notifications" in page


async def test_metrics_count_requests(api: aiohttp.ClientSession) -> None:
    async with api.post("/notification", json={"uuid": "x"}) as resp:
        assert resp.status == 422
    async with api.get("/metrics") as resp:
        text = await resp.text()
    assert 'notifsvc_http_requests_total{route="/notification",status="422"}' in text


async def test_ready_when_broker_and_database_answer(api: aiohttp.ClientSession) -> None:
    async with api.get("/readyz") as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "ready", "broker": "ok", "database": "ok"}
    async with api.get("/healthz") as resp:
        assert resp.status == 200


async def test_concurrent_clients_all_get_answers(api: aiohttp.ClientSession) -> None:
    async def one() -> int:
        async with api.post("/notification", json=notification()) as resp:
            return resp.status

    assert set(await asyncio.gather(*(one() for _ in range(200)))) == {202}


def padded(limit: int) -> bytes:
    """A valid notification followed by white space: valid JSON of more than ``limit`` bytes."""
    return orjson.dumps(notification()) + b" " * limit


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_compressed_body_is_limited_by_its_decompressed_size(
    api: aiohttp.ClientSession, settings: Settings, encoding: str
) -> None:
    compress = gzip.compress if encoding == "gzip" else zlib.compress
    bomb = compress(padded(settings.max_body_bytes))
    assert len(bomb) < settings.max_body_bytes // 50
    headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
    async with api.post("/notification", data=bomb, headers=headers) as resp:
        await problem_of(resp, 413)
    big = compress(b"[" + padded(settings.max_batch_bytes) + b"]")
    async with api.post("/notifications", data=big, headers=headers) as resp:
        await problem_of(resp, 413)
    small = compress(orjson.dumps(notification()))
    async with api.post("/notification", data=small, headers=headers) as resp:
        assert resp.status == 202


async def test_an_undecodable_or_unknown_encoding_is_refused(settings: Settings) -> None:
    headers = {"Content-Type": "application/json", "Content-Encoding": "compress"}
    body = orjson.dumps(notification())
    base = f"http://127.0.0.1:{settings.http_port}"
    async with running(ReceiverServer(settings)):
        async with (
            aiohttp.ClientSession(base) as api,
            api.post("/notification", data=body, headers=headers) as resp,
        ):
            await problem_of(resp, 415)
        async with aiohttp.ClientSession(base) as api:  # the server drops this connection
            headers["Content-Encoding"] = "gzip"
            async with api.post("/notification", data=b"not gzip" * 8, headers=headers) as resp:
                await problem_of(resp, 400)


async def test_ready_says_unavailable_never_why(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    down = dataclasses.replace(
        settings, database_url=Secret(f"postgresql://alice:hunter2@127.0.0.1:{port}/secretdb")
    )
    caplog.set_level(logging.WARNING, logger="notifsvc.api.handlers")
    async with (
        running(ReceiverServer(down)),
        aiohttp.ClientSession(f"http://127.0.0.1:{down.http_port}") as api,
        api.get("/readyz") as resp,
    ):
        assert resp.status == 200  # accepting needs only the broker
        text = await resp.text()
    assert orjson.loads(text) == {"status": "degraded", "broker": "ok", "database": "unavailable"}
    assert str(port) not in text and "secretdb" not in text
    assert "database is unavailable" in caplog.text  # the detail is in the log


async def test_webhook_urls_with_credentials_are_422(api: aiohttp.ClientSession) -> None:
    for to in ("http://alice:hunter2@127.0.0.1/x", "http://a@b@127.0.0.1/", "http://:@127.0.0.1/"):
        async with api.post("/notification", json=notification("webhook", to=to)) as resp:
            problem = await problem_of(resp, 422)
        assert "credentials" in str(problem["detail"])
        assert "hunter2" not in str(problem)


@pytest.mark.parametrize(
    "char", ["\r", "\n", "\x85", "\u2028", "\u2029", "\x0b", "\x0c", "\x1c", "\x1e"]
)
async def test_email_subjects_with_line_breaks_are_422(settings: Settings, char: str) -> None:
    mail = settings.with_sections(EmailSettings(host="smtp.example.com", from_="a@example.com"))
    body = notification("email", to="bob@example.com", subject=f"Disk{char}Bcc: eve@example.com")
    async with (
        running(ReceiverServer(mail)),
        aiohttp.ClientSession(f"http://127.0.0.1:{mail.http_port}") as api,
        api.post("/notification", json=body) as resp,
    ):
        problem = await problem_of(resp, 422)
    assert problem["errors"] == [
        {"field": "subject", "message": "must not contain line breaks or control characters"}
    ]
