"""Replay jobs on the real broker and database: a provider fails 100 notifications, recovers,
and one ``POST /replays`` delivers each exactly once: also when the request is sent twice,
and when the router working on the job is SIGKILLed mid-way and another one finishes it."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from integration.helpers import connection, eventually, notification, plan_reader, running
from loadtest.chaos.infra import Lane
from loadtest.chaos.procs import ASSIGNED, StageProcess
from notifsvc import kafka, topics
from notifsvc.channels.webhook import WebhookChannel
from notifsvc.config import Secret, Settings
from notifsvc.db.replays import TOP, ReplayFilter, page_statement
from notifsvc.db.store import Store
from notifsvc.dev.fakes.script import Reply
from notifsvc.dev.fakes.webhook import WebhookSink
from notifsvc.model import Reason, State
from notifsvc.notificator import Notificator
from notifsvc.receiver import ReceiverServer
from notifsvc.router import Router

FAILED = 100


@pytest.fixture
def fast(settings: Settings) -> Settings:
    """Replays found within 0.1 s and paced at 50 rows/s (pages of 12)."""
    return dataclasses.replace(settings, replay_poll_ms=100, replay_rate=50.0)


@pytest.fixture
async def sink() -> AsyncIterator[WebhookSink]:
    async with WebhookSink() as fake:
        yield fake


async def states(store: Store) -> Counter[State]:
    return Counter(store_counts(await store.counts_by_state()))


def store_counts(by_channel: dict[str, dict[State, int]]) -> dict[State, int]:
    out: Counter[State] = Counter()
    for counts in by_channel.values():
        out.update(counts)
    return dict(out)


async def fail_a_hundred(api: aiohttp.ClientSession, store: Store, sink: WebhookSink) -> set[str]:
    """Post ``FAILED`` webhooks that the provider refuses for good (HTTP 400, one attempt
    each): with a router and the notificator running, wait until every one is ``failed``."""
    sink.script.push(*[Reply(400, {"error": "provider down"})] * FAILED)
    bodies = [notification("webhook", to=sink.hook_url()) for _ in range(FAILED)]
    for body in bodies:
        async with api.post("/notification", json=body) as resp:
            assert resp.status == 202

    async def all_failed() -> bool:
        return (await states(store)).get(State.FAILED, 0) == FAILED

    await eventually(all_failed, within=60)
    assert sink.script.pending == 0 and not sink.delivered  # from now on it answers 200
    return {str(b["uuid"]) for b in bodies}


async def post_replay(api: aiohttp.ClientSession, body: dict[str, Any]) -> dict[str, Any]:
    async with api.post("/replays", json=body) as resp:
        assert resp.status == 202, await resp.text()
        job: dict[str, Any] = await resp.json()
        assert resp.headers["Location"] == f"/replays/{job['id']}"
    return job


async def get_job(api: aiohttp.ClientSession, job_id: str) -> dict[str, Any]:
    async with api.get(f"/replays/{job_id}") as resp:
        assert resp.status == 200, await resp.text()
        job: dict[str, Any] = await resp.json()
    return job


async def done(api: aiohttp.ClientSession, job_id: str, within: float = 60) -> dict[str, Any]:
    async def finished() -> dict[str, Any]:
        job = await get_job(api, job_id)
        return job if job["state"] == "done" else {}

    return await eventually(finished, within=within, interval=0.1)


async def settled(settings: Settings, store: Store, wanted: int) -> None:
    """Every row sent and the low lane read to its end (nothing more can arrive)."""

    async def quiet() -> bool:
        if (await states(store)).get(State.SENT, 0) < wanted:
            return False
        group = topics.notificator_group(settings, "webhook", "low")
        low = topics.channel(settings, "webhook", "low")
        lags = await asyncio.to_thread(kafka.group_lag, settings, group, low)
        return all(p.lag <= 0 for p in lags)  # the broker may report an end short of it

    await eventually(quiet, within=90, interval=0.2)


def delivered(sink: WebhookSink) -> Counter[str]:
    return Counter(seen.headers["Idempotency-Key"] for seen in sink.delivered)


def adds_up(job: dict[str, Any]) -> bool:
    return bool(job["matched"] == job["requeued"] + job["skipped"])


async def test_a_replay_asked_twice_delivers_each_failed_notification_once(
    fast: Settings, api: aiohttp.ClientSession, store: Store, sink: WebhookSink
) -> None:
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(running(Router(fast)))
        await stack.enter_async_context(running(Notificator(fast, WebhookChannel(fast))))
        wanted = await fail_a_hundred(api, store, sink)
        await stack.enter_async_context(running(Router(fast)))  # a second replica
        first = await post_replay(api, {"channel": "WEBHOOK"})
        second = await post_replay(api, {"channel": "webhook", "state": "failed"})
        assert first["state"] == "running" and first["filter"] == {
            "state": "failed",
            "channel": "webhook",
        }
        jobs = [await done(api, j["id"]) for j in (first, second)]
        await settled(fast, store, FAILED)
    assert delivered(sink) == Counter({u: 1 for u in wanted})
    assert all(adds_up(j) for j in jobs), jobs
    assert sum(j["requeued"] for j in jobs) == FAILED  # each row requeued by one job
    print(f"\njobs: {[(j['matched'], j['requeued'], j['skipped']) for j in jobs]}")
    row = await store.get(uuid.UUID(next(iter(wanted))))
    assert row is not None and row["attempts"] == 2  # the refused one, then the replay


async def test_a_router_killed_mid_replay_leaves_the_job_to_another_one(
    fast: Settings, api: aiohttp.ClientSession, store: Store, sink: WebhookSink, tmp_path: Path
) -> None:
    lane = Lane.for_settings("replay-kill", fast, tmp_path)
    paced = {"replay_rate": "20", "replay_lease_seconds": "3", "replay_poll_ms": "100"}
    first = StageProcess(lane, "router-a", ["router"], **paced)
    second = StageProcess(lane, "router-b", ["router"], **paced)
    async with running(Notificator(fast, WebhookChannel(fast))):
        async with running(Router(fast)):
            wanted = await fail_a_hundred(api, store, sink)
        try:
            first.start()
            assert await first.logged(ASSIGNED, within=60), f"see {first.log_path}"
            job = await post_replay(api, {"channel": "webhook"})

            async def mid_way() -> bool:
                assert not first.crashed, f"router exited by itself: see {first.log_path}"
                return int((await get_job(api, job["id"]))["requeued"]) >= 30

            await eventually(mid_way, within=60, interval=0.02)
            first.kill()
            killed_at = await get_job(api, job["id"])
            assert killed_at["state"] == "running" and killed_at["requeued"] < FAILED
            second.start()
            final = await done(api, job["id"])
            await settled(fast, store, FAILED)
        finally:
            first.stop()
            second.stop()
    assert delivered(sink) == Counter({u: 1 for u in wanted})
    assert (final["matched"], final["requeued"], final["skipped"]) == (FAILED, FAILED, 0)
    print(f"\nrouter killed at {killed_at['requeued']} requeued; the other one finished: {final}")
    assert first.unexpected_exits == [] and second.unexpected_exits == []


async def test_a_filter_of_time_and_reason_requeues_only_its_rows(
    fast: Settings, api: aiohttp.ClientSession, store: Store
) -> None:
    """Rows failed in other ways or at other times stay failed; nothing runs to send them,
    so the rows the job requeued stay ``forwarded``."""
    now = datetime.now(UTC)
    rows = {
        "in": (now - timedelta(minutes=30), "throttled: gave up after 3600 s"),
        "old": (now - timedelta(hours=3), "throttled: gave up after 3600 s"),
        "other": (now - timedelta(minutes=30), "HTTP 400 from webhook"),
    }
    async with connection(fast) as conn:
        for name, (at, error) in rows.items():
            await conn.execute(
                "INSERT INTO notifications (uuid, channel, recipient, body, priority, fingerprint,"
                " state, last_error, accepted_at, received_at) VALUES ($1, 'log', 'ops', $2,"
                " 'normal', '\\x00', 'failed', $3, $4, $4)",
                uuid.uuid5(uuid.NAMESPACE_URL, name),
                name,
                error,
                at,
            )
    since = (now - timedelta(hours=1)).isoformat()
    async with running(Router(fast)):
        job = await post_replay(api, {"since": since, "reason": "throttled"})
        final = await done(api, job["id"])
    assert (final["matched"], final["requeued"], final["skipped"]) == (1, 1, 0)
    by_name = {n: await store.get(uuid.uuid5(uuid.NAMESPACE_URL, n)) for n in rows}
    assert {n: r["state"] if r else None for n, r in by_name.items()} == {
        "in": "forwarded",
        "old": "failed",
        "other": "failed",
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, ""),
        ({"state": "failed"}, ""),
        ({"channel": "pigeon"}, "channel"),
        ({"channel": "log", "state": "sent"}, "state"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2027-03-01T12:00:00"}, "until"),
        ({"since": "2027-03-01T12:00:00Z", "until": "2027-03-01T11:00:00Z"}, "until"),
        ({"reason": "bounced"}, "reason"),
        ({"channel": "log", "everything": True}, "everything"),
        ([{"channel": "log"}], ""),
    ],
)
async def test_a_bad_replay_is_refused_naming_the_field(
    api: aiohttp.ClientSession, body: object, field: str
) -> None:
    async with api.post("/replays", json=body) as resp:
        assert resp.status == 422
        assert resp.content_type == "application/problem+json"
        problem = await resp.json()
    assert field in [e["field"] for e in problem["errors"]], problem
    assert problem["detail"]
    async with api.get("/replays") as resp:
        assert (await resp.json())["items"] == []  # nothing was stored


async def test_bad_requests_on_the_replay_routes(api: aiohttp.ClientSession) -> None:
    async with api.post("/replays", data=b'{"channel": "log"', headers=JSON) as resp:
        assert resp.status == 400
    async with api.post("/replays", data=b"channel=log") as resp:
        assert resp.status == 415
    async with api.get("/replays/not-a-job") as resp:
        assert resp.status == 422
        assert (await resp.json())["errors"][0]["field"] == "id"
    async with api.get(f"/replays/rpl_{uuid.uuid4().hex}") as resp:
        assert resp.status == 404
        assert "no replay job" in (await resp.json())["detail"]
    async with api.get("/replays?state=running") as resp:
        assert resp.status == 422
        assert (await resp.json())["errors"][0]["field"] == "state"


JSON = {"Content-Type": "application/json"}


async def test_jobs_are_listed_newest_first_and_documented(api: aiohttp.ClientSession) -> None:
    ids = [(await post_replay(api, {"channel": c}))["id"] for c in ("log", "sms", "email")]
    async with api.get("/replays") as resp:
        listed = (await resp.json())["items"]
    assert [j["id"] for j in listed] == ids[::-1]
    assert all(j["state"] == "running" and j["finished_at"] is None for j in listed)
    async with api.get("/openapi.json") as resp:
        paths = (await resp.json())["paths"]
    assert set(paths["/replays"]) == {"get", "post"} and "get" in paths["/replays/{id}"]


async def test_the_replay_routes_need_an_api_key(settings: Settings) -> None:
    keyed = dataclasses.replace(settings, api_keys=(Secret("k-123"),))
    base = f"http://{keyed.http_host}:{keyed.http_port}"
    async with running(ReceiverServer(keyed)), aiohttp.ClientSession(base) as session:
        for method, path in (("POST", "/replays"), ("GET", "/replays"), ("GET", "/replays/x")):
            async with session.request(method, path, json={"channel": "log"}) as resp:
                assert resp.status == 401, path
        auth = {"Authorization": "Bearer k-123"}
        async with session.post("/replays", json={"channel": "log"}, headers=auth) as resp:
            assert resp.status == 202


async def test_a_database_outage_is_a_503(settings: Settings) -> None:
    away = dataclasses.replace(settings, database_url=Secret("postgresql://127.0.0.1:1/none"))
    base = f"http://{away.http_host}:{away.http_port}"
    async with running(ReceiverServer(away)), aiohttp.ClientSession(base) as session:
        async with session.post("/replays", json={"channel": "log"}) as resp:
            assert resp.status == 503 and resp.headers["Retry-After"]
        async with session.get("/replays") as resp:
            assert resp.status == 503
        async with session.get(f"/replays/rpl_{uuid.uuid4().hex}") as resp:
            assert resp.status == 503


async def test_the_pages_and_the_claim_are_index_scans(settings: Settings, store: Store) -> None:
    async with plan_reader(settings) as conn:
        await conn.execute(
            "INSERT INTO notifications (uuid, channel, recipient, body, priority, fingerprint,"
            " state, last_error, accepted_at, received_at) SELECT gen_random_uuid(),"
            " (ARRAY['log', 'sms', 'webhook'])[1 + i % 3], 'ops', 'x', 'normal', '\\x00',"
            " CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'sent' END, 'throttled: x',"
            " now() - i * INTERVAL '1 second', now() - i * INTERVAL '1 second'"
            " FROM generate_series(1, 20000) AS i"
        )
        await conn.execute("ANALYZE notifications")
        now = datetime.now(UTC)
        shapes = {
            "channel": ReplayFilter(channel="log"),
            "since": ReplayFilter(since=now - timedelta(hours=1)),
            "channel+until": ReplayFilter(channel="sms", until=now),
            "reason": ReplayFilter(reason=Reason.THROTTLED),
        }
        plans = {}
        for name, f in shapes.items():
            sql, values = page_statement(f)
            args = (TOP[0], TOP[1], "rpl_x", 50, *values)
            plans[name] = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql, *args))
    for name, plan in plans.items():
        print(f"{name}:\n{plan}")
        assert "Seq Scan" not in plan, name
        assert "notifications_replay" in plan and "notifications_listed" in plan, name
