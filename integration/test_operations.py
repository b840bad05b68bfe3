"""The operations API on the real broker, database and receiver: ``GET /notifications``
(its plans, its pages while rows keep arriving), ``DELETE /notification/{uuid}`` (racing the
notificator) and ``POST /notification/{uuid}/retry``; bad input is answered by name."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import random
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import jsonschema_rs
import msgspec
import pytest

from integration.helpers import (
    connection,
    eventually,
    notification,
    plan_reader,
    read_topic,
    running,
)
from notifsvc import headers, kafka, topics
from notifsvc.channels.webhook import WebhookChannel
from notifsvc.config import Secret, Settings
from notifsvc.db import queries
from notifsvc.db.migrate import _files, split_statements
from notifsvc.db.store import Outcome, Store
from notifsvc.dev.broker import TansuBroker
from notifsvc.dev.fakes.webhook import WebhookSink
from notifsvc.kafka import Producer
from notifsvc.model import Notification, Priority, Reason, State
from notifsvc.notificator import Notificator
from notifsvc.receiver import ReceiverServer
from notifsvc.reconciler import Reconciler
from notifsvc.router import Router

PROBLEM = "application/problem+json"


# --- the plans -------------------------------------------------------------------------

#: 20,000 rows over four hours on five channels, as after a provider outage: a sixth of
#: them failed (a quarter of those for each reason and for none), a few canceled, the last
#: ones in flight.
ROWS = 20_000
CHANNELS = ("log", "email", "sms", "webhook", "slack")
ERRORS = ("throttled: for 3600s", "token_invalid: gone", "expired_unfinished: 900s", "HTTP 503")
END = datetime(2026, 1, 31, 12, tzinfo=UTC)
STEP = timedelta(hours=4) / ROWS

_FILL = """
INSERT INTO notifications (uuid, channel, recipient, body, priority, fingerprint, state,
                           last_error, accepted_at, received_at, updated_at)
SELECT u, c, 'ops', 'body', p, '\\x00', s, e, r, r, r
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
     AS t(u, c, p, s, e, r)
"""


def _state_of(i: int) -> tuple[str, str | None]:
    if i < 300:
        return ("received", "forwarded", "sending")[i % 3], None
    if i % 6 == 1:
        return "failed", ERRORS[(i // 6) % 4]
    if i % 50 == 7:
        return "canceled", None
    return "sent", None


async def fill(conn: asyncpg.Connection) -> None:
    """:data:`ROWS` rows in one statement, newest first."""
    states = [_state_of(i) for i in range(ROWS)]
    priorities = [
        "high" if i % 10 == 0 else "low" if i % 10 == 1 else "normal" for i in range(ROWS)
    ]
    await conn.execute(
        _FILL,
        [uuid.uuid4() for _ in range(ROWS)],
        [CHANNELS[i % 5] for i in range(ROWS)],
        priorities,
        [s for s, _ in states],
        [e for _, e in states],
        [END - i * STEP for i in range(ROWS)],
    )
    await conn.execute("ANALYZE notifications")


#: One value per filter, as an operator looking into the outage would pick them.
VALUES: dict[str, Any] = {
    "state": State.FAILED,
    "channel": "sms",
    "priority": Priority.HIGH,
    "reason": Reason.THROTTLED,
    "since": END - timedelta(hours=3),
    "until": END - timedelta(hours=1),
}
#: The combinations whose plan must be an ordered index scan with no sort at all (each
#: matches well over a page here). In the others, PostgreSQL may instead read the rows the
#: index bounds and sort them, when it expects fewer of them than a page. A reason is one of
#: those: its index holds failed rows only, and PostgreSQL keeps no statistics for the
#: expression of a partial index, so it expects 0.5 % of the failed rows to have any one
#: reason. It reads and sorts them while it expects fewer than a page, that is, while
#: fewer than about 10,000 rows are failed: a bounded read. With more, the scan is ordered
#: (:func:`test_a_reason_list_is_ordered_once_failures_are_many`).
ORDERED = [
    (),
    ("state",),
    ("channel",),
    ("channel", "state"),
    ("state", "since"),
    ("state", "until"),
    ("state", "since", "until"),
    ("since", "until"),
    ("priority",),
    ("channel", "priority"),
]


def combinations() -> list[tuple[str, ...]]:
    names = list(VALUES)
    return [c for n in range(len(names) + 1) for c in itertools.combinations(names, n)]


def sorts(plan: str) -> bool:
    """Whether a plan sorts rows (a Merge Append's "Sort Key" merges ordered inputs)."""
    return re.search(r"(^|->\s+)(Incremental )?Sort\s+\(", plan, re.MULTILINE) is not None


#: A sort node and the rows PostgreSQL expects it to sort.
_SORT = re.compile(r"(?:^|->)\s*(?:Incremental )?Sort\s+\(cost=\S+ rows=(\d+)", re.MULTILINE)


def ordered(plan: str, page: int = 50) -> bool:
    """Whether a plan reads the list in its order: one backward index scan, or a Merge
    Append of such scans (one per state range: a list with no state, migration 0011). A
    branch may instead read the few rows its index bounds and sort them, where PostgreSQL
    expects no more than two pages of them (a rare state: canceled, expired; or a narrow
    range whose rows lie on many pages: since migration 0012 the table's pages are half
    full, so reading a range's rows in page order may be the cheaper plan)."""
    lines = plan.splitlines()
    if len(lines) < 2 or "Merge Append" not in lines[1]:
        return not sorts(plan) and "Index" in plan and "Backward" in plan
    arrow = re.search(r"->", lines[1])
    assert arrow is not None
    child = " " * (arrow.start() + 6) + "->"
    branches = re.split(rf"^{re.escape(child)}", "\n".join(lines[2:]), flags=re.MULTILINE)[1:]
    return len(branches) > 1 and all(_ordered_branch(b, page) for b in branches)


#: The parked reader's index (migration 0012) holds exactly the scheduled rows, the rows of
#: a list's ``scheduled`` branch: read whole, it is bounded as an index range is.
_SCHEDULED = "Index Scan using notifications_scheduled_v2 on notifications"


def _ordered_branch(branch: str, page: int) -> bool:
    if "Seq Scan" in branch:
        return False
    sorted_rows = [int(n) for n in _SORT.findall(branch)]
    if not sorted_rows:
        return "Backward" in branch
    bounded = "Index Cond" in branch or _SCHEDULED in branch
    return bounded and max(sorted_rows) <= 2 * page + 1


async def explain(conn: asyncpg.Connection, query: queries.ListQuery) -> str:
    """The plan of ``query`` for its values."""
    sql, args = queries.statement(query)
    return "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql, *args))


async def explain_generic(conn: asyncpg.Connection, query: queries.ListQuery) -> str:
    """The plan of ``query`` for any values: the one PostgreSQL may switch a prepared
    statement to (asyncpg prepares every statement) after its fifth run."""
    sql, args = queries.statement(query)
    name = f"list_{uuid.uuid4().hex}"
    await conn.execute(f"PREPARE {name} AS {sql}")
    values = ", ".join(f"'{a.isoformat() if isinstance(a, datetime) else a}'" for a in args)
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    try:
        rows = await conn.fetch(f"EXPLAIN EXECUTE {name}({values})")
    finally:
        await conn.execute("RESET plan_cache_mode")
    return "\n".join(r[0] for r in rows)


async def test_every_list_query_is_an_index_range_never_the_table(settings: Settings) -> None:
    after = queries.Position(END - timedelta(hours=2), uuid.UUID(int=2**127))
    async with plan_reader(settings) as conn:
        await fill(conn)
        for combination in combinations():
            f = queries.Filter(**{name: VALUES[name] for name in combination})
            for cursor in (None, after):
                plan = await explain(conn, queries.ListQuery(f, 50, cursor))
                label = (
                    f"{' + '.join(combination) or 'no filter'}{' after a cursor' * bool(cursor)}"
                )
                print(f"--- {label}\n{plan}")
                assert "Seq Scan" not in plan, label
                if combination in ORDERED:
                    assert ordered(plan), label
                    generic = await explain_generic(conn, queries.ListQuery(f, 50, cursor))
                    assert ordered(generic) and "Seq Scan" not in generic, label
                elif sorts(plan):
                    assert "Index Cond" in plan, label  # only the rows an index bounds


async def test_a_scheduled_list_is_ordered_once_scheduled_rows_are_many(
    settings: Settings,
) -> None:
    """A campaign of 20,000 scheduled sends: a page of them, alone or in the list of every
    state, is an ordered scan, never all scheduled rows read through the parked reader's
    index (which holds exactly them, by due time) and sorted."""
    async with plan_reader(settings) as conn:
        await fill(conn)
        await conn.execute(
            "INSERT INTO notifications (uuid, channel, recipient, body, priority, fingerprint,"
            " state, accepted_at, received_at, send_at) SELECT gen_random_uuid(), 'sms',"
            " 'ops', 'x', 'normal', '\\x00', 'scheduled', now() - i * INTERVAL '1 second',"
            " now() - i * INTERVAL '1 second', now() + i * INTERVAL '1 second'"
            " FROM generate_series(1, 20000) AS i"
        )
        await conn.execute("ANALYZE notifications")
        for f in (queries.Filter(state=State.SCHEDULED), queries.Filter()):
            for cursor in (None, queries.Position(datetime.now(UTC), uuid.UUID(int=0))):
                for plan in (
                    await explain(conn, queries.ListQuery(f, 50, cursor)),
                    await explain_generic(conn, queries.ListQuery(f, 50, cursor)),
                ):
                    print(plan)
                    assert ordered(plan) and "Seq Scan" not in plan
                    assert "notifications_scheduled_v2" not in plan


async def test_a_reason_list_is_ordered_once_failures_are_many(settings: Settings) -> None:
    """30,000 failed rows, a quarter per reason: a page of one reason is an ordered scan of
    the failed rows' index, never all of that reason's rows read and sorted."""
    async with plan_reader(settings) as conn:
        await conn.execute(
            "INSERT INTO notifications (uuid, channel, recipient, body, priority, fingerprint,"
            " state, last_error, accepted_at, received_at) SELECT gen_random_uuid(), 'sms',"
            " 'ops', 'x', 'normal', '\\x00', 'failed', ($1::text[])[1 + i % 4],"
            " now() - i * INTERVAL '1 second', now() - i * INTERVAL '1 second'"
            " FROM generate_series(1, 30000) AS i",
            list(ERRORS),
        )
        await conn.execute("ANALYZE notifications")
        f = queries.Filter(reason=Reason.THROTTLED)
        for cursor in (None, queries.Position(datetime.now(UTC), uuid.UUID(int=0))):
            for plan in (
                await explain(conn, queries.ListQuery(f, 50, cursor)),
                await explain_generic(conn, queries.ListQuery(f, 50, cursor)),
            ):
                print(plan)
                assert not sorts(plan) and "Backward" in plan
                assert "notifications_listed_failed_by_reason_v2" in plan


# --- pagination ------------------------------------------------------------------------


def note(channel: str = "log", **fields: Any) -> Notification:
    return Notification(uuid.uuid4(), channel, "ops", "disk almost full", **fields)


async def pages(api: aiohttp.ClientSession, query: dict[str, str]) -> list[dict[str, Any]]:
    """Every item of the list ``query`` names, following ``next_cursor`` to its end."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = query | ({"cursor": cursor} if cursor else {})
        async with api.get("/notifications", params=params) as resp:
            assert resp.status == 200, await resp.text()
            page = await resp.json()
        assert len(page["items"]) <= int(query.get("limit", queries.DEFAULT_LIMIT))
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def test_pages_list_every_row_once_while_rows_keep_arriving(
    api: aiohttp.ClientSession, store: Store
) -> None:
    before: list[Notification] = []
    for size in (1, 7, 120, 250, 33):  # one statement each: rows of a batch share received_at
        batch = [note(random.choice(["log", "sms"])) for _ in range(size)]
        await store.insert(batch)
        before += batch
    arrived: list[Notification] = []
    stop = asyncio.Event()

    async def keep_inserting() -> None:
        while not stop.is_set():
            batch = [note(random.choice(["log", "sms"])) for _ in range(5)]
            await store.insert(batch)
            arrived.extend(batch)

    async def inserting() -> bool:
        return bool(arrived)

    inserter = asyncio.create_task(keep_inserting())
    try:
        await eventually(inserting)
        listed = await pages(api, {"limit": "17"})
        on_sms = await pages(api, {"limit": "9", "channel": "sms", "state": "received"})
        during = len(arrived)
    finally:
        stop.set()
        await inserter
    assert during > 5, "rows kept arriving while the pages were read"
    for items, wanted in ((listed, before), (on_sms, [n for n in before if n.channel == "sms"])):
        counts = Counter(item["uuid"] for item in items)
        assert max(counts.values()) == 1, "a row listed twice"
        assert {str(n.uuid) for n in wanted} <= set(counts), "a row stored before never listed"
        keys = [(item["received_at"], item["uuid"]) for item in items]
        assert keys == sorted(keys, reverse=True), "not newest first"
    assert all(item["channel"] == "sms" and item["state"] == "received" for item in on_sms)


async def test_list_items_are_the_notification_as_get_shows_it(
    api: aiohttp.ClientSession, store: Store
) -> None:
    n = note("email", subject="Hi", callback_url="https://example.com/cb", accepted_at=1.8e9)
    await store.insert([n])
    async with api.get("/notifications", params={"channel": "email"}) as resp:
        [item] = (await resp.json())["items"]
    async with api.get(f"/notification/{n.uuid}") as resp:
        assert await resp.json() == item
    async with api.get("/openapi.json") as resp:
        schema = (await resp.json())["components"]["schemas"]["State"]
    jsonschema_rs.validator_for(schema).validate(item)
    assert item | {"received_at": None, "updated_at": None} == {
        "uuid": str(n.uuid),
        "channel": "email",
        "state": "received",
        "reason": None,
        "last_error": None,
        "attempts": 0,
        "conflicts": 0,
        "priority": "normal",
        "to": "ops",
        "subject": "Hi",
        "txt": "disk almost full",
        "callback_url": "https://example.com/cb",
        "accepted_at": "2027-01-15T08:00:00+00:00",
        "received_at": None,
        "forwarded_at": None,
        "sent_at": None,
        "failed_at": None,
        "canceled_at": None,
        "updated_at": None,
        "send_at": None,
        "expires_at": None,
        "expired_at": None,
    }


# --- the database decides ----------------------------------------------------------------


async def put(settings: Settings, store: Store, state: str, channel: str = "log") -> uuid.UUID:
    """One row in ``state``."""
    n = note(channel)
    await store.insert([n])
    async with connection(settings) as conn:
        await conn.execute("UPDATE notifications SET state = $2 WHERE uuid = $1", n.uuid, state)
    return n.uuid


async def states(store: Store, uuids: Collection[uuid.UUID]) -> dict[uuid.UUID, str]:
    out = {}
    for uid in uuids:
        row = await store.get(uid)
        assert row is not None
        out[uid] = row["state"]
    return out


async def test_the_claim_takes_what_may_be_sent_and_skips_the_rest(
    settings: Settings, store: Store
) -> None:
    rows = {s: await put(settings, store, s) for s in State}
    stranger = uuid.uuid4()  # written to a lane directly: no row, sent
    skip = await store.claim([*rows.values(), stranger])
    ended = (State.SENT, State.FAILED, State.CANCELED, State.EXPIRED)
    assert skip == {rows[s] for s in ended}
    assert await states(store, rows.values()) == {
        rows[s]: (s.value if s in ended else "sending") for s in State
    }


async def test_outcomes_never_overwrite_sent_or_canceled(settings: Settings, store: Store) -> None:
    sent, canceled = await put(settings, store, "sent"), await put(settings, store, "canceled")
    for state in (State.FAILED, State.FORWARDED, State.SENT):
        await store.record([Outcome(sent, state, 1, "late"), Outcome(canceled, state, 1, "late")])
    assert await states(store, [sent, canceled]) == {sent: "sent", canceled: "canceled"}


async def test_a_send_postponed_to_the_retry_lane_is_cancelable_again(
    settings: Settings, store: Store
) -> None:
    uid = await put(settings, store, "forwarded")
    assert await store.claim([uid]) == set()
    refused, canceled = await store.cancel(uid)
    assert (refused or {})["state"] == "sending" and not canceled  # being sent: refused
    await store.record([Outcome(uid, State.FORWARDED, 1, "HTTP 503")])  # to the retry lane
    row, canceled = await store.cancel(uid)
    assert row is not None and row["state"] == "canceled" and row["canceled_at"] and canceled
    assert await store.cancel(uid) == (row, False)  # again: the same answer, no change
    assert await store.claim([uid]) == {uid}  # the retry lane's message is not sent


async def test_a_cancel_and_a_claim_racing_never_both_win(settings: Settings, store: Store) -> None:
    """The same race as in the pipeline, many times, with both statements in flight at once
    on separate connections, in either order."""
    uuids = [await put(settings, store, "forwarded") for _ in range(200)]
    rng = random.Random(16)

    async def race(uid: uuid.UUID) -> tuple[bool, bool]:
        claim, cancel = store.claim([uid]), store.cancel(uid)
        if rng.random() < 0.5:
            skipped, (row, canceled) = await asyncio.gather(claim, cancel)
        else:
            (row, canceled), skipped = await asyncio.gather(cancel, claim)
        assert row is not None and canceled == (row["state"] == "canceled")
        return uid not in skipped, canceled

    outcomes = await asyncio.gather(*(race(u) for u in uuids))
    assert all(claimed != canceled for claimed, canceled in outcomes)
    final = await states(store, uuids)
    assert [final[u] == "canceled" for u in uuids] == [c for _, c in outcomes]
    assert 0 < sum(c for _, c in outcomes) < len(uuids), "both sides won some races"


# --- cancel and retry through the pipeline ---------------------------------------------


@pytest.fixture
async def sink() -> AsyncIterator[WebhookSink]:
    async with WebhookSink() as fake:
        yield fake


def delivered(sink: WebhookSink) -> Counter[str]:
    return Counter(seen.headers["Idempotency-Key"] for seen in sink.delivered)


async def call(api: aiohttp.ClientSession, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    async with api.request(method, path, **kw) as resp:
        if resp.status >= 400:
            assert resp.content_type == PROBLEM, await resp.text()
        return resp.status, await resp.json(content_type=None)


async def post(api: aiohttp.ClientSession, body: dict[str, object]) -> uuid.UUID:
    status, answer = await call(api, "POST", "/notification", json=body)
    assert status == 202, answer
    return uuid.UUID(str(body["uuid"]))


async def reaches(store: Store, uid: uuid.UUID, *wanted: str, within: float = 60) -> dict[str, Any]:
    async def check() -> dict[str, Any]:
        row = await store.get(uid)
        return row if row is not None and row["state"] in wanted else {}

    return await eventually(check, within=within)


async def lanes_read(settings: Settings, lanes: Collection[str] = ("normal",)) -> None:
    """Every message of these webhook lanes read and committed: nothing more can arrive."""

    async def quiet() -> bool:
        for lane in lanes:
            group = topics.notificator_group(settings, "webhook", lane)
            topic = topics.channel(settings, "webhook", lane)
            lags = await asyncio.to_thread(kafka.group_lag, settings, group, topic)
            if any(p.lag > 0 for p in lags):
                return False
        return True

    await eventually(quiet, within=90, interval=0.2)


def pipeline(settings: Settings) -> Any:
    """The router and the webhook notificator, running."""

    @asynccontextmanager
    async def both() -> AsyncIterator[None]:
        async with (
            running(Router(settings)),
            running(Notificator(settings, WebhookChannel(settings))),
        ):
            yield

    return both()


async def test_a_canceled_notification_is_never_delivered(
    settings: Settings, api: aiohttp.ClientSession, store: Store, sink: WebhookSink
) -> None:
    bodies = [notification("webhook", to=sink.hook_url()) for _ in range(3)]
    async with running(Router(settings)):  # forwarded, not sent: no notificator yet
        uuids = [await post(api, b) for b in bodies]
        for uid in uuids:
            await reaches(store, uid, "forwarded")
            status, row = await call(api, "DELETE", f"/notification/{uid}")
            assert status == 200 and row["state"] == "canceled" and row["canceled_at"], row
    status, again = await call(api, "DELETE", f"/notification/{uuids[0]}")
    assert status == 200 and again["state"] == "canceled"  # idempotent
    async with running(Notificator(settings, WebhookChannel(settings))):
        await lanes_read(settings)
    assert not sink.seen
    assert set((await states(store, uuids)).values()) == {"canceled"}


async def test_a_notification_waiting_in_the_retry_lane_is_canceled_for_good(
    settings: Settings, api: aiohttp.ClientSession, store: Store, sink: WebhookSink
) -> None:
    later = dataclasses.replace(settings, inprocess_attempts=1, retry_delay_ms=1500)
    sink.script.push(503)
    async with pipeline(later):
        uid = await post(api, notification("webhook", to=sink.hook_url()))

        async def postponed() -> dict[str, Any]:
            row = await store.get(uid)
            return row if row is not None and row["attempts"] == 1 else {}

        assert (await eventually(postponed))["state"] == "forwarded"
        status, row = await call(api, "DELETE", f"/notification/{uid}")
        assert status == 200 and row["state"] == "canceled"
        await lanes_read(later, ("normal", "retry"))
    assert len(sink.seen) == 1 and not sink.delivered
    assert (await states(store, [uid]))[uid] == "canceled"


async def test_a_cancel_racing_the_notificator_ends_canceled_or_delivered_never_both(
    settings: Settings, api: aiohttp.ClientSession, store: Store, sink: WebhookSink
) -> None:
    rng = random.Random(20261203)

    async def cancel_after(body: dict[str, object], delay: float) -> int:
        uid = await post(api, body)
        await asyncio.sleep(delay)  # jitter, so that cancels land before, during and after

        async def answered() -> int:  # 404 while the router has not stored it yet
            status, _ = await call(api, "DELETE", f"/notification/{uid}")
            return 0 if status == 404 else status

        return await eventually(answered, interval=0.01)

    bodies = [notification("webhook", to=sink.hook_url()) for _ in range(120)]
    async with pipeline(settings):
        warm = await post(api, notification("webhook", to=sink.hook_url()))
        await reaches(store, warm, "sent")  # every stage consuming: the races are real
        answers = await asyncio.gather(*(cancel_after(b, rng.uniform(0, 0.4)) for b in bodies))
        uuids = [uuid.UUID(str(b["uuid"])) for b in bodies]
        for uid in uuids:
            await reaches(store, uid, "sent", "canceled")
        await lanes_read(settings)
    final, sent = await states(store, uuids), delivered(sink)
    print(f"cancels: {answers.count(200)} canceled, {answers.count(409)} too late")
    for uid, status in zip(uuids, answers, strict=True):
        canceled = final[uid] == "canceled"
        assert canceled != (sent[str(uid)] == 1), (uid, final[uid], sent[str(uid)])
        assert status == (200 if canceled else 409)
    assert max(sent.values()) == 1
    assert 0 < answers.count(200) < len(answers), "cancels came both before and after sends"


async def test_what_was_sent_is_neither_canceled_nor_retried(
    settings: Settings, api: aiohttp.ClientSession, store: Store, sink: WebhookSink
) -> None:
    async with pipeline(settings):
        uid = await post(api, notification("webhook", to=sink.hook_url()))
        await reaches(store, uid, "sent")
    for method, path in (
        ("DELETE", f"/notification/{uid}"),
        ("POST", f"/notification/{uid}/retry"),
    ):
        status, problem = await call(api, method, path)
        assert status == 409 and problem["state"] == "sent", problem
        assert f"notification {uid} is sent" in problem["detail"]
    assert delivered(sink) == Counter({str(uid): 1})


async def test_a_retried_failure_is_delivered_with_its_attempts_numbered_on(
    settings: Settings, api: aiohttp.ClientSession, store: Store, sink: WebhookSink
) -> None:
    """Two attempts spend the budget of two; after the retry two more are made (the
    budget starts afresh) and numbered 3 and 4."""
    tight = dataclasses.replace(settings, max_attempts=2, inprocess_attempts=2)
    sink.script.push(503, 503)
    async with pipeline(tight):
        uid = await post(api, notification("webhook", to=sink.hook_url()))
        failed = await reaches(store, uid, "failed")
        assert failed["attempts"] == 2
        sink.script.push(503)  # then accepted
        status, row = await call(api, "POST", f"/notification/{uid}/retry")
        assert status == 202 and row["state"] == "forwarded", row
        status, _ = await call(api, "POST", f"/notification/{uid}/retry")
        assert status == 409  # requeued once
        sent = await reaches(store, uid, "sent")
    assert sent["attempts"] == 4 and delivered(sink) == Counter({str(uid): 1})
    _, history = await call(api, "GET", f"/notification/{uid}/attempts")
    assert [(a["attempt"], a["outcome"]) for a in history["attempts"]] == [
        (1, "transient"),
        (2, "transient"),
        (3, "transient"),
        (4, "sent"),
    ]
    [message] = await read_topic(tight, topics.channel(tight, "webhook", "low"), 1)
    assert message.header(headers.ATTEMPTS) == message.header(headers.REPLAYED_FROM) == b"2"


@asynccontextmanager
async def reconciler(settings: Settings, store: Store) -> AsyncIterator[Reconciler]:
    producer = Producer(settings, client_id="test-reconciler")
    await producer.start()

    async def one() -> int:
        return 1

    try:
        yield Reconciler(settings, store, producer, owns=lambda _: True, slices=one)
    finally:
        await producer.stop()


async def test_a_retry_the_broker_does_not_take_is_sent_by_the_reconciler(
    settings: Settings, store: Store, sink: WebhookSink, tmp_path: Path, caplog: Any
) -> None:
    n = msgspec.structs.replace(note("webhook"), to=sink.hook_url())
    await store.insert([n])
    await store.record([Outcome(n.uuid, State.FAILED, 1, "HTTP 503")])
    broker = TansuBroker(tmp_path / "tansu.log")
    broker.start()  # not via to_thread: the child dies with its spawning thread
    own = dataclasses.replace(settings, kafka_bootstrap=broker.bootstrap, produce_timeout_ms=1000)
    try:
        await asyncio.to_thread(kafka.create_topics, own, [topics.outstanding(own)])
        base = f"http://127.0.0.1:{own.http_port}"
        async with running(ReceiverServer(own)), aiohttp.ClientSession(base) as api:
            broker.stop()
            with caplog.at_level(logging.WARNING, logger="notifsvc.api.operations"):
                status, row = await call(api, "POST", f"/notification/{n.uuid}/retry")
    finally:
        broker.stop()
    assert status == 202 and row["state"] == "forwarded"
    assert any("did not take its message" in r.getMessage() for r in caplog.records)
    soon = dataclasses.replace(settings, redrive_after_seconds=1)
    async with (
        running(Notificator(settings, WebhookChannel(settings))),
        reconciler(soon, store) as r,
    ):

        async def redriven() -> bool:
            await r.run_pass()
            row = await store.get(n.uuid)
            return row is not None and row["state"] == "sent"

        await eventually(redriven, interval=0.5)
    assert delivered(sink) == Counter({str(n.uuid): 1})


# --- bad input -------------------------------------------------------------------------


async def a_cursor(api: aiohttp.ClientSession, store: Store, **query: str) -> str:
    await store.insert([note("sms") for _ in range(3)])
    status, page = await call(api, "GET", "/notifications", params={"limit": "1", **query})
    assert status == 200 and page["next_cursor"], page
    return str(page["next_cursor"])


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "failed"}, "status"),
        ({"state": "lost"}, "state"),
        ({"channel": "pigeon"}, "channel"),
        ({"priority": "urgent"}, "priority"),
        ({"reason": "HTTP"}, "reason"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"since": "2026-01-31T09:30:00"}, "since"),
        ({"until": "last week"}, "until"),
        ({"cursor": "eyJ0IjoxfQ"}, "cursor"),
    ],
)
async def test_a_bad_list_query_is_refused_naming_the_parameter(
    api: aiohttp.ClientSession, query: dict[str, str], field: str
) -> None:
    status, problem = await call(api, "GET", "/notifications", params=query)
    assert status == 422 and [e["field"] for e in problem["errors"]] == [field], problem
    assert field in problem["detail"]


async def test_a_cursor_edited_or_used_with_another_filter_is_refused(
    api: aiohttp.ClientSession, store: Store
) -> None:
    cursor = await a_cursor(api, store, channel="sms")
    flipped = cursor[:10] + ("A" if cursor[10] != "A" else "B") + cursor[11:]
    for query, why in (
        ({"channel": "sms", "cursor": flipped}, "altered"),
        ({"channel": "sms", "cursor": cursor[:-1]}, "altered"),
        ({"channel": "log", "cursor": cursor}, "another filter"),
        ({"cursor": cursor}, "another filter"),
    ):
        status, problem = await call(api, "GET", "/notifications", params=query)
        assert status == 422 and problem["errors"][0]["field"] == "cursor", problem
        assert why in problem["errors"][0]["message"]
    status, page = await call(
        api, "GET", "/notifications", params={"channel": "sms", "cursor": cursor}
    )
    assert status == 200 and len(page["items"]) == 2


async def test_unknown_and_malformed_uuids_are_404_and_422(api: aiohttp.ClientSession) -> None:
    for method, suffix in (("DELETE", ""), ("POST", "/retry")):
        status, problem = await call(api, method, f"/notification/{uuid.uuid4()}{suffix}")
        assert status == 404 and "no notification" in problem["detail"]
        status, problem = await call(api, method, f"/notification/nope{suffix}")
        assert status == 422 and problem["errors"] == [
            {"field": "uuid", "message": "must be a UUID"}
        ]


async def test_api_keys_guard_the_operations(settings: Settings) -> None:
    keyed = dataclasses.replace(settings, api_keys=(Secret("k-one"),))
    uid = uuid.uuid4()
    routes = [("GET", "/notifications"), ("DELETE", f"/notification/{uid}")]
    routes.append(("POST", f"/notification/{uid}/retry"))
    async with (
        running(ReceiverServer(keyed)),
        aiohttp.ClientSession(f"http://127.0.0.1:{keyed.http_port}") as api,
    ):
        for method, path in routes:
            assert (await call(api, method, path))[0] == 401
            auth = {"Authorization": "Bearer k-one"}
            assert (await call(api, method, path, headers=auth))[0] in (200, 404)


# --- the schema ------------------------------------------------------------------------


async def test_the_migration_runs_again_and_the_states_are_checked(settings: Settings) -> None:
    names = ("0006_operations.sql", "0008_schedule.sql")  # each replaces the states' check
    sql = "\n".join(text for name, text in _files("migrations") if name in names)
    insert = (
        "INSERT INTO notifications (uuid, channel, recipient, body, fingerprint, state,"
        " accepted_at) VALUES ($1, 'log', 'ops', 'x', '\\x00', $2, now())"
    )
    async with connection(settings) as conn:
        for statement in split_statements(sql):  # applied already: each is idempotent
            await conn.execute(statement)
        for state in State:
            await conn.execute(insert, uuid.uuid4(), state.value)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(insert, uuid.uuid4(), "lost")


async def test_a_database_outage_is_a_503_on_every_operator_route(settings: Settings) -> None:
    """Listing, canceling and retrying all need the database: while it is away each says so
    with 503 and Retry-After, never 500 or a wrong 404."""
    away = dataclasses.replace(settings, database_url=Secret("postgresql://127.0.0.1:1/none"))
    base = f"http://{away.http_host}:{away.http_port}"
    uid = uuid.uuid4()
    routes = (
        ("GET", "/notifications?state=failed"),
        ("DELETE", f"/notification/{uid}"),
        ("POST", f"/notification/{uid}/retry"),
    )
    async with running(ReceiverServer(away)), aiohttp.ClientSession(base) as session:
        for method, path in routes:
            async with session.request(method, path) as resp:
                assert resp.status == 503, (method, path, await resp.text())
                assert resp.headers["Retry-After"]
