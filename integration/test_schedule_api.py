"""Scheduled sends and expiry at the edge, on the real broker, database and receiver: the
request fields (accepted, shown, refused by name), the router's placement of a row due
later (``scheduled``, in its delay tier or parked, never on the channel's lane) or expired
before routing (``expired``, never forwarded), and the store's cancel, claim and expire of
such rows. (The tiers' consumers are :mod:`notifsvc.scheduler`'s tests.)"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from integration.helpers import connection, eventually, feed, notification, read_topic, running
from notifsvc import schedule, topics
from notifsvc.config import Settings
from notifsvc.db.store import Store
from notifsvc.events import Event, EventType
from notifsvc.kafka import Consumer, Producer
from notifsvc.model import Notification, parse
from notifsvc.router import Router

PROBLEM = "application/problem+json"


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def make(*, send_at: float | None = None, expires_at: float | None = None) -> Notification:
    """A log notification with these times (unix seconds)."""
    n = parse({"uuid": str(uuid.uuid4()), "destination": "log", "to": "ops", "txt": "hi"})
    return msgspec.structs.replace(n, send_at=send_at, expires_at=expires_at)


async def state_of(store: Store, n: Notification) -> str | None:
    row = await store.get(n.uuid)
    return None if row is None else str(row["state"])


async def reach(store: Store, wanted: dict[Notification, str]) -> None:
    async def there() -> bool:
        return all([await state_of(store, n) == s for n, s in wanted.items()])

    await eventually(there)


async def on_lane(settings: Settings, *notifications: Notification) -> set[str]:
    """The uuids on the log lane's partitions of ``notifications`` up to markers written now
    with their keys (so in the same partitions, after anything the router produced for them
    before)."""
    lane = topics.channel(settings, "log", "normal")
    markers = [make() for _ in notifications]
    producer = Producer(settings, client_id="test-marker")
    await producer.start()
    try:
        await producer.send_all(
            [(lane, m.encode(), n.key, ()) for m, n in zip(markers, notifications, strict=True)]
        )
    finally:
        await producer.stop()
    reader = Consumer(settings, group_id=f"r-{uuid.uuid4()}", topics=[lane], client_id="test")
    await reader.start()
    seen: set[str] = set()
    try:

        async def markers_seen() -> bool:
            records = await reader.consume(500, 0.2)
            seen.update(orjson.loads(r.value or b"{}")["uuid"] for r in records)
            return {str(m.uuid) for m in markers} <= seen

        await eventually(markers_seen, interval=0)
    finally:
        await reader.stop()
    return seen


# --- the request ------------------------------------------------------------------------


async def test_a_scheduled_request_is_accepted_and_shows_its_times(
    api: aiohttp.ClientSession, settings: Settings, store: Store
) -> None:
    park = settings.schedule_park_after_seconds
    send_at, expires_at = time.time() + park + 7200, time.time() + park + 9000
    body = notification(send_at=iso(send_at), expires_at=iso(expires_at))
    async with api.post("/notification", json=body) as resp:
        assert resp.status == 202, await resp.text()
    uid = uuid.UUID(str(body["uuid"]))
    n = make(send_at=send_at)
    n = msgspec.structs.replace(n, uuid=uid)
    async with running(Router(settings)):
        await reach(store, {n: "scheduled"})
    async with api.get(f"/notification/{uid}") as resp:
        shown = await resp.json()
    assert shown["state"] == "scheduled"
    assert datetime.fromisoformat(shown["send_at"]).timestamp() == pytest.approx(send_at, abs=1e-5)
    assert datetime.fromisoformat(shown["expires_at"]).timestamp() == pytest.approx(
        expires_at, abs=1e-5
    )
    assert shown["expired_at"] is None
    async with api.get("/notifications", params={"state": "scheduled"}) as resp:
        assert [i["uuid"] for i in (await resp.json())["items"]] == [str(uid)]


BAD: list[tuple[dict[str, Any], str]] = [
    ({"send_at": "tomorrow 9:00"}, "send_at"),
    ({"send_at": iso(time.time() - 3600)}, "send_at"),
    ({"send_at": iso(time.time() + 40 * 86400)}, "send_at"),
    ({"send_at": iso(time.time() + 600), "expires_at": iso(time.time() + 300)}, "expires_at"),
    ({"expires_at": iso(time.time() - 1)}, "expires_at"),
    ({"expires_at": iso(time.time() + 600), "ttl_seconds": 60}, "ttl_seconds"),
    ({"ttl_seconds": 0}, "ttl_seconds"),
    ({"ttl_seconds": "60"}, "ttl_seconds"),
]


@pytest.mark.parametrize(("extra", "field"), BAD)
async def test_a_bad_schedule_is_a_422_naming_the_field(
    api: aiohttp.ClientSession, extra: dict[str, Any], field: str
) -> None:
    async with api.post("/notification", json=notification(**extra)) as resp:
        assert resp.status == 422 and resp.content_type == PROBLEM
        assert [e["field"] for e in (await resp.json())["errors"]] == [field]


async def test_a_batch_rejects_each_bad_schedule_by_name_and_accepts_the_rest(
    api: aiohttp.ClientSession,
) -> None:
    good = notification(send_at=iso(time.time() + 60), ttl_seconds=300)
    items = [good, *(notification(**extra) for extra, _ in BAD)]
    async with api.post("/notifications", json=items) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert [r["status"] for r in body["results"]] == ["accepted"] + ["rejected"] * len(BAD)
    assert [[e["field"] for e in r["errors"]] for r in body["results"][1:]] == [
        [field] for _, field in BAD
    ]


# --- the router's placement --------------------------------------------------------------


async def test_a_row_due_later_is_scheduled_in_its_tier_and_not_forwarded(
    settings: Settings, store: Store
) -> None:
    now = time.time()
    far_ahead = now + settings.schedule_park_after_seconds + 7200
    soon, far, due = make(send_at=now + 120), make(send_at=far_ahead), make(send_at=now - 1)
    async with running(Router(settings)):
        await feed(settings, [soon, far, due])
        await reach(store, {soon: "scheduled", far: "scheduled", due: "forwarded"})
    tier = schedule.tier_for(120)
    waiting = await read_topic(settings, topics.delay(settings, tier.name), 1)
    assert [Notification.decode(r.value) for r in waiting] == [soon]  # far is parked
    lane = await on_lane(settings, due, soon, far)
    assert str(due.uuid) in lane and not {str(soon.uuid), str(far.uuid)} & lane


async def test_a_row_expired_before_routing_is_expired_and_never_forwarded(
    settings: Settings, store: Store
) -> None:
    now = time.time()
    gone = msgspec.structs.replace(
        make(expires_at=now - 1, send_at=now - 60), callback_url="https://cb.example/status"
    )
    async with running(Router(settings)):
        await feed(settings, [gone])
        await reach(store, {gone: "expired"})
    row = await store.get(gone.uuid)
    assert row is not None and row["expired_at"] and row["last_error"].startswith("expired:")
    assert str(gone.uuid) not in await on_lane(settings, gone)
    [event] = await read_topic(settings, topics.callbacks(settings), 1)
    assert Event.decode(event.value).type is EventType.EXPIRED


async def test_a_crash_between_insert_and_placement_loses_nothing(
    settings: Settings, store: Store
) -> None:
    """A router died after its insert: the rows stay ``received`` and the next one, reading
    the batch again, places them as stored (their times come from the row)."""
    now = time.time()
    later, gone = make(send_at=now + 120, expires_at=now + 600), make(expires_at=now - 1)
    assert await store.insert([later, gone]) == {later.uuid, gone.uuid}
    await reach(store, {later: "received", gone: "received"})
    plain = [msgspec.structs.replace(n, send_at=None, expires_at=None) for n in (later, gone)]
    async with running(Router(settings)):
        await feed(settings, plain)  # as redelivered: the row, not the message, decides
        await reach(store, {later: "scheduled", gone: "expired"})
    tier = schedule.tier_for(120)
    [waiting] = await read_topic(settings, topics.delay(settings, tier.name), 1)
    hop = Notification.decode(waiting.value)  # as stored: to the microsecond
    assert hop.uuid == later.uuid and hop.send_at == pytest.approx(later.send_at, abs=1e-5)
    assert hop.expires_at == pytest.approx(later.expires_at, abs=1e-5)


# --- the store ---------------------------------------------------------------------------


async def scheduled(store: Store, *, send_at: float) -> Notification:
    n = make(send_at=send_at)
    await store.insert([n])
    await store.mark_scheduled([n.uuid])
    assert await state_of(store, n) == "scheduled"
    return n


async def test_a_scheduled_row_can_be_canceled_by_the_api(
    api: aiohttp.ClientSession, store: Store
) -> None:
    n = await scheduled(store, send_at=time.time() + 3600)
    async with api.delete(f"/notification/{n.uuid}") as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["state"] == "canceled"
    assert await store.claim([n.uuid]) == {n.uuid}  # its release is never sent
    assert await store.expire([n.uuid]) == set()


async def test_the_claim_takes_a_scheduled_row_and_skips_an_expired_one(store: Store) -> None:
    released = await scheduled(store, send_at=time.time() - 1)
    gone = await scheduled(store, send_at=time.time() - 1)
    assert await store.expire([gone.uuid], "passed in the tier") == {gone.uuid}
    assert await store.claim([released.uuid, gone.uuid]) == {gone.uuid}
    assert await state_of(store, released) == "sending"
    row = await store.get(gone.uuid)
    assert row is not None and row["last_error"] == "expired: passed in the tier"


async def test_expire_moves_only_unfinished_rows(settings: Settings, store: Store) -> None:
    rows = {state: make() for state in ("received", "forwarded", "sending", "sent", "failed")}
    await store.insert(list(rows.values()))
    async with connection(settings) as conn:
        for state, n in rows.items():
            await conn.execute("UPDATE notifications SET state = $2 WHERE uuid = $1", n.uuid, state)
    moved = await store.expire([n.uuid for n in rows.values()])
    assert moved == {rows[s].uuid for s in ("received", "forwarded", "sending")}
    assert await store.expire([n.uuid for n in rows.values()]) == set()  # again: no change


ODD_TIMES = (
    st.none()
    | st.integers(-(2**63), 2**63 - 1)  # (beyond: not JSON the receiver reads, a 400)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.text(max_size=40)
    | st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())
    | st.floats(-1e6, 4e6).map(lambda s: iso(time.time() + s))
    | st.from_regex(
        r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,12})?"
        r"([Zz]|[+-][0-9]{2}:[0-9]{2})?\Z"
    )
)


@hsettings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ODD_TIMES, ODD_TIMES, ODD_TIMES, st.booleans())
@example("0000-02-29T00:00:00Z", "9999-12-31T23:59:60-23:59", 2**63 - 1, False)
@example("2026-02-30T00:00:00Z", "1969-12-31T23:59:59Z", -1, True)
async def test_odd_times_get_202_or_a_422_by_name_never_a_500(
    api: aiohttp.ClientSession, send_at: object, expires_at: object, ttl: object, batch: bool
) -> None:
    times = {"send_at": send_at, "expires_at": expires_at, "ttl_seconds": ttl}
    body = notification() | {k: v for k, v in times.items() if v is not None}
    async with api.post(
        "/notifications" if batch else "/notification", json=[body] if batch else body
    ) as resp:
        answer = await resp.json(content_type=None)
        status = resp.status
    if batch:
        assert status == 200, answer
        [answer] = answer["results"]
        status = 202 if answer["status"] == "accepted" else 422
    assert status in (202, 422), answer
    if status == 422:
        assert answer["errors"] and {e["field"] for e in answer["errors"]} <= set(times)
