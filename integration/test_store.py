"""The store's statements that name rows by UUID, against PostgreSQL: a look-up of the
primary key per UUID, whatever partial indexes their state conditions could be taken to
point at (see :mod:`notifsvc.db.store`)."""

from __future__ import annotations

import uuid

from integration.helpers import connection, plan_reader
from notifsvc.config import Settings
from notifsvc.db import schedule
from notifsvc.db import store as store_mod
from notifsvc.db.store import Store
from notifsvc.model import Notification

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
    await _churn(settings, 20_000)
    fresh = [Notification(uuid.uuid4(), "log", "ops", "x") for _ in range(100)]
    await store.insert(fresh)
    values = "'{" + ",".join(str(n.uuid) for n in fresh) + "}'"
    async with plan_reader(settings) as conn:
        for name, (sql, more) in BY_UUID.items():
            await conn.execute(f"PREPARE {name} AS {sql}")
            for mode in ("force_custom_plan", "force_generic_plan"):
                await conn.execute(f"SET plan_cache_mode = {mode}")
                rows = await conn.fetch(f"EXPLAIN EXECUTE {name}({values}{more})")
                plan = "\n".join(r[0] for r in rows)
                print(f"--- {name}, {mode}\n{plan}")
                used = {w for w in plan.split() if w.startswith("notifications_")}
                assert used == {"notifications_pkey"} and "Seq Scan" not in plan, (name, mode)
