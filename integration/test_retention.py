"""Retention on the real database: finished rows past it go with their attempts, nothing
else does; replicas delete their own slices; a page of rows kept does not end a pass; the
statement reads the list indexes."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Collection
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from integration.helpers import connection, eventually, plan_reader, set_state
from notifsvc.config import Settings
from notifsvc.db.migrate import is_cockroach
from notifsvc.db.queries import FINISHED
from notifsvc.db.store import Store, _delete_finished
from notifsvc.duty import START, slice_of
from notifsvc.model import Notification, State, parse
from notifsvc.retention import Retention

OLD = timedelta(days=40)


def make() -> Notification:
    body = {"uuid": str(uuid.uuid4()), "destination": "log", "to": "ops", "txt": "hi"}
    return parse(body)


async def put(
    settings: Settings,
    store: Store,
    count: int,
    state: State,
    *,
    changed: timedelta = OLD,
    received: timedelta | None = None,
) -> list[uuid.UUID]:
    """``count`` rows in ``state``, received ``received`` (else ``changed``) ago and last
    changed ``changed`` ago by the database's clock, each with one attempt."""
    notifications = [make() for _ in range(count)]
    await store.insert(notifications)
    uuids = [n.uuid for n in notifications]
    await set_state(settings, uuids, state.value, changed=changed, received=received or changed)
    async with connection(settings) as conn:
        await conn.execute(
            "INSERT INTO notification_attempts (uuid, attempt_number, outcome, started_at,"
            " finished_at, provider) SELECT u, 1, 'transient', now(), now(), 'log'"
            " FROM unnest($1::uuid[]) AS u",
            uuids,
        )
    return uuids


async def left(settings: Settings, uuids: Collection[uuid.UUID]) -> tuple[set[uuid.UUID], ...]:
    """Of ``uuids``: the rows still there, and those with attempts still there."""
    async with connection(settings) as conn:
        rows = await conn.fetch("SELECT uuid FROM notifications WHERE uuid = ANY($1)", list(uuids))
        tried = await conn.fetch(
            "SELECT DISTINCT uuid FROM notification_attempts WHERE uuid = ANY($1)", list(uuids)
        )
    return {r["uuid"] for r in rows}, {r["uuid"] for r in tried}


def replica(settings: Settings, store: Store, *, owned: Collection[int] | None = None) -> Retention:
    """Retention as a router replica runs it, owning ``owned`` of 4 slices (all: None)."""

    async def four() -> int:
        return 4

    def owns(n: int) -> bool:
        return owned is None or n in owned

    return Retention(settings, store, owns=owns, slices=four)


def deleted_metric(state: State) -> float:
    return (
        REGISTRY.get_sample_value("notifsvc_retention_deleted_total", {"state": state.value}) or 0
    )


async def test_a_pass_deletes_finished_rows_past_retention_with_their_attempts_only(
    settings: Settings, store: Store
) -> None:
    due = {s: await put(settings, store, 2, s) for s in FINISHED}
    kept = [u for s in State if s not in FINISHED for u in await put(settings, store, 2, s)]
    kept += await put(settings, store, 2, State.SENT, changed=timedelta(days=29))
    # received long ago, changed within the retention (a late retry, a scheduled send)
    kept += await put(settings, store, 2, State.FAILED, changed=timedelta(days=2), received=OLD)
    before = {s: deleted_metric(s) for s in FINISHED}

    assert await replica(settings, store).run_pass() == 8

    every = [u for us in due.values() for u in us] + kept
    rows, tried = await left(settings, every)
    assert rows == tried == set(kept)
    assert {s: deleted_metric(s) - before[s] for s in FINISHED} == dict.fromkeys(FINISHED, 2)
    assert await replica(settings, store).run_pass() == 0  # nothing more is due


async def test_each_replica_deletes_only_the_rows_of_its_slices(
    settings: Settings, store: Store
) -> None:
    uuids = await put(settings, store, 40, State.SENT)
    mine = {u for u in uuids if slice_of(u, 4) in (0, 1)}
    assert 0 < len(mine) < 40

    assert await replica(settings, store, owned={0, 1}).run_pass() == len(mine)
    rows, _ = await left(settings, uuids)
    assert rows == set(uuids) - mine

    assert await replica(settings, store, owned={2, 3}).run_pass() == 40 - len(mine)
    assert await left(settings, uuids) == (set(), set())


async def test_a_page_of_rows_kept_does_not_end_the_pass(settings: Settings, store: Store) -> None:
    """Rows received before the cutoff but changed after it fill the first pages; the pass
    reads on past them to the due rows behind (pages of 3)."""
    kept = await put(settings, store, 7, State.SENT, changed=timedelta(days=1), received=OLD)
    due = await put(settings, store, 5, State.SENT, changed=timedelta(days=35))
    small = dataclasses.replace(settings, batch_size=3, retention_rate=0.0)

    assert await replica(small, store).run_pass() == 5
    rows, _ = await left(settings, kept + due)
    assert rows == set(kept)


async def test_retention_off_keeps_every_row(settings: Settings, store: Store) -> None:
    uuids = await put(settings, store, 3, State.SENT, changed=timedelta(days=3000))
    off = replica(dataclasses.replace(settings, retention_days=0), store)
    assert not off.enabled
    assert await off.run_pass() == 0
    rows, tried = await left(settings, uuids)
    assert rows == tried == set(uuids)


@pytest.mark.parametrize("state", FINISHED, ids=lambda s: s.value)
async def test_retentions_page_reads_the_states_list_index(
    settings: Settings, store: Store, state: State
) -> None:
    async with plan_reader(settings) as conn:
        await conn.execute(
            "INSERT INTO notifications (uuid, channel, recipient, body, priority, fingerprint,"
            " state, accepted_at) SELECT gen_random_uuid(), 'log', 'ops', 'done', 'normal',"
            " '\\x00', $1, now() FROM generate_series(1, 20000)",
            state.value,
        )
        await conn.execute("ANALYZE notifications")
        cutoff = await conn.fetchval("SELECT now() - INTERVAL '30 days'")
        args = (cutoff, START[0], START[1], 4, [0, 1, 2, 3], 500)
        plan = "\n".join(
            r[0] for r in await conn.fetch("EXPLAIN " + _delete_finished(state), *args)
        )
    print(plan)
    assert "Seq Scan on notifications" not in plan
    assert "notifications_listed_resting_by_state" in plan
    assert "notification_attempts_pkey" in plan


async def test_a_row_requeued_while_its_page_is_deleted_stays(
    settings: Settings, store: Store
) -> None:
    """An operator's requeue (failed -> received) commits while retention waits for the
    row's lock: the delete checks the row again and keeps it."""
    [requeued, *others] = await put(settings, store, 3, State.FAILED)
    async with connection(settings) as conn:
        if await is_cockroach(conn):
            pytest.skip("waits for a lock as PostgreSQL does (CockroachDB retries instead)")
    async with connection(settings) as conn, conn.transaction():
        await conn.execute(
            "UPDATE notifications SET state = 'received', updated_at = now() WHERE uuid = $1",
            requeued,
        )
        deleting = asyncio.create_task(replica(settings, store).run_pass())
        await eventually(lambda: waiting_for_a_lock(settings))
    assert await deleting == 2
    rows, tried = await left(settings, [requeued, *others])
    assert rows == tried == {requeued}


async def waiting_for_a_lock(settings: Settings) -> bool:
    async with connection(settings) as conn:
        waiting = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND query LIKE '%DELETE FROM notifications%'"
        )
    return bool(waiting)


async def test_a_page_holds_only_the_replicas_own_rows(settings: Settings, store: Store) -> None:
    """Each replica's pages are full of its own due rows, so that the deletions of the
    replicas add up instead of each reading the others' rows."""
    uuids = await put(settings, store, 40, State.SENT)
    cutoff = datetime.now(UTC) - timedelta(days=30)
    page = await store.delete_finished(
        State.SENT, before=cutoff, after=START, slices=4, owned=[0, 1], limit=5
    )
    assert (page.read, page.rows, page.attempts) == (5, 5, 5)
    rows, _ = await left(settings, uuids)
    assert {slice_of(u, 4) for u in set(uuids) - rows} <= {0, 1}
