"""The store's statements that name rows by UUID, against PostgreSQL: a look-up of the
primary key per UUID, whatever partial indexes their state conditions could be taken to
point at (see :mod:`notifsvc.db.store`)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime

import asyncpg

from integration.helpers import connection, plan_reader
from notifsvc.attempts import Attempt, AttemptOutcome
from notifsvc.config import Settings
from notifsvc.db import schedule
from notifsvc.db import store as store_mod
from notifsvc.db.rows import shape_of
from notifsvc.db.store import Outcome, Store
from notifsvc.model import MAX_ACCEPTED_AT, Notification, State

#: The statements that take a list of UUIDs ($1) and test the rows' state, with the
#: values of their other parameters.
BY_UUID = {
    "mark_forwarded": (store_mod._MARK_FORWARDED, ""),
    "mark_scheduled": (store_mod._MARK_SCHEDULED, ""),
    "claim": (store_mod._CLAIM, ""),
    "requeue": (store_mod._REQUEUE, ""),
    "expire": (store_mod._EXPIRE, ", 'expired: its expires_at passed'"),
    "released": (schedule._RELEASED, ""),
    "touch": (schedule._TOUCH, ""),
}


def _outcomes(uuids: list[uuid.UUID], states: list[str]) -> tuple[str, str]:
    """The outcomes statement for ``uuids`` and no attempts, with its other parameters."""
    o_shape, o_params = shape_of(
        store_mod._OUTCOME_COLUMNS, [uuids, states, [1] * len(uuids), [None] * len(uuids)]
    )
    a_shape, a_params = shape_of(
        store_mod._ATTEMPT_COLUMNS, [[] for _ in store_mod._ATTEMPT_COLUMNS]
    )

    def literal(value: object) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, list):
            return "'{" + ",".join(str(v) for v in value) + "}'"
        return f"'{value}'"

    more = "".join(f", {literal(v)}" for v in [*o_params[1:], *a_params])
    return store_mod._outcomes(o_shape, a_shape), more


async def _churn(settings: Settings, count: int) -> None:
    """``count`` rows through the states of a delivery, each move one statement: the
    partial indexes are left full of dead entries, and no statistics are gathered."""
    async with connection(settings) as conn:
        await conn.execute(
            "INSERT INTO notifications (uuid, channel, recipient, body, fingerprint,"
            " accepted_at) SELECT gen_random_uuid(), 'log', 'ops', 'x', '\\x00', now()"
            " FROM generate_series(1, $1::int)",
            count,
        )
        for state in ("forwarded", "sending", "sent"):
            await conn.execute("UPDATE notifications SET state = $1, updated_at = now()", state)


async def test_rows_named_by_uuid_are_found_by_their_primary_key(
    settings: Settings, store: Store
) -> None:
    await _churn(settings, 60_000)
    fresh = [Notification(uuid.uuid4(), "log", "ops", "x") for _ in range(100)]
    await store.insert(fresh)
    values = "'{" + ",".join(str(n.uuid) for n in fresh) + "}'"
    uuids = [n.uuid for n in fresh]
    statements = BY_UUID | {  # one outcome for the batch, sent once; and one per row
        "outcomes_once": _outcomes(uuids, ["sent"] * len(uuids)),
        "outcomes_each": _outcomes(uuids, ["sent", "failed"] * (len(uuids) // 2)),
    }
    async with plan_reader(settings) as conn:
        for name, (sql, more) in statements.items():
            await conn.execute(f"PREPARE {name} AS {sql}")
            for mode in ("force_custom_plan", "force_generic_plan"):
                await conn.execute(f"SET plan_cache_mode = {mode}")
                rows = await conn.fetch(f"EXPLAIN EXECUTE {name}({values}{more})")
                plan = "\n".join(r[0] for r in rows)
                print(f"--- {name}, {mode}\n{plan}")
                used = {w for w in plan.split() if w.startswith("notifications_")}
                assert used == {"notifications_pkey"} and "Seq Scan" not in plan, (name, mode)


async def _hot_updates(conn: asyncpg.Connection, sql: str, uuids: list[uuid.UUID]) -> int:
    """Run ``sql`` on ``uuids`` in a transaction of its own: the updates PostgreSQL made in
    place (HOT: no new index entry), as its statistics count them. The count is the
    backend's, kept until it reports it (when idle), so it is read before and after."""
    count = "SELECT pg_stat_get_xact_tuples_hot_updated('notifications'::regclass)"
    async with conn.transaction():
        before: int = await conn.fetchval(count)
        await conn.execute(sql, uuids)
        after: int = await conn.fetchval(count)
    return after - before


async def test_the_forward_and_the_claim_update_rows_in_place(
    settings: Settings, store: Store
) -> None:
    """Migration 0012: no index reads what a row in flight changes, and its table's pages
    keep room for the new row versions, so the forward and the claim write no index entry.
    With an index reading ``state`` (or ``updated_at``), no update at all is HOT.

    Each is measured on rows just written, whose pages have their free half. (A claim right
    after a forward finds the page full; whether PostgreSQL can prune the forward's old
    versions first depends on what else holds a snapshot, such as an autovacuum's ANALYZE
    in the full suite, which no test controls.)"""
    count = 400
    received = [Notification(uuid.uuid4(), "log", "ops", "x" * 100) for _ in range(count)]
    await store.insert(received)
    forwarded = [uuid.uuid4() for _ in range(count)]
    async with plan_reader(settings) as conn:  # PostgreSQL's statistics
        await conn.execute(
            "INSERT INTO notifications (uuid, channel, recipient, body, fingerprint,"
            " accepted_at, state) SELECT u, 'log', 'ops', repeat('x', 100), '\\x00', now(),"
            " 'forwarded' FROM unnest($1::uuid[]) AS u",
            forwarded,
        )
        hot_forwards = await _hot_updates(
            conn, store_mod._MARK_FORWARDED, [n.uuid for n in received]
        )
        hot_claims = await _hot_updates(conn, store_mod._CLAIM, forwarded)
        states = await conn.fetch(
            "SELECT state, resting_state FROM notifications WHERE uuid = ANY($1)", forwarded
        )
    print(f"HOT updates of {count} rows: forward {hot_forwards}, claim {hot_claims}")
    assert {(r["state"], r["resting_state"]) for r in states} == {("sending", None)}
    assert hot_forwards >= count * 3 // 4 and hot_claims >= count * 3 // 4


def _times(count: int) -> list[float]:
    """Unix seconds a stage may write: the edges of the accepted range, halves and near-halves
    of a microsecond, and random ones."""
    rng = random.Random(22)
    edges = [1e-6, 0.5e-6, 1.5e-6, 1_700_000_000.0000005, 1_700_000_000.9999995, MAX_ACCEPTED_AT]
    return edges + [rng.uniform(0, MAX_ACCEPTED_AT) for _ in range(count - len(edges))]


def _close(stored: datetime, seconds: float) -> bool:
    """Whether ``stored`` is ``seconds`` to the microsecond (PostgreSQL rounds the float in
    its own steps, so a value half-way may land on either neighbour)."""
    return abs(stored - datetime.fromtimestamp(seconds, UTC)).total_seconds() <= 1e-6


async def test_times_sent_as_unix_seconds_are_stored_to_the_microsecond(
    settings: Settings, store: Store
) -> None:
    times = _times(120)
    batch = [
        Notification(uuid.uuid4(), "log", "ops", "x", accepted_at=t, send_at=t, expires_at=t)
        for t in times
    ]
    batch.append(Notification(uuid.uuid4(), "log", "ops", "x"))  # no accepted_at: now
    before = datetime.now(UTC)
    await store.insert(batch)
    log = [
        Attempt(n.uuid, 1, 0, AttemptOutcome.SENT, t, times[-1 - i], "log")
        for i, (n, t) in enumerate(zip(batch, times, strict=False))
    ]
    await store.record([Outcome(a.uuid, State.SENT, 1) for a in log], attempts=log)
    ours = [n.uuid for n in batch]
    async with connection(settings) as conn:
        rows = {
            r["uuid"]: r
            for r in await conn.fetch("SELECT * FROM notifications WHERE uuid = ANY($1)", ours)
        }
        tried = {
            r["uuid"]: r
            for r in await conn.fetch(
                "SELECT * FROM notification_attempts WHERE uuid = ANY($1)", ours
            )
        }
    for n, t in zip(batch, times, strict=False):
        row = rows[n.uuid]
        assert all(_close(row[c], t) for c in ("accepted_at", "send_at", "expires_at")), t
    for a in log:
        assert _close(tried[a.uuid]["started_at"], a.started_at), a.started_at
        assert _close(tried[a.uuid]["finished_at"], a.finished_at), a.finished_at
    assert before <= rows[batch[-1].uuid]["accepted_at"] <= datetime.now(UTC)
    assert rows[batch[-1].uuid]["send_at"] is None
