"""The migrations against a real server: rows stored before a migration read as after it."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from integration.helpers import connection
from notifsvc.config import Settings
from notifsvc.db import queries
from notifsvc.db.migrate import is_cockroach, migrate
from notifsvc.db.replays import ReplayStore
from notifsvc.db.schedule import ScheduleStore
from notifsvc.db.store import Store, StoreMisconfigured
from notifsvc.model import State

HOT = "0012_hot_updates.sql"


async def _before_0012(conn: asyncpg.Connection) -> None:
    """The table as before 0012 (its column and, with it, its indexes gone); PostgreSQL
    only."""
    if await is_cockroach(conn):
        pytest.skip("drops an indexed column, which CockroachDB refuses without CASCADE")
    await conn.execute("ALTER TABLE notifications DROP COLUMN resting_state")


async def test_rows_stored_before_0012_get_their_resting_state(settings: Settings) -> None:
    """The column the indexes read is computed for the rows already in the table when the
    migration adds it (PostgreSQL rewrites the table), and the conditions of the lists'
    indexes (rows in flight, rows at rest) cover each of them exactly once."""
    async with connection(settings) as conn:
        await _before_0012(conn)
        await conn.execute("DELETE FROM schema_migrations WHERE version = $1", HOT)
        rows = {uuid.uuid4(): state for state in State}
        await conn.execute(
            "INSERT INTO notifications (uuid, channel, recipient, body, fingerprint,"
            " accepted_at, state) SELECT u, 'log', 'ops', 'x', '\\x00', now(), s"
            " FROM unnest($1::uuid[], $2::text[]) AS t(u, s)",
            list(rows),
            [s.value for s in rows.values()],
        )
    assert await migrate(settings.database) == [HOT]
    async with connection(settings) as conn:
        found = await conn.fetch("SELECT uuid, resting_state FROM notifications")
        listed = await conn.fetch(
            f"SELECT uuid FROM notifications WHERE {queries.IS_IN_FLIGHT}"
            f" UNION ALL SELECT uuid FROM notifications"
            f" WHERE {queries.IS_AT_REST}"
        )
    expected = {u: None if s in queries.IN_FLIGHT else s.value for u, s in rows.items()}
    assert {r["uuid"]: r["resting_state"] for r in found} == expected
    assert sorted(r["uuid"] for r in listed) == sorted(rows)


@pytest.mark.parametrize("kind", [Store, ScheduleStore, ReplayStore])
async def test_a_stage_refuses_a_database_not_migrated_to_0012(
    settings: Settings, kind: type[Store]
) -> None:
    """The reconciler, the lists, the parked reader and the replay pages read
    ``resting_state``: a stage of this release stops at start-up, naming the cause, instead
    of failing each pass against an older schema."""
    async with connection(settings) as conn:
        await _before_0012(conn)
    store = kind(settings.dsn, max_connections=1)
    await store.start()
    try:
        with pytest.raises(StoreMisconfigured, match=r"resting_state.*has `notifsvc migrate` run"):
            await store.check_schema()
    finally:
        await store.stop()
