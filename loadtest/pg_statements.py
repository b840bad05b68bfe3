"""Where PostgreSQL's time goes in a benchmark: ``pg_stat_statements`` per statement.

The embedded server loads the extension when started with :data:`SERVER_SETTINGS`;
:func:`reset` (in the lane's database, right before the measured window) and :func:`top`
(after it) give each statement's planning plus execution time per delivered notification.
That is backend time, not CPU: it also counts waits on locks and I/O, so it ranks the
statements rather than adding up to the CPU figure.
"""

from __future__ import annotations

import re
from typing import Any

SERVER_SETTINGS = {
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track_planning": "on",
}
LABEL_CHARS = 70

_TOP = """
SELECT query, calls, rows, total_plan_time + total_exec_time AS ms
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY ms DESC LIMIT $1
"""


async def reset(conn: Any) -> None:
    """Make the extension in ``conn``'s database (once) and forget what it counted so far."""
    await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    await conn.execute("SELECT pg_stat_statements_reset()")


def label(query: str) -> str:
    """A statement's first words, on one line."""
    flat = re.sub(r"\s+", " ", query).strip()
    return flat if len(flat) <= LABEL_CHARS else flat[: LABEL_CHARS - 1] + "…"


async def top(conn: Any, delivered: int, limit: int = 8) -> list[dict[str, Any]]:
    """The ``limit`` costliest statements since :func:`reset`, per delivered notification."""
    rows = await conn.fetch(_TOP, limit)
    per = max(delivered, 1)
    return [
        {
            "statement": label(r["query"]),
            "us_per_notification": 1000 * float(r["ms"]) / per,
            "calls_per_1000": 1000 * int(r["calls"]) / per,
            "rows_per_notification": int(r["rows"]) / per,
        }
        for r in rows
    ]


def lines(statements: list[dict[str, Any]]) -> list[str]:
    """One line per statement, for the benchmark's output."""
    return [
        f"    {s['us_per_notification']:7.1f} us/notification"
        f"  {s['calls_per_1000']:6.1f} calls/1k  {s['statement']}"
        for s in statements
    ]
