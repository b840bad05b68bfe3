"""The list's filter parser, its cursor and its SQL (notifsvc.db.queries), without a database;
the statement's plans on PostgreSQL are in integration/test_list_plans.py."""

from __future__ import annotations

import re
import string
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifsvc import channels, model
from notifsvc.db import queries
from notifsvc.db.migrate import _files, split_statements
from notifsvc.db.queries import Filter, InvalidQuery, ListQuery, Position, parse
from notifsvc.model import Priority, Reason, State, parse_time

CHANNELS = sorted(channels.REGISTRY)
T0 = datetime(2026, 1, 31, 9, 30, tzinfo=UTC)


def fields_of(pairs: list[tuple[str, str]]) -> list[str]:
    with pytest.raises(InvalidQuery) as caught:
        parse(pairs, CHANNELS)
    return [e.field for e in caught.value.errors]


def test_no_parameter_is_the_first_page_of_everything() -> None:
    assert parse([], CHANNELS) == ListQuery(Filter(), queries.DEFAULT_LIMIT, None)


def test_every_parameter_is_read() -> None:
    pairs = [
        ("state", "failed"),
        ("channel", "sms"),
        ("priority", "high"),
        ("reason", "throttled"),
        ("since", "2026-01-31T10:30:00+01:00"),
        ("until", "2026-01-31T09:30:00.5z"),
        ("limit", "200"),
    ]
    got = parse(pairs, CHANNELS)
    assert got.filter == Filter(
        State.FAILED,
        "sms",
        Priority.HIGH,
        Reason.THROTTLED,
        T0,
        T0 + timedelta(milliseconds=500),
    )
    assert got.limit == 200 and got.after is None


@pytest.mark.parametrize(
    ("pairs", "field"),
    [
        ([("status", "sent")], "status"),
        ([("state", "sent"), ("state", "failed")], "state"),
        ([("state", "SENT")], "state"),
        ([("state", "")], "state"),
        ([("channel", "pigeon")], "channel"),
        ([("priority", "urgent")], "priority"),
        ([("reason", "HTTP")], "reason"),
        ([("since", "2026-01-31T09:30:00")], "since"),
        ([("since", "2026-01-31 09:30:00Z")], "since"),
        ([("until", "2026-02-30T09:30:00Z")], "until"),
        ([("until", "yesterday")], "until"),
        ([("limit", "0")], "limit"),
        ([("limit", "201")], "limit"),
        ([("limit", "+5")], "limit"),
        ([("limit", "\u0665")], "limit"),  # an Arabic-Indic five: int() reads it, we do not
        ([("cursor", "")], "cursor"),
        ([("cursor", "not a cursor")], "cursor"),
    ],
)
def test_a_bad_parameter_is_named(pairs: list[tuple[str, str]], field: str) -> None:
    assert fields_of(pairs) == [field]


def test_every_bad_parameter_is_named_at_once() -> None:
    pairs = [("state", "x"), ("limit", "x"), ("since", "x"), ("colour", "red")]
    assert sorted(fields_of(pairs)) == ["colour", "limit", "since", "state"]


def test_a_plus_read_as_a_space_gets_a_hint() -> None:
    with pytest.raises(InvalidQuery, match="%2B"):
        parse([("since", "2026-01-31T09:30:00 01:00")], CHANNELS)


times = st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30), timezones=st.just(UTC))
filters = st.builds(
    Filter,
    state=st.none() | st.sampled_from(State),
    channel=st.none() | st.sampled_from(CHANNELS),
    priority=st.none() | st.sampled_from(Priority),
    reason=st.none() | st.sampled_from(Reason),
    since=st.none() | times,
    until=st.none() | times,
)
positions = st.builds(
    Position,
    st.datetimes(min_value=datetime(1970, 1, 1), timezones=st.just(UTC)),
    st.uuids(),
)


def query_of(f: Filter) -> list[tuple[str, str]]:
    """The query parameters that say ``f``."""
    values = {
        "state": f.state,
        "channel": f.channel,
        "priority": f.priority,
        "reason": f.reason,
        "since": f.since and f.since.isoformat(),
        "until": f.until and f.until.isoformat(),
    }
    return [(k, str(v)) for k, v in values.items() if v is not None]


@given(filters, positions)
def test_a_cursor_continues_its_own_list(f: Filter, at: Position) -> None:
    cursor = queries.encode_cursor(at, f)
    assert re.fullmatch("[A-Za-z0-9_-]+", cursor) and len(cursor) <= queries.MAX_CURSOR_CHARS
    got = parse([*query_of(f), ("cursor", cursor)], CHANNELS)
    assert got.filter == f and got.after == at


ALPHABET = string.ascii_letters + string.digits + "-_"


def edited(cursor: str, kind: str, where: int, char: str) -> str:
    if kind == "replace":
        return cursor[:where] + char + cursor[where + 1 :]
    if kind == "insert":
        return cursor[:where] + char + cursor[where:]
    if kind == "delete":
        return cursor[:where] + cursor[where + 1 :]
    return cursor[:where]


@given(
    filters,
    positions,
    st.sampled_from(["replace", "insert", "delete", "truncate"]),
    st.integers(0, 200),
    st.sampled_from(ALPHABET),
)
def test_any_edit_of_a_cursor_is_refused(
    f: Filter, at: Position, kind: str, where: int, char: str
) -> None:
    cursor = queries.encode_cursor(at, f)
    changed = edited(cursor, kind, where % (len(cursor) + 1), char)
    if changed == cursor:
        return
    with pytest.raises(InvalidQuery) as caught:
        parse([*query_of(f), ("cursor", changed)], CHANNELS)
    [error] = caught.value.errors
    assert error.field == "cursor" and "altered" in error.message


@given(filters, filters, positions)
def test_a_cursor_of_another_filter_is_refused(f: Filter, other: Filter, at: Position) -> None:
    cursor = queries.encode_cursor(at, f)
    pairs = [*query_of(other), ("cursor", cursor)]
    if other == f:
        assert parse(pairs, CHANNELS).after == at
        return
    with pytest.raises(InvalidQuery) as caught:
        parse(pairs, CHANNELS)
    [error] = caught.value.errors
    assert error.field == "cursor" and "another filter" in error.message


names = st.sampled_from([*queries.PARAMETERS, "sort", "offset", "State", ""])


@given(st.lists(st.tuples(names, st.text(max_size=40)), max_size=8))
def test_any_query_is_read_or_refused_by_name(pairs: list[tuple[str, str]]) -> None:
    try:
        got = parse(pairs, CHANNELS)
    except InvalidQuery as exc:
        assert exc.errors and {e.field for e in exc.errors} <= {name for name, _ in pairs}
        return
    assert 1 <= got.limit <= queries.MAX_LIMIT


# The RFC 3339 date-times schemathesis draws for a `date-time` parameter, and more.
digits = st.integers
rfc3339 = st.builds(
    "{:04d}-{:02d}-{:02d}{}{:02d}:{:02d}:{:02d}{}{}".format,
    digits(0, 9999),
    digits(1, 12),
    digits(1, 28),
    st.sampled_from("Tt"),
    digits(0, 23),
    digits(0, 59),
    digits(0, 60),
    st.just("") | st.text(string.digits, min_size=1, max_size=9).map(".".__add__),
    st.sampled_from(["Z", "z"])
    | st.builds("{}{:02d}:{:02d}".format, st.sampled_from("+-"), digits(0, 23), digits(0, 59)),
)


@given(rfc3339)
def test_every_rfc3339_time_is_read(raw: str) -> None:
    at = parse_time(raw)
    assert at is not None and model.EARLIEST <= at <= model.LATEST


@given(
    st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 1, 1)),
    st.integers(-23 * 60 - 59, 23 * 60 + 59),
)
def test_a_time_reads_as_the_instant_it_names(local: datetime, minutes: int) -> None:
    zone = timezone(timedelta(minutes=minutes))
    assert parse_time(local.replace(tzinfo=zone).isoformat()) == local.replace(tzinfo=zone)


@pytest.mark.parametrize(
    "raw",
    [
        "2026-01-31T09:30:00",
        "2026-01-31",
        "2026-01-31T24:00:00Z",
        "2026-01-31T09:30:61Z",
        "2026-01-31T09:30:00+24:00",
        "2026-01-31T09:30:00+01:60",
        "2026-01-31T09:30:00+0100",
        "2026-1-31T09:30:00Z",
        "\uff12026-01-31T09:30:00Z",  # a fullwidth digit
        "2026-01-31T09:30:00Z\n",
    ],
)
def test_what_is_not_rfc3339_is_refused(raw: str) -> None:
    assert parse_time(raw) is None


def test_times_past_the_calendar_are_its_ends() -> None:
    assert parse_time("0000-02-29T00:00:00Z") == model.EARLIEST
    assert parse_time("0001-01-01T00:00:00+23:59") == model.EARLIEST
    assert parse_time("9999-12-31T23:59:60-23:59") == model.LATEST
    assert parse_time("2016-12-31T23:59:60Z") == datetime(2017, 1, 1, tzinfo=UTC)


@given(filters, st.none() | positions, st.integers(1, queries.MAX_LIMIT))
def test_the_statement_binds_every_value(f: Filter, after: Position | None, limit: int) -> None:
    sql, args = queries.statement(ListQuery(f, limit, after))
    numbers = sorted({int(n) for n in re.findall(r"\$(\d+)", sql)})
    assert numbers == list(range(1, len(args) + 1))
    assert args[-1] == limit + 1
    literals = sql.replace(queries.REASON_KEY, "")
    for state in State:
        literals = literals.replace(f"'{state.value}'", "")
    assert "'" not in literals  # no literal but the reason key's and states: values are bound
    assert sql.rstrip().endswith(f"ORDER BY received_at DESC, uuid DESC LIMIT ${len(args)}")


@given(filters, st.none() | positions)
def test_a_list_reads_resting_and_in_flight_rows_unless_a_state_says_which(
    f: Filter, after: Position | None
) -> None:
    """With no state: each resting state's range (no index holds them all in one since
    migration 0011) and the range of the rows in flight."""
    sql, _ = queries.statement(ListQuery(f, 50, after))
    branches = sql.count("SELECT ")
    assert branches == (1 if f.state is not None or f.reason is not None else 6)
    if branches == 6:
        for state in queries.RESTING:
            assert f"WHERE {queries.state_is(state)} " in sql
        assert f"WHERE {queries.IS_IN_FLIGHT} " in sql
    assert re.search(r"(?<!resting_)state IN", sql) is None


def test_every_state_is_resting_or_in_flight() -> None:
    assert sorted(queries.RESTING + queries.IN_FLIGHT) == sorted(State)
    assert not set(queries.RESTING) & set(queries.IN_FLIGHT)


@pytest.mark.parametrize("state", list(State))
def test_a_state_is_asked_through_the_column_the_indexes_read(state: State) -> None:
    condition = queries.state_is(state)
    if state in queries.IN_FLIGHT:
        assert condition == f"resting_state IS NULL AND state = '{state.value}'"
    else:
        assert condition == f"resting_state = '{state.value}'"


def _indexes(*folders: str, prefix: str = "notifications_") -> dict[str, str]:
    """The indexes of ``notifications`` the migrations of ``folders`` leave (by default the
    portable ones, as on PostgreSQL) whose names start with ``prefix``, by name: each one's
    CREATE statement."""
    created: dict[str, str] = {}
    for folder in folders or ("migrations",):
        for _, sql in _files(folder):
            for statement in (" ".join(s.split()) for s in split_statements(sql)):
                made = re.match(r"CREATE INDEX IF NOT EXISTS (\w+) ON notifications ", statement)
                dropped = re.match(r"DROP INDEX IF EXISTS (?:notifications@)?(\w+)$", statement)
                if re.search(r"\bINDEX\b.* ON notifications\b", statement):
                    assert made, f"an index spelled as this reading does not know: {statement}"
                if made and made.group(1).startswith(prefix):
                    created[made.group(1)] = statement
                elif dropped:
                    created.pop(dropped.group(1), None)
    return created


def _list_indexes(*folders: str) -> dict[str, str]:
    return _indexes(*folders, prefix="notifications_listed_")


@pytest.mark.parametrize("folders", [("migrations",), ("migrations", "migrations_crdb")])
def test_no_index_reads_what_the_forward_and_the_claim_change(folders: tuple[str, ...]) -> None:
    """``state`` and ``updated_at`` change at every step of a row in flight: an index that
    reads either (in its key or its condition) makes each of those updates write a new entry
    in every index, where they could be HOT updates (migration 0012)."""
    indexes = _indexes(*folders)
    assert "notifications_listed_in_flight" in " ".join(indexes)
    for name, statement in indexes.items():
        assert re.search(r"(?<!resting_)\bstate\b|\bupdated_at\b", statement) is None, name


def test_the_resting_state_is_null_exactly_for_the_states_in_flight() -> None:
    [(_, sql)] = [f for f in _files("migrations") if f[0] == "0012_hot_updates.sql"]
    [column] = [s for s in split_statements(sql) if "ADD COLUMN IF NOT EXISTS resting_state" in s]
    in_flight = ", ".join(f"'{s.value}'" for s in queries.IN_FLIGHT)
    assert f"CASE WHEN state IN ({in_flight}) THEN NULL ELSE state END" in " ".join(column.split())


def test_the_partial_indexes_say_what_the_queries_say() -> None:
    indexes = _list_indexes()
    resting = [s for n, s in indexes.items() if re.match(r"notifications_listed_resting_", n)]
    assert len(resting) == 2
    assert all(s.endswith(f"WHERE {queries.IS_AT_REST}") for s in resting)
    [in_flight] = [s for n, s in indexes.items() if n == "notifications_listed_in_flight"]
    assert in_flight.endswith(f"WHERE {queries.IS_IN_FLIGHT}")


def test_no_index_holds_every_resting_row_in_one_range() -> None:
    """Each one costs every notification an entry at its outcome (migration 0011)."""
    resting = [n for n in _list_indexes() if n.startswith("notifications_listed_resting")]
    assert sorted(resting) == [
        "notifications_listed_resting_by_channel_state",
        "notifications_listed_resting_by_state",
    ]
    on_cockroach = _list_indexes("migrations", "migrations_crdb")
    assert sorted(on_cockroach) == [
        "notifications_listed_failed_by_reason_v2",
        "notifications_listed_in_flight_sharded",
        "notifications_listed_resting_by_channel_state_sharded",
        "notifications_listed_resting_by_state_sharded",
    ]


def test_a_reason_is_asked_by_its_key_alone() -> None:
    for state in (None, State.FAILED):
        f = Filter(state=state, reason=Reason.TOKEN_INVALID)
        sql, args = queries.statement(ListQuery(f))
        expected = f"WHERE resting_state = 'failed' AND {queries.REASON_KEY} = $1::text ORDER BY"
        assert expected in sql
        assert args == ["token_invalid", queries.DEFAULT_LIMIT + 1]


def test_the_reason_key_is_the_indexed_expression() -> None:
    index = _list_indexes()["notifications_listed_failed_by_reason_v2"]
    assert f"(({queries.REASON_KEY}), received_at, uuid) WHERE resting_state = 'failed'" in index


def test_a_reason_with_another_state_matches_nothing() -> None:
    assert Filter(state=State.SENT, reason=Reason.THROTTLED).impossible
    assert not Filter(state=State.FAILED, reason=Reason.THROTTLED).impossible
    assert not Filter(reason=Reason.THROTTLED).impossible


def test_the_digest_is_the_filter_not_its_spelling() -> None:
    a = parse([("since", "2026-01-31T10:30:00+01:00")], CHANNELS).filter
    b = parse([("since", "2026-01-31T09:30:00.000Z")], CHANNELS).filter
    assert a.digest() == b.digest() != Filter().digest()
    assert Filter(channel="sms").digest() != Filter(state=State.SENT).digest()


def test_a_cursor_names_microseconds_exactly() -> None:
    at = Position(datetime(2026, 1, 31, 9, 30, 0, 123457, tzinfo=UTC), uuid.uuid4())
    got = parse([("cursor", queries.encode_cursor(at, Filter()))], CHANNELS)
    assert got.after == at
