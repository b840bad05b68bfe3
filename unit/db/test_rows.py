"""notifsvc.db.rows: what a multi-row statement sends stands for exactly the rows given."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from notifsvc.db.rows import Column, Sent, columns, select, shape_of

COLUMNS = columns("key int, kind text, note text?, n int?")
_ROWS = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.sampled_from(["a", "b"]),
        st.none() | st.sampled_from(["x", "y"]),
        st.none() | st.integers(0, 2),
    ),
    max_size=6,
)


def _rows_back(
    rows: list[tuple[Any, ...]], sent: tuple[Sent, ...], params: list[Any]
) -> list[tuple[Any, ...]]:
    """The rows the statement's select would produce from ``params`` (ABSENT: NULL)."""
    values = iter(params)
    columns = []
    for how in sent:
        if how is Sent.ABSENT:
            columns.append([None] * len(rows))
        elif how is Sent.ONCE:
            columns.append([next(values)] * len(rows))
        else:
            columns.append(next(values))
    assert next(values, None) is None  # every parameter used
    return list(zip(*columns, strict=True)) if rows else []


@given(_ROWS)
def test_the_parameters_stand_for_exactly_the_rows(rows: list[tuple[Any, ...]]) -> None:
    arrays = [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in COLUMNS]
    sent, params = shape_of(COLUMNS, arrays)
    assert sent[0] is Sent.ARRAY  # the key: always a row source
    assert _rows_back(rows, sent, params) == rows
    for column, how, values in zip(COLUMNS, sent, arrays, strict=True):
        assert (how is Sent.ABSENT) == (column.optional and all(v is None for v in values))


@given(_ROWS, st.integers(1, 9))
def test_the_select_numbers_its_parameters_in_order_from_the_first(
    rows: list[tuple[Any, ...]], first: int
) -> None:
    arrays = [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in COLUMNS]
    sent, params = shape_of(COLUMNS, arrays)
    s = select(COLUMNS, sent, first)
    numbers = [int(n) for n in re.findall(r"\$(\d+)::", f"{s.values} {s.source}")]
    assert sorted(numbers) == list(range(first, first + len(params))) and s.taken == len(params)
    assert s.names.split(", ") == [
        c.name for c, h in zip(COLUMNS, sent, strict=True) if h is not Sent.ABSENT
    ]
    assert s.source.startswith("unnest($")


def test_a_batch_with_one_kind_sends_it_once_and_leaves_out_a_column_never_set() -> None:
    sent, params = shape_of(COLUMNS, [[1, 2], ["a", "a"], [None, None], [None, 1]])
    assert sent == (Sent.ARRAY, Sent.ONCE, Sent.ABSENT, Sent.ARRAY)
    assert params == [[1, 2], "a", [None, 1]]
    s = select(COLUMNS, sent, 5)
    assert s == (
        "key, kind, n",
        "r.key, $6::text AS kind, r.n",
        "unnest($5::int[], $7::int[]) AS r(key, n)",
        3,
    )


def test_columns_are_read_from_their_names_and_types() -> None:
    expected = (
        Column("key", "int"),
        Column("kind", "text"),
        Column("note", "text", optional=True),
        Column("n", "int", optional=True),
    )
    assert columns("key int, kind text, note text?, n int?") == expected
