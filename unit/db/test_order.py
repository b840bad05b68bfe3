"""The order the store writes rows in (the order concurrent writers lock them in) is the
UUIDs' own, however it is computed."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from notifsvc.attempts import Attempt, AttemptOutcome
from notifsvc.db import store
from notifsvc.db.rows import shape_of
from notifsvc.model import Notification

_UUIDS = st.lists(st.uuids() | st.integers(0, 2**128 - 1).map(lambda i: uuid.UUID(int=i)))


@given(_UUIDS)
def test_by_uuid_is_the_uuids_order_and_their_bytes_order(uuids: list[uuid.UUID]) -> None:
    ordered = store.by_uuid(uuids)
    assert ordered == sorted(uuids)
    assert [u.bytes for u in ordered] == sorted(u.bytes for u in uuids)  # as the database does


@given(st.lists(st.tuples(st.uuids(), st.integers(1, 5), st.integers(0, 3))))
def test_attempts_are_written_in_their_key_order(keys: list[tuple[uuid.UUID, int, int]]) -> None:
    attempts = [Attempt(u, n, s, AttemptOutcome.SENT, 1.0, 2.0, "p") for u, n, s in keys]
    written = store._attempt_columns(attempts)
    expected = sorted(attempts, key=lambda a: a.key)
    assert list(zip(written[0], written[1], written[2], strict=True)) == [a.key for a in expected]


_OPTIONAL = st.one_of(st.none(), st.just("x"))


@given(st.lists(st.tuples(_OPTIONAL, _OPTIONAL, st.one_of(st.none(), st.just(2e9))), max_size=6))
def test_an_insert_writes_each_column_some_row_has_and_leaves_out_the_rest(
    rows: list[tuple[str | None, str | None, float | None]],
) -> None:
    chunk = [
        Notification(uuid.uuid4(), "log", "ops", "hi", subject=s, callback_url=c, expires_at=e)
        for s, c, e in rows
    ]
    sent, params = shape_of(store._NOTIFICATION_COLUMNS, store._insert_columns(chunk))
    sql = store._insert(sent)
    written = [
        c for c, how in zip(store._NOTIFICATION_COLUMNS, sent, strict=True) if how.value != "absent"
    ]
    names = [c.name for c in written]
    assert f"({', '.join(names)})" in sql and f"${len(names)}::" in sql
    assert f"${len(names) + 1}::" not in sql
    by_name = dict(zip(names, params, strict=True))
    assert by_name["uuid"] == [n.uuid for n in chunk]
    for name, field in (("subject", 0), ("callback_url", 1)):
        values = [r[field] for r in rows]
        assert by_name.get(name, [None] * len(rows)) == values
        assert (name in by_name) == any(v is not None for v in values)
    assert ("expires_at" in by_name) == any(r[2] is not None for r in rows)
    assert "client" not in by_name and "send_at" not in by_name
