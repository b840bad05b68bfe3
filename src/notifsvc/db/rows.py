"""How a multi-row statement sends its rows: one array per column, read with ``unnest``,
except for a column that needs no array.

Every array element costs the client an encoding step with asyncpg's container checks (a
Python-level ``isinstance`` against ``collections.abc`` per element; a quarter of a py-spy
profile of the notificator was in asyncpg's execution of its statements, mostly this) and
the server a value to read. Many columns
hold one value for a whole batch: an outcome's state, attempt number and provider, a
batch's channel and priority; an optional one is often NULL in every row. So a column is
sent as one of:

- ``ARRAY``: one element per row, for ``unnest`` (always the first column, the key, so that
  there is a row source; it may not be optional);
- ``ONCE``: the same value in every row, sent once as a scalar and repeated by the select
  list;
- ``ABSENT``: an optional column NULL in every row, left out (its default is NULL).

The statement's text depends on the shape, so statements are built per shape and cached;
a batch's shape is one of few in practice.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, NamedTuple


class Column(NamedTuple):
    """A column a multi-row statement writes: its name, its SQL type, and whether it may be
    left out when NULL in every row (it defaults to NULL)."""

    name: str
    type: str
    optional: bool = False


def columns(spec: str) -> tuple[Column, ...]:
    """Columns from ``"name type, name type?, ..."`` (``?``: optional)."""
    out = []
    for item in spec.split(","):
        name, type_ = item.split()
        out.append(Column(name, type_.rstrip("?"), optional=type_.endswith("?")))
    return tuple(out)


class Sent(Enum):
    ARRAY = "array"
    ONCE = "once"
    ABSENT = "absent"


Shape = tuple[Sent, ...]


def shape_of(columns: tuple[Column, ...], arrays: list[list[Any]]) -> tuple[Shape, list[Any]]:
    """How each of ``columns`` is sent, given each one's values in row order, and the
    statement's parameters in column order (an array, a scalar, or nothing)."""
    out: list[Sent] = []
    params: list[Any] = []
    for i, (column, values) in enumerate(zip(columns, arrays, strict=True)):
        if column.optional and values.count(None) == len(values):
            out.append(Sent.ABSENT)
        elif i == 0 or not values or values != [values[0]] * len(values):
            out.append(Sent.ARRAY)
            params.append(values)
        else:
            out.append(Sent.ONCE)
            params.append(values[0])
    return tuple(out), params


class Select(NamedTuple):
    """The parts of ``INSERT INTO t (names) SELECT values FROM source``, or of a subquery
    ``(SELECT values FROM source)`` with the columns' names."""

    names: str
    values: str
    source: str
    taken: int  # parameters


def select(columns: tuple[Column, ...], sent: Shape, first: int, alias: str = "r") -> Select:
    """The select over rows shaped ``sent``, its parameters numbered from ``$first``."""
    names: list[str] = []
    values: list[str] = []
    arrays: list[str] = []
    aliases: list[str] = []
    n = first
    for column, how in zip(columns, sent, strict=True):
        if how is Sent.ABSENT:
            continue
        names.append(column.name)
        if how is Sent.ARRAY:
            arrays.append(f"${n}::{column.type}[]")
            aliases.append(column.name)
            values.append(f"{alias}.{column.name}")
        else:
            values.append(f"${n}::{column.type} AS {column.name}")
        n += 1
    source = f"unnest({', '.join(arrays)}) AS {alias}({', '.join(aliases)})"
    return Select(", ".join(names), ", ".join(values), source, n - first)
