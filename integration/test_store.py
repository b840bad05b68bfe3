"""The store's statements that name rows by UUID, against PostgreSQL: a look-up of the
primary key per UUID, whatever partial indexes their state conditions could be taken to
point at (see :mod:`notifsvc.db.store`)."""

from __future__ import annotations

import uuid

from integration.helpers import connection, plan_reader
from notifsvc.config import Settings
from notifsvc.db import schedule
from notifsvc.db import store as store_mod
from notifsvc.db.rows import shape_of
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
    await _churn(settings, 20_000)
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
