"""The attempt history on the real database: recorded with the outcomes, listed by
``GET /notification/{uuid}/attempts`` (the notificator's wiring aside: the tests call
:meth:`Store.record` with a :class:`Delivery` as the notificator's flush does)."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
import uuid
from datetime import datetime
from typing import Any

import aiohttp
import jsonschema_rs

from integration.helpers import running
from notifsvc.attempts import Attempt, AttemptOutcome
from notifsvc.channels.base import AnyChannel
from notifsvc.channels.slack import SlackChannel
from notifsvc.channels.sms import SmsChannel
from notifsvc.config import Secret, Settings
from notifsvc.db import connect
from notifsvc.db.store import Outcome, Store
from notifsvc.delivery import Delivery, DeliveryPolicy
from notifsvc.dev.fakes.script import HANG, Reply
from notifsvc.dev.fakes.slack import FakeSlack, slack_error
from notifsvc.dev.fakes.twilio import FakeTwilio, twilio_error
from notifsvc.model import Notification, State
from notifsvc.process import free_port
from notifsvc.receiver import ReceiverServer

T0 = 1_800_000_000.0


def note(channel: str = "log", to: str = "ops") -> Notification:
    return Notification(uuid.uuid4(), channel, to, "disk almost full", accepted_at=time.time())


async def stored(store: Store, n: Notification) -> Notification:
    await store.insert([n])
    await store.mark_forwarded([n.uuid])
    return n


def attempt(n: Notification, number: int, outcome: AttemptOutcome, **kw: Any) -> Attempt:
    at = kw.pop("at", T0 + number)
    seq = kw.pop("seq", 0)
    return Attempt(n.uuid, number, seq, outcome, at, at + 0.25, "log", **kw)


async def listed(api: aiohttp.ClientSession, uid: uuid.UUID) -> list[dict[str, Any]]:
    """The attempts the receiver lists, checked against the schema its document gives."""
    async with api.get(f"/notification/{uid}/attempts") as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    async with api.get("/openapi.json") as resp:
        schema = (await resp.json())["components"]["schemas"]["Attempts"]
    jsonschema_rs.validator_for(schema).validate(body)
    assert body["uuid"] == str(uid)
    attempts: list[dict[str, Any]] = body["attempts"]
    return attempts


async def one_pass(settings: Settings, channel: AnyChannel, n: Notification) -> Delivery:
    await channel.start()
    try:
        return await DeliveryPolicy(settings, channel).deliver(
            n, prior=0, slots=asyncio.Semaphore(1)
        )
    finally:
        await channel.stop()


async def row_count(settings: Settings, uid: uuid.UUID) -> int:
    conn = await connect.connect(settings.database)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM notification_attempts WHERE uuid = $1", uid
        )
    finally:
        await conn.close()
    return count


async def test_recording_the_same_flush_twice_keeps_one_row_per_attempt(
    settings: Settings, store: Store
) -> None:
    n = await stored(store, note())
    log = [
        attempt(n, 1, AttemptOutcome.TRANSIENT, status=503, error_class="TransientError"),
        attempt(n, 2, AttemptOutcome.THROTTLED, seq=round((T0 + 2) * 1000), status=429),
        attempt(n, 2, AttemptOutcome.SENT, at=T0 + 3, status=201, message_id="SM1"),
    ]
    outcome = Outcome(n.uuid, State.SENT, 2)
    await store.record([outcome], attempts=log)
    await store.record([outcome], attempts=list(reversed(log)))  # a retried flush
    assert await row_count(settings, n.uuid) == 3
    state = await store.get(n.uuid)
    assert state is not None and state["state"] == "sent" and state["attempts"] == 2


async def test_a_postponement_written_after_its_retry_failed_the_row_leaves_it_failed(
    settings: Settings, store: Store
) -> None:
    """A pass's postponement may land after a later pass failed the row: a former owner of
    the partition finishing its flush after a rebalance (the hostile chaos scenario once
    left such a row ``forwarded``, with nothing left in flight to finish it)."""
    n = await stored(store, note())
    await store.claim([n.uuid])
    first = [attempt(n, k, AttemptOutcome.TRANSIENT, status=503) for k in (1, 2)]
    last = [attempt(n, 3, AttemptOutcome.PERMANENT, status=400, error="answered HTTP 400")]
    await store.claim([n.uuid])  # the retry's pass, before the first pass's flush
    await store.record([Outcome(n.uuid, State.FAILED, 1, "answered HTTP 400")], attempts=last)
    await store.record([Outcome(n.uuid, State.FORWARDED, 2, "HTTP 503")], attempts=first)
    state = await store.get(n.uuid)
    assert state is not None
    assert (state["state"], state["last_error"], state["attempts"]) == (
        "failed",
        "answered HTTP 400",
        3,
    )
    assert await row_count(settings, n.uuid) == 3
    assert await store.claim([n.uuid]) == {n.uuid}  # the postponement's retry finds it done


async def test_existing_callers_record_outcomes_alone(store: Store) -> None:
    n = await stored(store, note())
    await store.record([Outcome(n.uuid, State.FAILED, 0, "poison")])
    assert await store.attempts(n.uuid) == []
    state = await store.get(n.uuid)
    assert state is not None and state["state"] == "failed"


async def test_attempts_are_listed_oldest_first(api: aiohttp.ClientSession, store: Store) -> None:
    n = await stored(store, note())
    first_pass = [
        attempt(n, 1, AttemptOutcome.TRANSIENT, status=500, error="log answered HTTP 500"),
        attempt(n, 2, AttemptOutcome.THROTTLED, at=T0 + 1.5, seq=round((T0 + 1.5) * 1000)),
    ]
    second_pass = [
        attempt(n, 2, AttemptOutcome.THROTTLED, at=T0 + 60, seq=round((T0 + 60) * 1000)),
        attempt(n, 2, AttemptOutcome.SENT, at=T0 + 61, status=200, message_id="m-2"),
    ]
    await store.record([Outcome(n.uuid, State.FORWARDED, 1, "500")], attempts=first_pass)
    shuffled = random.sample(second_pass, len(second_pass))
    await store.record([Outcome(n.uuid, State.SENT, 1)], attempts=shuffled)
    got = await listed(api, n.uuid)
    assert [(a["attempt"], a["outcome"], a["counted"]) for a in got] == [
        (1, "transient", True),
        (2, "throttled", False),
        (2, "throttled", False),
        (2, "sent", True),
    ]
    starts = [datetime.fromisoformat(a["started_at"]).timestamp() for a in got]
    assert starts == [T0 + 1, T0 + 1.5, T0 + 60, T0 + 61]
    assert got[0]["status_code"] == 500 and got[0]["error"] == "log answered HTTP 500"
    assert got[-1] | {"started_at": None, "finished_at": None} == {
        "attempt": 2,
        "outcome": "sent",
        "counted": True,
        "started_at": None,
        "finished_at": None,
        "provider": "log",
        "status_code": 200,
        "message_id": "m-2",
        "error_class": None,
        "error": None,
    }


async def test_error_text_is_stored_sanitised_and_capped(store: Store) -> None:
    n = await stored(store, note())
    bad = "nul\x00 and lone \ud800 surrogate " + "x" * 5_000
    log = [attempt(n, 1, AttemptOutcome.PERMANENT, error=bad, error_class="PermanentError")]
    await store.record([Outcome(n.uuid, State.FAILED, 1, bad)], attempts=log)
    [row] = await store.attempts(n.uuid) or []
    assert "\x00" not in row["error"] and len(row["error"]) <= 1_000
    assert row["error"].startswith("nul\ufffd and lone ")


async def test_unknown_notifications_are_404_and_bad_uuids_422(
    api: aiohttp.ClientSession, store: Store
) -> None:
    async with api.get(f"/notification/{uuid.uuid4()}/attempts") as resp:
        assert resp.status == 404 and resp.content_type == "application/problem+json"
    async with api.get("/notification/nope/attempts") as resp:
        assert resp.status == 422 and resp.content_type == "application/problem+json"
    n = await stored(store, note())
    assert await listed(api, n.uuid) == []  # stored, not tried yet


async def test_the_database_down_is_503(settings: Settings) -> None:
    down = dataclasses.replace(
        settings, database_url=Secret(f"postgresql://u:p@127.0.0.1:{free_port()}/gone")
    )
    async with (
        running(ReceiverServer(down)),
        aiohttp.ClientSession(f"http://127.0.0.1:{down.http_port}") as api,
        api.get(f"/notification/{uuid.uuid4()}/attempts") as resp,
    ):
        assert resp.status == 503 and resp.headers["Retry-After"] == "1"
        assert resp.content_type == "application/problem+json"


async def test_api_keys_guard_the_history(settings: Settings) -> None:
    keyed = dataclasses.replace(settings, api_keys=(Secret("k-one"),))
    path = f"/notification/{uuid.uuid4()}/attempts"
    async with (
        running(ReceiverServer(keyed)),
        aiohttp.ClientSession(f"http://127.0.0.1:{keyed.http_port}") as api,
    ):
        async with api.get(path) as resp:
            assert resp.status == 401
        async with api.get(path, headers={"Authorization": "Bearer k-one"}) as resp:
            assert resp.status == 404


async def test_the_history_matches_what_the_provider_saw(
    settings: Settings, store: Store, api: aiohttp.ClientSession
) -> None:
    """A fake Twilio fails, throttles, fails, then takes the message: four requests, four
    rows, three of them counted."""
    async with FakeTwilio() as twilio:
        twilio.script.push(
            500, Reply(429, twilio_error(429, 20429, "Too Many").body, {"Retry-After": "0"}), 503
        )
        sms = dataclasses.replace(settings, inprocess_attempts=3, max_attempts=3)
        channel = SmsChannel(sms.with_sections(twilio.config()))
        n = await stored(store, note("sms", twilio.recipient()))
        done = await one_pass(sms, channel, n)
        await store.record([done.outcome()], attempts=list(done.log))
        seen = [s.wall for s in twilio.seen]
    assert done.state is State.SENT and done.attempts == 3
    got = await listed(api, n.uuid)
    assert len(got) == len(seen) == 4
    assert [(a["attempt"], a["outcome"], a["status_code"]) for a in got] == [
        (1, "transient", 500),
        (2, "throttled", 429),
        (2, "transient", 503),
        (3, "sent", 201),
    ]
    for row, wall in zip(got, seen, strict=True):
        start = datetime.fromisoformat(row["started_at"]).timestamp()
        end = datetime.fromisoformat(row["finished_at"]).timestamp()
        assert start - 0.001 <= wall <= end + 0.001
        assert row["provider"] == "sms"
    assert all("twilio-test-token" not in (a["error"] or "") for a in got)
    assert got[1]["error_class"] == "Throttled" and "20429" in got[1]["error"]
    state = await store.get(n.uuid)
    assert state is not None and state["attempts"] == 3 and state["state"] == "sent"


async def test_a_pass_that_times_out_records_a_transient_timeout(
    settings: Settings, store: Store
) -> None:
    """A provider that never answers: the attempt is ``transient`` with ``TimeoutError``."""
    async with FakeTwilio() as twilio:
        twilio.script.push(HANG)
        quick = dataclasses.replace(settings, send_timeout_ms=200, inprocess_attempts=2)
        channel = SmsChannel(quick.with_sections(twilio.config()))
        n = await stored(store, note("sms", twilio.recipient()))
        done = await one_pass(quick, channel, n)
    await store.record([done.outcome()], attempts=list(done.log))
    got = await store.attempts(n.uuid) or []
    assert [(a["outcome"], a["status_code"]) for a in got] == [("transient", None), ("sent", 201)]
    assert "Timeout" in got[0]["error_class"]  # the policy's or aiohttp's, whichever came first


async def test_an_error_read_from_the_body_keeps_the_http_status(
    settings: Settings, store: Store
) -> None:
    """Slack answers 200 with ``"ok": false``: a permanent attempt whose status is 200."""
    async with FakeSlack() as slack:
        slack.script.push(slack_error("channel_not_found"))
        channel = SlackChannel(settings.with_sections(slack.config()))
        n = await stored(store, note("slack", slack.recipient()))
        done = await one_pass(settings, channel, n)
    await store.record([done.outcome()], attempts=list(done.log))
    [row] = await store.attempts(n.uuid) or []
    assert (row["outcome"], row["status_code"]) == ("permanent", 200)
    assert row["error"] == "slack API error: channel_not_found"
