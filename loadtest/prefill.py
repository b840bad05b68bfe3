"""A table that already holds delivered notifications, as one in service does.

``make bench-cost`` starts from an empty table, where every page and index entry a
notification writes lands in a table that fits in memory and is freshly built. A deployment
keeps delivered notifications for its retention (``NOTIFSVC_RETENTION_DAYS``: 30), so
its database writes each notification into a table of millions of rows. ``--prefill N``
writes N delivered notifications (each with its attempt) before the run, a day old, of a
channel of their own, then vacuums and checkpoints, so that the timed run pays only for
its own rows, but in a table of that size.
"""

from __future__ import annotations

import time

import asyncpg

#: The channel of the rows written here (no stage reads it).
CHANNEL = "prefill"

_ROWS = """
INSERT INTO notifications (uuid, channel, recipient, body, priority, fingerprint, state,
    attempts, accepted_at, received_at, forwarded_at, sent_at, updated_at)
SELECT gen_random_uuid(), $2, 'user-' || (i % 1000) || '@example.com',
    'Your code is ' || (100000 + i % 900000), 'normal', decode(md5(i::text), 'hex'), 'sent', 1,
    t, t, t, t, t
FROM generate_series(1, $1::int) AS g(i),
    LATERAL (SELECT now() - interval '1 day' + i * interval '10 microseconds') AS x(t)
"""
_ATTEMPTS = """
INSERT INTO notification_attempts (uuid, attempt_number, seq, outcome, started_at,
    finished_at, provider)
SELECT uuid, 1, 0, 'sent', sent_at, sent_at, 'log' FROM notifications WHERE channel = $1
"""
_SETTLE = (
    "VACUUM (ANALYZE) notifications",
    "VACUUM (ANALYZE) notification_attempts",
    "CHECKPOINT",
)


async def prefill(conn: asyncpg.Connection, rows: int) -> float:
    """Write ``rows`` delivered notifications and their attempts (PostgreSQL); the
    seconds it took. Vacuumed, analysed and checkpointed: a run after it writes no page of
    these for them."""
    began = time.monotonic()
    if rows > 0:
        await conn.execute(_ROWS, rows, CHANNEL)
        await conn.execute(_ATTEMPTS, CHANNEL)
        for statement in _SETTLE:  # (each outside a transaction, as VACUUM must be)
            await conn.execute(statement)
    return time.monotonic() - began
