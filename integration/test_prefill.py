"""``make bench-cost --prefill N``: delivered notifications written straight into a real,
migrated database are rows the product reads as its own, and the run's count leaves them
out."""

from __future__ import annotations

import time

import asyncpg
import pytest

from loadtest import bench_cost, prefill
from notifsvc.config import Settings
from notifsvc.db.migrate import is_cockroach
from notifsvc.db.store import Store
from notifsvc.model import State


async def test_prefilled_rows_are_delivered_notifications_with_their_attempt(
    settings: Settings, store: Store
) -> None:
    conn = await asyncpg.connect(settings.dsn)
    try:
        if await is_cockroach(conn):
            pytest.skip("VACUUM and CHECKPOINT are PostgreSQL's (the benchmark's database)")
        since = time.time() - 1.0
        await prefill.prefill(conn, 300)
        rows = await conn.fetch(
            "SELECT uuid, state FROM notifications WHERE channel = $1", prefill.CHANNEL
        )
        counted = await conn.fetchval(bench_cost._SENT, since)
    finally:
        await conn.close()
    assert len(rows) == 300
    assert {r["state"] for r in rows} == {"sent"}
    assert counted == 0  # a day old: the run's own count starts from zero
    first = rows[0]["uuid"]
    view = await store.get(first)
    assert view is not None and view["state"] == State.SENT
    assert [a["outcome"] for a in await store.attempts(first) or []] == ["sent"]
