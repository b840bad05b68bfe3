"""Recording attempts with outcomes: one statement per flush, rows in key order, texts
sanitised; the migrations that hold them (the database itself: integration/test_attempts.py)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg
import pytest

from notifsvc.attempts import Attempt, AttemptOutcome
from notifsvc.db import store
from notifsvc.db.migrate import _files, split_statements
from notifsvc.model import State


class Recording(store.Store):
    """A store whose statements are recorded instead of run."""

    def __init__(self) -> None:
        super().__init__("postgresql://unused/x")
        self.statements: list[tuple[str, tuple[Any, ...]]] = []

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        self.statements.append((sql, args))
        return []


def attempt(uid: uuid.UUID, number: int, seq: int = 0, **kw: Any) -> Attempt:
    outcome = AttemptOutcome.THROTTLED if seq else AttemptOutcome.TRANSIENT
    return Attempt(uid, number, seq, outcome, 1_800_000_000.0, 1_800_000_001.0, "sms", **kw)


def words(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip()


def attempt_arrays(sql: str, args: tuple[Any, ...]) -> dict[str, list[Any]]:
    """The attempt columns of an outcomes statement by name, one value per row: a column
    sent once is repeated, one NULL in every row is left out of it."""
    found = re.search(
        r"INSERT INTO notification_attempts \(([^)]*)\)\s+SELECT (.*?) FROM unnest\((.*?)\) AS",
        sql,
        re.DOTALL,
    )
    assert found is not None
    names, values = found.group(1).split(", "), found.group(2).split(", ")
    arrays = iter(int(n) for n in re.findall(r"\$(\d+)::", found.group(3)))
    columns: dict[str, Any] = {}
    for name, value in zip(names, values, strict=True):
        once = re.match(r"\$(\d+)::", value)
        columns[name] = ("once", args[int(once.group(1)) - 1]) if once else args[next(arrays) - 1]
    rows = len(columns["uuid"])
    return {n: [v[1]] * rows if isinstance(v, tuple) else v for n, v in columns.items()}


async def test_outcomes_alone_are_the_same_one_statement_with_no_attempt_rows() -> None:
    s = Recording()
    await s.record([store.Outcome(uuid.uuid4(), State.SENT, 1)])
    await s.record([])  # nothing to record: no statement at all
    [(sql, args)] = s.statements
    assert words(sql).startswith("WITH recorded AS ( INSERT INTO notification_attempts")
    arrays = attempt_arrays(sql, args)
    assert list(arrays) == [c.name for c in store._ATTEMPT_COLUMNS if not c.optional]
    assert all(column == [] for column in arrays.values())


async def test_a_flush_is_one_statement_with_attempts_in_key_order() -> None:
    a, b = sorted([uuid.uuid4(), uuid.uuid4()])
    log = [attempt(b, 1), attempt(a, 2), attempt(a, 2, seq=5), attempt(a, 1)]
    s = Recording()
    outcomes = [store.Outcome(b, State.FORWARDED, 1), store.Outcome(a, State.SENT, 2)]
    await s.record(outcomes, attempts=log)
    [(sql, args)] = s.statements
    arrays = attempt_arrays(sql, args)
    assert args[0] == [a, b]  # outcomes by uuid
    assert list(zip(arrays["uuid"], arrays["attempt_number"], arrays["seq"], strict=True)) == [
        (a, 1, 0),
        (a, 2, 0),
        (a, 2, 5),
        (b, 1, 0),
    ]


async def test_attempt_texts_are_sanitised_and_capped() -> None:
    uid = uuid.uuid4()
    long = "e\x00" + "x" * 5_000
    s = Recording()
    log = [attempt(uid, 1, error=long, error_class="C\x00" * 300, message_id="m\ud800")]
    await s.record([], attempts=log)
    [(sql, args)] = s.statements
    arrays = attempt_arrays(sql, args)
    assert "status_code" not in arrays  # NULL in every row
    provider, message_id = arrays["provider"][0], arrays["message_id"][0]
    error_class, error = arrays["error_class"][0], arrays["error"][0]
    assert provider == "sms"
    assert error.startswith("e\ufffdx") and len(error) == store.MAX_ATTEMPT_ERROR_CHARS
    assert len(error_class) == store.MAX_ATTEMPT_NAME_CHARS and "\x00" not in error_class
    assert message_id == "m?"  # a lone surrogate cannot be stored as UTF-8


@pytest.mark.parametrize("folder", ["migrations", "migrations_crdb"])
def test_the_attempts_migrations_are_found_in_order(folder: str) -> None:
    names = [name for name, _ in _files(folder)]
    assert any(n.startswith("0003_") for n in names) and names == sorted(names)


def test_the_attempts_table_is_keyed_for_idempotent_writes_and_expires_on_cockroach() -> None:
    [(_, portable)] = [f for f in _files("migrations") if f[0] == "0003_attempts.sql"]
    [table] = split_statements(portable)
    assert "PRIMARY KEY (uuid, attempt_number, seq)" in table
    assert "CREATE TABLE IF NOT EXISTS notification_attempts" in table
    [(_, crdb)] = [f for f in _files("migrations_crdb") if f[0] == "0003_crdb_attempts.sql"]
    [ttl] = split_statements(crdb)
    assert "notification_attempts" in ttl and "INTERVAL ''30 days''" in ttl
