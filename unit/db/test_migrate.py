from __future__ import annotations

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
