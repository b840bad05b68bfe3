"""How a multi-row statement sends its rows: one array per column, read with ``unnest``,
except for columns that need no array.

Every array element costs the client an encoding step with asyncpg's container checks (a
Python-level ``isinstance`` against ``collections.abc`` per element; a quarter of a py-spy
profile of the notificator was in asyncpg's execution of its statements, mostly this) and
the server a value to read. Some columns usually hold one value for a whole batch (an
outcome's state, an attempt's number and provider, a batch's channel and priority): they
are marked *per batch*. An optional column is often NULL in every row. So a column is
sent as one of:

- ``ARRAY``: one element per row, for ``unnest`` (always the first column, the key, so
  that there is a row source);
- ``ONCE``: a per-batch column, when every per-batch column of the statement holds one
  value in every row, sent once as a scalar that the select list repeats;
- ``ABSENT``: an optional column NULL in every row, left out (its default is NULL).

A time goes as unix seconds (type ``epoch``): a float8 that the statement turns into a
``timestamptz`` with ``to_timestamp`` (PostgreSQL and CockroachDB alike). asyncpg encodes a
float in a quarter of a ``datetime``'s time, and the caller builds no ``datetime``: the
stages hold their times as unix seconds.

All the per-batch columns are sent once or none is: a statement then has at most
``2 * 2**optional`` shapes (:func:`shapes`), each built once and cached, and asyncpg keeps
few prepared statements per connection for it.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, NamedTuple


class Column(NamedTuple):
    """A column a multi-row statement writes: its name, its SQL type, whether it may be left
    out when NULL in every row (it defaults to NULL), and whether it usually holds one value
    for a whole batch."""

    name: str
    type: str
    optional: bool = False
    per_batch: bool = False


#: Column types sent as another type and converted in the statement: (sent as, conversion).
_CONVERTED = {"epoch": ("float8", "to_timestamp({})")}


def columns(spec: str) -> tuple[Column, ...]:
    """Columns from ``"name type, name type?, name type=, ..."`` (``?``: optional; ``=``:
    per batch). The first is the key: neither."""
    out = []
    for item in spec.split(","):
        name, type_ = item.split()
        optional, per_batch = type_.endswith("?"), type_.endswith("=")
        out.append(Column(name, type_.rstrip("?="), optional, per_batch))
    if out[0].optional or out[0].per_batch:
        raise ValueError(f"the key column {out[0].name} is sent as an array, always")
    return tuple(out)


def shapes(cols: tuple[Column, ...]) -> int:
    """How many shapes a statement over ``cols`` can take."""
    once = 2 if any(c.per_batch for c in cols) else 1
    return once << sum(c.optional for c in cols)


class Sent(Enum):
    ARRAY = "array"
    ONCE = "once"
    ABSENT = "absent"


Shape = tuple[Sent, ...]


def shape_of(cols: tuple[Column, ...], arrays: list[list[Any]]) -> tuple[Shape, list[Any]]:
    """How each of ``cols`` is sent, given each one's values in row order, and the
    statement's parameters in column order (an array, a scalar, or nothing)."""
    once = bool(arrays[0]) and all(
        values == [values[0]] * len(values)
        for c, values in zip(cols, arrays, strict=True)
        if c.per_batch
    )
    out: list[Sent] = []
    params: list[Any] = []
    for column, values in zip(cols, arrays, strict=True):
        if column.optional and values.count(None) == len(values):
            out.append(Sent.ABSENT)
        elif once and column.per_batch:
            out.append(Sent.ONCE)
            params.append(values[0])
        else:
            out.append(Sent.ARRAY)
            params.append(values)
    return tuple(out), params


class Select(NamedTuple):
    """The parts of ``INSERT INTO t (names) SELECT values FROM source``, or of a subquery
    ``(SELECT values FROM source)`` with the columns' names."""

    names: str
    values: str
    source: str
    taken: int  # parameters


def select(cols: tuple[Column, ...], sent: Shape, first: int, alias: str = "r") -> Select:
    """The select over rows shaped ``sent``, its parameters numbered from ``$first``."""
    names: list[str] = []
    values: list[str] = []
    arrays: list[str] = []
    aliases: list[str] = []
    n = first
    for column, how in zip(cols, sent, strict=True):
        if how is Sent.ABSENT:
            continue
        names.append(column.name)
        wire, convert = _CONVERTED.get(column.type, (column.type, "{}"))
        if how is Sent.ARRAY:
            arrays.append(f"${n}::{wire}[]")
            aliases.append(column.name)
            value = f"{alias}.{column.name}"
        else:
            value = f"${n}::{wire}"
        converted = convert.format(value)
        plain = converted == value and how is Sent.ARRAY
        values.append(value if plain else f"{converted} AS {column.name}")
        n += 1
    source = f"unnest({', '.join(arrays)}) AS {alias}({', '.join(aliases)})"
    return Select(", ".join(names), ", ".join(values), source, n - first)
