"""notifsvc.db.rows: what a multi-row statement sends stands for exactly the rows given,
in few shapes."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifsvc.db import store
from notifsvc.db.rows import Column, Sent, columns, select, shape_of, shapes

COLUMNS = columns("key int, kind text=, tries int=, note text?, n int?, body text")
_ROWS = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.sampled_from(["a", "b"]),
        st.integers(1, 2),
        st.none() | st.sampled_from(["x", "y"]),
        st.none() | st.integers(0, 2),
        st.sampled_from(["p", "q"]),
    ),
    max_size=6,
)


def _arrays(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    return [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in COLUMNS]


def _rows_back(
    rows: list[tuple[Any, ...]], sent: tuple[Sent, ...], params: list[Any]
) -> list[tuple[Any, ...]]:
    """The rows the statement's select would produce from ``params`` (ABSENT: NULL)."""
    values = iter(params)
    out = []
    for how in sent:
        if how is Sent.ABSENT:
            out.append([None] * len(rows))
        elif how is Sent.ONCE:
            out.append([next(values)] * len(rows))
        else:
            out.append(next(values))
    assert next(values, None) is None  # every parameter used
    return list(zip(*out, strict=True)) if rows else []


@given(_ROWS)
def test_the_parameters_stand_for_exactly_the_rows(rows: list[tuple[Any, ...]]) -> None:
    sent, params = shape_of(COLUMNS, _arrays(rows))
    assert sent[0] is Sent.ARRAY  # the key: always a row source
    assert _rows_back(rows, sent, params) == rows
    for column, how, values in zip(COLUMNS, sent, _arrays(rows), strict=True):
        assert (how is Sent.ABSENT) == (column.optional and all(v is None for v in values))
        assert how is not Sent.ONCE or column.per_batch


@given(_ROWS)
def test_the_per_batch_columns_are_all_sent_once_or_none_is(rows: list[tuple[Any, ...]]) -> None:
    sent, _ = shape_of(COLUMNS, _arrays(rows))
    once = {c.name for c, how in zip(COLUMNS, sent, strict=True) if how is Sent.ONCE}
    alike = bool(rows) and all(len({r[i] for r in rows}) == 1 for i in (1, 2))
    assert once == ({"kind", "tries"} if alike else set())


@given(_ROWS, st.integers(1, 9))
def test_the_select_numbers_its_parameters_in_order_from_the_first(
    rows: list[tuple[Any, ...]], first: int
) -> None:
    sent, params = shape_of(COLUMNS, _arrays(rows))
    s = select(COLUMNS, sent, first)
    numbers = [int(n) for n in re.findall(r"\$(\d+)::", f"{s.values} {s.source}")]
    assert sorted(numbers) == list(range(first, first + len(params))) and s.taken == len(params)
    assert s.names.split(", ") == [
        c.name for c, h in zip(COLUMNS, sent, strict=True) if h is not Sent.ABSENT
    ]
    assert s.source.startswith("unnest($")


def test_a_batch_of_one_kind_sends_it_once_each_value_cast_to_its_type() -> None:
    sent, params = shape_of(
        COLUMNS, [[1, 2], ["a", "a"], [1, 1], [None, None], [None, 1], ["p", "p"]]
    )
    assert sent == (Sent.ARRAY, Sent.ONCE, Sent.ONCE, Sent.ABSENT, Sent.ARRAY, Sent.ARRAY)
    assert params == [[1, 2], "a", 1, [None, 1], ["p", "p"]]  # body is no per-batch column
    s = select(COLUMNS, sent, 5)
    assert s == (
        "key, kind, tries, n, body",
        "r.key, $6::text AS kind, $7::int AS tries, r.n, r.body",
        "unnest($5::int[], $8::int[], $9::text[]) AS r(key, n, body)",
        5,
    )


def test_columns_are_read_from_their_names_and_types() -> None:
    expected = (
        Column("key", "int"),
        Column("kind", "text", per_batch=True),
        Column("n", "int", optional=True),
    )
    assert columns("key int, kind text=, n int?") == expected
    for spec in ("key int?, n int", "key int=, n int"):
        with pytest.raises(ValueError, match="the key column key is sent as an array"):
            columns(spec)


def test_each_statement_caches_every_shape_it_can_take() -> None:
    """All per-batch columns once or none: 2 * 2**optional shapes, no more (a shape per
    column would multiply the statements asyncpg prepares on each connection)."""
    assert shapes(COLUMNS) == 2 * 2**2
    insert, outcomes = store._insert.cache_info(), store._outcomes.cache_info()
    assert insert.maxsize == shapes(store._NOTIFICATION_COLUMNS) == 2 * 2**5
    both = shapes(store._OUTCOME_COLUMNS) * shapes(store._ATTEMPT_COLUMNS)
    assert outcomes.maxsize == both == 2 * 2 * 2**4


def test_a_time_is_sent_as_unix_seconds_and_converted_in_the_statement() -> None:
    cols = columns("key int, at epoch, kind text=, when epoch=")
    sent, params = shape_of(cols, [[1, 2], [1.5, 2.5], ["a", "a"], [9.25, 9.25]])
    assert params == [[1, 2], [1.5, 2.5], "a", 9.25]  # floats: no datetime is built
    assert select(cols, sent, 1) == (
        "key, at, kind, when",
        "r.key, to_timestamp(r.at) AS at, $3::text AS kind, to_timestamp($4::float8) AS when",
        "unnest($1::int[], $2::float8[]) AS r(key, at)",
        4,
    )
