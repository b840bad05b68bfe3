"""Apply the SQL migrations, each statement on its own, recording what was applied.

Portable migrations (``migrations/``) run on PostgreSQL and CockroachDB alike; those in
``migrations_crdb/`` only when the server is CockroachDB.
"""

from __future__ import annotations

import logging
from importlib import resources

import asyncpg

from notifsvc.db import connect

log = logging.getLogger(__name__)

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    TEXT        PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


def split_statements(sql: str) -> list[str]:
    """Statements of a migration file: split on ``;`` at line ends, comments dropped."""
    lines = [ln for ln in sql.splitlines() if not ln.strip().startswith("--")]
    parts = "\n".join(lines).split(";\n")
    return [p.strip().rstrip(";").strip() for p in parts if p.strip().rstrip(";").strip()]


def _files(folder: str) -> list[tuple[str, str]]:
    root = resources.files("notifsvc.db").joinpath(folder)
    found = [(f.name, f.read_text()) for f in root.iterdir() if f.name.endswith(".sql")]
    return sorted(found)


async def is_cockroach(conn: asyncpg.Connection) -> bool:
    version: str = await conn.fetchval("SELECT version()")
    return "CockroachDB" in version


async def migrate(dsn: connect.Target) -> list[str]:
    """Bring the schema up to date; returns the versions applied now."""
    conn = await connect.connect(dsn)
    try:
        await conn.execute(_LEDGER)
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        todo = _files("migrations")
        if await is_cockroach(conn):
            todo += [(f"crdb/{name}", sql) for name, sql in _files("migrations_crdb")]
        applied = []
        for version, sql in todo:
            if version in done:
                continue
            for statement in split_statements(sql):
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1) ON CONFLICT DO NOTHING",
                version,
            )
            log.info("applied migration %s", version)
            applied.append(version)
        return applied
    finally:
        await conn.close()
