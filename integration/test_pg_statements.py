"""``make bench-cost --statements``: PostgreSQL's time per statement, from a real server
started with the extension preloaded (``EmbeddedPostgres(server_settings=...)``)."""

from __future__ import annotations

import asyncpg
import pytest

from loadtest import pg_statements
from notifsvc.dev.postgres import EmbeddedPostgres


async def test_statements_are_ranked_per_delivered_notification() -> None:
    postgres = EmbeddedPostgres(server_settings=pg_statements.SERVER_SETTINGS)
    postgres.start()  # not via to_thread: the child dies with its spawning thread
    try:
        conn = await asyncpg.connect(postgres.dsn())
        try:
            await conn.execute("CREATE TABLE t (n INT)")
            await pg_statements.reset(conn)
            for _ in range(4):
                await conn.execute("INSERT INTO t SELECT generate_series(1, 20000)")
            await conn.fetchval("SELECT count(*) FROM t")
            top = await pg_statements.top(conn, delivered=2, limit=2)
        finally:
            await conn.close()
    finally:
        postgres.close()
    insert = top[0]
    assert insert["statement"].startswith("INSERT INTO t SELECT generate_series")
    assert insert["calls_per_1000"] == 2000  # 4 calls for 2 notifications
    assert insert["rows_per_notification"] == 40000
    assert insert["us_per_notification"] > top[1]["us_per_notification"] > 0


def test_a_setting_the_server_refuses_stops_its_start() -> None:
    postgres = EmbeddedPostgres(server_settings={"shared_preload_libraries": "no_such_library"})
    with pytest.raises(RuntimeError, match="no_such_library"):
        postgres.start()
    postgres.close()
