"""``make bench-store --variant A+B``: variant files composed in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.bench_store import variant_sql
from notifsvc.db.migrate import split_statements

SQL = Path(__file__).resolve().parents[2] / "loadtest" / "sql"


def test_a_variant_is_its_files_statements_in_the_order_given() -> None:
    spec = f"{SQL / 'before_0012.sql'}+{SQL / 'fillfactor_50.sql'}"
    statements = split_statements(variant_sql(spec))
    assert statements[0] == "ALTER TABLE notifications SET (fillfactor = 100)"
    assert statements[1].startswith("DROP INDEX IF EXISTS notifications_listed_resting_by_state")
    assert statements[-1] == "ALTER TABLE notifications SET (fillfactor = 50)"
    assert sum("fillfactor" in s for s in statements) == 2


def test_a_variant_naming_a_missing_file_stops_the_benchmark(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        variant_sql(f"{SQL / 'fillfactor_70.sql'}+{tmp_path / 'nothing.sql'}")
