from __future__ import annotations

from loadtest import pg_statements


def test_a_long_statement_is_cut_to_one_line_of_the_label_width() -> None:
    text = "SELECT a,\n       b\nFROM t WHERE " + " AND ".join(f"c{i} = {i}" for i in range(30))
    label = pg_statements.label(text)
    assert label.startswith("SELECT a, b FROM t WHERE c0 = 0")
    assert len(label) == pg_statements.LABEL_CHARS and label.endswith("…")
    assert pg_statements.label("SELECT 1") == "SELECT 1"
