"""``GET /notifications``: its filter, its keyset cursor and its one SQL statement.

The list is newest first by ``(received_at, uuid)``, a total order, and a page continues
strictly after the last row of the previous one (keyset pagination). So a row is listed at
most once, and every row stored before the first page is listed exactly once, however many
rows arrive meanwhile (they are newer and land before the cursor).

The cursor is opaque to clients: base64url of a small JSON object holding the last row's
``received_at`` (in microseconds) and ``uuid``, a digest of the filter it was issued for,
and a checksum of both. An edited cursor, or one used with another filter, is refused
(422), so a client never silently gets a page of something else. The checksum has no
secret (receiver replicas and restarts must accept each other's cursors): it detects
edits, and a forged cursor can only name a position, which is validated like any value.

The statement is assembled from a fixed set of conditions, each with bind parameters only
(:func:`statement`); the indexes of migrations 0010 to 0012 serve every combination
without reading the table (``integration/test_operations.py`` shows the plans on
PostgreSQL).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import uuid as uuid_mod
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson

from notifsvc.model import FieldError, Priority, Reason, State, parse_time

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
PARAMETERS = ("state", "channel", "priority", "reason", "since", "until", "limit", "cursor")
#: Longest cursor read (one this API issues is about 150 characters).
MAX_CURSOR_CHARS = 512
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)

#: The columns of the public view of a notification (``GET /notification/{uuid}``).
COLUMNS = (
    "uuid, channel, state, attempts, conflicts, last_error, priority, recipient, subject, "
    "body, callback_url, accepted_at, received_at, forwarded_at, sent_at, failed_at, "
    "canceled_at, updated_at, send_at, expires_at, expired_at"
)

_CURSOR = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)
_LIMIT = re.compile(r"[0-9]{1,4}", re.ASCII)
_SALT = b"notifsvc-cursor-v1\x00"


class InvalidQuery(ValueError):
    """Query parameters that do not describe a list; ``errors`` names each one."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))


class Position(NamedTuple):
    """A row's place in the list's order (the keyset)."""

    received_at: datetime
    uuid: uuid_mod.UUID


@dataclass(frozen=True, slots=True)
class Filter:
    """What a list is of; every field set narrows it (None: not filtered on)."""

    state: State | None = None
    channel: str | None = None
    priority: Priority | None = None
    reason: Reason | None = None
    since: datetime | None = None  # inclusive, on received_at
    until: datetime | None = None  # exclusive

    @property
    def impossible(self) -> bool:
        """A reason is only ever a failed row's: with another state nothing matches."""
        return self.reason is not None and self.state not in (None, State.FAILED)

    def digest(self) -> str:
        """What a cursor is bound to: the same for the same filter, however it was written."""
        parts = [
            f"state={self.state or ''}",
            f"channel={self.channel or ''}",
            f"priority={self.priority or ''}",
            f"reason={self.reason or ''}",
            f"since={'' if self.since is None else micros(self.since)}",
            f"until={'' if self.until is None else micros(self.until)}",
        ]
        return hashlib.sha256("&".join(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class ListQuery:
    filter: Filter = field(default_factory=Filter)
    limit: int = DEFAULT_LIMIT
    after: Position | None = None  # from the cursor: the last row of the previous page


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None

    def as_json(self) -> dict[str, Any]:
        return {"items": self.items, "next_cursor": self.next_cursor}


def micros(at: datetime) -> int:
    """``at`` in whole microseconds since 1970 (exact: the database's own resolution)."""
    return (at - EPOCH) // MICROSECOND


def parse(pairs: Iterable[tuple[str, str]], channels: Collection[str]) -> ListQuery:
    """The query of ``GET /notifications?...``; :class:`InvalidQuery` names every parameter
    that is unknown, repeated or wrong. ``channels``: the names a channel filter may take."""
    values: dict[str, str] = {}
    errors: list[FieldError] = []
    for name, value in pairs:
        if name not in PARAMETERS:
            known = ", ".join(PARAMETERS)
            errors.append(FieldError(name, f"is not a parameter of this list (known: {known})"))
        elif name in values:
            errors.append(FieldError(name, "is given more than once"))
        else:
            values[name] = value
    flt = _filter(values, sorted(channels), errors)
    limit = _limit(values.get("limit"), errors)
    after = None
    if "cursor" in values and not errors:
        after = _decode(values["cursor"], flt, errors)
    if errors:
        raise InvalidQuery(errors)
    return ListQuery(flt, limit, after)


def _filter(values: dict[str, str], channels: list[str], errors: list[FieldError]) -> Filter:
    state = _choice(values, "state", [s.value for s in State], errors)
    priority = _choice(values, "priority", [p.value for p in Priority], errors)
    reason = _choice(values, "reason", [r.value for r in Reason], errors)
    return Filter(
        state=None if state is None else State(state),
        channel=_choice(values, "channel", channels, errors),
        priority=None if priority is None else Priority(priority),
        reason=None if reason is None else Reason(reason),
        since=_time(values, "since", errors),
        until=_time(values, "until", errors),
    )


def _choice(
    values: dict[str, str], name: str, options: list[str], errors: list[FieldError]
) -> str | None:
    raw = values.get(name)
    if raw is None or raw in options:
        return raw
    errors.append(FieldError(name, f"must be one of {', '.join(options)} (got {raw!r})"))
    return None


def _limit(raw: str | None, errors: list[FieldError]) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if _LIMIT.fullmatch(raw) and 1 <= int(raw) <= MAX_LIMIT:
        return int(raw)
    errors.append(
        FieldError("limit", f"must be a whole number from 1 to {MAX_LIMIT} (got {raw!r})")
    )
    return DEFAULT_LIMIT


def _time(values: dict[str, str], name: str, errors: list[FieldError]) -> datetime | None:
    raw = values.get(name)
    if raw is None:
        return None
    at = parse_time(raw)
    if at is None:
        hint = ""
        if re.search(r"[0-9] [0-9]{2}:[0-9]{2}$", raw):
            hint = "; a '+' in a URL reads as a space: write it %2B, or use Z"
        message = f"must be an RFC 3339 time with an offset, e.g. 2026-01-31T09:30:00Z{hint}"
        errors.append(FieldError(name, f"{message} (got {raw!r})"))
    return at


def encode_cursor(position: Position, flt: Filter) -> str:
    """The cursor of the page after ``position`` for ``flt``."""
    body = {"t": micros(position.received_at), "u": str(position.uuid), "f": flt.digest()}
    return _b64(orjson.dumps(body | {"c": _checksum(body)}, option=orjson.OPT_SORT_KEYS))


def _checksum(body: dict[str, Any]) -> str:
    return hashlib.sha256(_SALT + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(raw: str, flt: Filter, errors: list[FieldError]) -> Position | None:
    """The position ``raw`` names, if it is a cursor this API issued for ``flt``."""
    position, body = _read_cursor(raw)
    if position is None or body is None:
        message = "is not a cursor this API issued (altered or truncated): use next_cursor as is"
        errors.append(FieldError("cursor", message))
        return None
    if body["f"] != flt.digest():
        message = (
            "was issued for another filter: a cursor continues the list it came from; "
            "ask for the first page of this filter without one"
        )
        errors.append(FieldError("cursor", message))
        return None
    return position


def _read_cursor(raw: str) -> tuple[Position | None, dict[str, Any] | None]:
    if len(raw) > MAX_CURSOR_CHARS or not _CURSOR.fullmatch(raw):
        return None, None
    try:
        data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        body = orjson.loads(data)
    except (binascii.Error, ValueError):
        return None, None
    if _b64(data) != raw or not isinstance(body, dict) or set(body) != {"t", "u", "f", "c"}:
        return None, None
    claimed = body.pop("c")
    if not isinstance(claimed, str) or not hmac.compare_digest(claimed, _checksum(body)):
        return None, None
    return _position(body), body


def _position(body: dict[str, Any]) -> Position | None:
    t, u = body["t"], body["u"]
    if not isinstance(t, int) or isinstance(t, bool) or not isinstance(u, str):
        return None
    try:
        at = EPOCH + t * MICROSECOND
        uid = uuid_mod.UUID(u)
    except (OverflowError, ValueError):
        return None
    return Position(at, uid) if str(uid) == u and isinstance(body["f"], str) else None


#: The states of rows at rest and of rows in flight, spelled as the partial list indexes of
#: migration 0012 spell them: the planner proves that an index applies to a query by
#: finding the index's condition in it. Those indexes read ``resting_state``, the row's
#: state at rest and NULL in flight, which the database computes from ``state``; no index
#: reads ``state`` itself, so the forward and the claim (in flight to in flight) can be
#: HOT updates.
RESTING = (State.SCHEDULED, State.SENT, State.FAILED, State.CANCELED, State.EXPIRED)
IN_FLIGHT = (State.RECEIVED, State.FORWARDED, State.SENDING)
#: The states at rest that nothing moves on from (retention deletes them): all but
#: ``scheduled``, which waits for its time.
FINISHED = tuple(s for s in RESTING if s is not State.SCHEDULED)
#: The condition of the rows in flight (the index ``notifications_listed_in_flight``).
IS_IN_FLIGHT = "resting_state IS NULL"
#: The condition of the rows at rest (the indexes ``notifications_listed_resting_*``).
IS_AT_REST = "resting_state IN (" + ", ".join(f"'{s.value}'" for s in RESTING) + ")"
#: A failed row's reason code: the word its ``last_error`` starts with, as
#: :func:`notifsvc.model.reason_of` reads it (the expression of the index
#: ``notifications_listed_failed_by_reason_v2``, migration 0012).
REASON_KEY = "split_part(split_part(last_error, ':', 1), ' ', 1)"
#: The conditions of a filter, each taking its value(s) as ``{}`` (also read by the replay
#: jobs' pages, :mod:`notifsvc.db.replays`, which filter the same way). A state is no
#: parameter but one of :class:`State`'s values (see :func:`state_is`).
REASON_IS = "resting_state = 'failed' AND " + REASON_KEY + " = {}::text"
CHANNEL_IS = "channel = {}::text"
_PRIORITY = "priority = {}::text"
SINCE = "received_at >= {}::timestamptz"
UNTIL = "received_at < {}::timestamptz"
_AFTER = "(received_at, uuid) < ({}::timestamptz, {}::uuid)"
_ORDER = "ORDER BY received_at DESC, uuid DESC"


def state_is(state: State) -> str:
    """The condition on one state, the value written out (an enum's: nothing a client
    wrote), so that the planner sees which partial index holds the rows: a state at rest
    by ``resting_state``, one in flight among the rows in flight."""
    value = State(state).value
    if state in IN_FLIGHT:
        return f"{IS_IN_FLIGHT} AND state = '{value}'"
    return f"resting_state = '{value}'"


def statement(query: ListQuery) -> tuple[str, list[Any]]:
    """The SQL of ``query`` and its arguments: newest first, one more row than the page
    (whether a next page exists). A list with no state reads the range of each state at
    rest and that of the rows in flight, each up to that many rows, and merges them
    (migrations 0011 and 0012: no index holds all rows at rest in one range)."""
    f = query.filter
    args: list[Any] = []

    def bind(sql: str, *values: Any) -> str:
        numbers = range(len(args) + 1, len(args) + len(values) + 1)
        args.extend(values)
        return sql.format(*(f"${n}" for n in numbers))

    if f.reason is not None:  # implies state = 'failed'
        branches = [bind(REASON_IS, f.reason.value)]
    elif f.state is not None:
        branches = [state_is(f.state)]
    else:
        branches = [*(state_is(s) for s in RESTING), IS_IN_FLIGHT]
    common = _conditions(query, bind)
    limit = bind("{}", query.limit + 1)
    selects = [
        f"SELECT {COLUMNS} FROM notifications WHERE {' AND '.join([b, *common])} "  # noqa: S608
        f"{_ORDER} LIMIT {limit}"
        for b in branches
    ]
    if len(selects) == 1:
        return selects[0], args
    union = " UNION ALL ".join(f"({s})" for s in selects)
    return f"{union} {_ORDER} LIMIT {limit}", args


def _conditions(query: ListQuery, bind: Callable[..., str]) -> list[str]:
    """The conditions every branch of ``query`` has (all but the state's)."""
    f, out = query.filter, []
    if f.channel is not None:
        out.append(bind(CHANNEL_IS, f.channel))
    if f.priority is not None:
        out.append(bind(_PRIORITY, f.priority.value))
    if f.since is not None:
        out.append(bind(SINCE, f.since))
    if f.until is not None:
        out.append(bind(UNTIL, f.until))
    if query.after is not None:
        out.append(bind(_AFTER, query.after.received_at, query.after.uuid))
    return out
