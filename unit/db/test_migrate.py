from __future__ import annotations

import re

from notifsvc.db.migrate import _files, split_statements


def test_statements_are_split_and_comments_dropped() -> None:
    sql = "-- a comment\nCREATE TABLE a (x INT);\n\n-- b\nCREATE INDEX i ON a (x);\n"
    assert split_statements(sql) == ["CREATE TABLE a (x INT)", "CREATE INDEX i ON a (x)"]


def test_portable_migrations_avoid_cockroach_and_postgres_only_features() -> None:
    forbidden = (
        "STRING",
        "BYTES ",
        "SERIAL",
        "SEQUENCE",
        "TRIGGER",
        "LISTEN",
        "NOTIFY",
        "USING HASH",
        "BEGIN",
    )
    for name, sql in _files("migrations"):
        upper = sql.upper()
        assert not [word for word in forbidden if word in upper], name


def test_cockroach_tuning_is_kept_apart() -> None:
    names = [name for name, _ in _files("migrations_crdb")]
    assert names and all(n.endswith(".sql") for n in names)


def test_no_row_level_ttl_stays_in_force_on_cockroachdb() -> None:
    """Retention is the router's duty on both databases (notifsvc/retention.py): each table
    an earlier CockroachDB migration gave a TTL has it reset by a later one."""
    state: dict[str, bool] = {}
    for _, sql in _files("migrations_crdb"):
        for statement in split_statements(sql):
            table = re.match(r"ALTER TABLE (\w+) (SET|RESET) \(ttl", statement)
            if table is not None:
                state[table.group(1)] = table.group(2) == "SET"
    assert state == {"notifications": False, "notification_attempts": False}
