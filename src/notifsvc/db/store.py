"""The notification store: one statement per batch, portable to PostgreSQL and CockroachDB.

Every statement here is idempotent, so a statement whose outcome is unknown (a dropped
connection, CockroachDB's 40003) or that lost a serialization race (40001) is simply run
again. Short retries happen here. Every error leaves this module classified (see
:mod:`notifsvc.errors`): :class:`StoreUnavailable` for the stage to pause on,
:class:`StoreRefused` for data the database will never take, :class:`StoreMisconfigured`
for a schema or access problem.
"""

from __future__ import annotations

import functools
import logging
import operator
import ssl
import time
import uuid as uuid_mod
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, NamedTuple, TypeVar

import asyncpg
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from notifsvc import errors
from notifsvc.attempts import Attempt
from notifsvc.db import connect, queries
from notifsvc.db.rows import Shape, columns, select, shape_of, shapes
from notifsvc.model import Notification, Priority, State, reason_of

log = logging.getLogger(__name__)
T = TypeVar("T")

#: SQLSTATE classes (first two characters) and what they mean for a stage. Anything not
#: listed is taken as a refusal of the data at hand (22 data exception, 23 integrity, 54
#: program limit, ...): the batch loop isolates the record that causes it.
_UNAVAILABLE_CLASSES = frozenset(
    {
        "08",  # connection exception
        "25",  # invalid transaction state (e.g. read-only during a failover)
        "40",  # 40001 serialization, 40003 unknown completion, 40P01 deadlock
        "53",  # insufficient resources: 53300 too many connections, disk full
        "55",  # object not in prerequisite state: 55P03 lock not available
        "57",  # operator intervention: 57014 statement timeout, 57P01 admin shutdown
        "58",  # system error (I/O)
        # internal error: the server's trouble, not the data's (XX000; CockroachDB's
        # uncategorized XXUUU, e.g. a range whose replicas are unavailable). Taken as a
        # refusal of the record, an episode of it dead-lettered accepted notifications.
        "XX",
    }
)
_STAGE_CLASSES = frozenset(
    {
        "0A",  # feature not supported: the SQL does not run on this database
        "28",  # invalid authorization
        "3D",  # the database does not exist
        "3F",  # the schema does not exist
        "42",  # undefined table or column (not migrated), insufficient privilege
    }
)
#: Longest error text kept in ``last_error``.
MAX_ERROR_CHARS = 2_000
#: Longest texts kept in an attempt row: the error, its class, the message id, the provider.
MAX_ATTEMPT_ERROR_CHARS = 1_000
MAX_ATTEMPT_NAME_CHARS = 200
#: Bytes of client data per insert statement: CockroachDB refuses a Raft command over 64 MiB
#: and PostgreSQL's memory use grows with it; a 1,000-row batch of near-limit bodies is split.
MAX_STATEMENT_BYTES = 4 * 1024 * 1024
#: Seconds before a statement is abandoned (then retried as an outage).
COMMAND_TIMEOUT = 30.0


_CLIENT_STATE = asyncpg.exceptions.InternalClientError


class StoreUnavailable(errors.Unavailable):
    """The database did not answer (or kept refusing for now) after the short retries."""


class StoreRefused(errors.RecordError):
    """The database refused the data of this statement for good (SQLSTATE 22, 23, 54...)."""


class StoreMisconfigured(errors.StageError):
    """The database is unusable as configured: schema missing, no access, wrong database."""


def classify(exc: BaseException) -> errors.PipelineError:
    """The taxonomy's view of an exception raised by asyncpg or the connection."""
    if isinstance(exc, errors.PipelineError):
        return exc
    if isinstance(exc, asyncpg.PostgresError):
        return _classify_sqlstate(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):  # an OSError, but no outage
        return StoreMisconfigured(f"the database's TLS certificate is not trusted: {exc}")
    if isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError):
        # asyncpg's client-side DataError: a query argument it cannot encode.
        return StoreRefused(f"the database client refused the data: {exc}")
    if isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError | _CLIENT_STATE):
        # Includes asyncpg's InternalClientError ("another operation is in progress"), seen
        # on connections broken by a database restart.
        return StoreUnavailable(f"database unavailable: {exc!r}")
    return StoreRefused(f"unexpected database client error: {exc!r}")


def _classify_sqlstate(exc: asyncpg.PostgresError) -> errors.PipelineError:
    state = str(exc.sqlstate or "")
    message = f"database error {state}: {exc}"
    if state[:2] in _UNAVAILABLE_CLASSES:
        return StoreUnavailable(message)
    if state[:2] in _STAGE_CLASSES:
        return StoreMisconfigured(message)
    return StoreRefused(message)


def is_retriable(exc: BaseException) -> bool:
    return isinstance(classify(exc), errors.Unavailable)


@dataclass(frozen=True, slots=True)
class StoredRow:
    notification: Notification
    fingerprint: bytes
    state: State


@dataclass(frozen=True, slots=True)
class Requeued:
    """A failed row moved back to ``forwarded``: its message, its attempts so far (the
    attempt numbers go on from there), and its public view."""

    notification: Notification
    attempts: int
    view: dict[str, Any]


class Outcome(NamedTuple):
    uuid: uuid_mod.UUID
    state: State  # SENT, FAILED, FORWARDED (postponed) or EXPIRED (never to be sent)
    attempts: int
    error: str | None = None


def by_uuid(uuids: Iterable[uuid_mod.UUID]) -> list[uuid_mod.UUID]:
    """``uuids`` in the order of their keys (PostgreSQL and CockroachDB compare UUIDs by their
    bytes): the order in which concurrent writers lock rows. Sorted by their integers, the
    same order, since ``UUID.__lt__`` is Python code (a sort of 150 took 92 µs, now 15)."""
    return sorted(uuids, key=_INT)


_INT = operator.attrgetter("int")


def _uuid_order(item: Outcome | Notification) -> int:
    return item.uuid.int


def _attempt_order(a: Attempt) -> tuple[int, int, int]:
    """:attr:`Attempt.key`'s order."""
    return a.uuid.int, a.number, a.seq


def _seconds(r: asyncpg.Record, column: str) -> float | None:
    """A time column as unix seconds (None when NULL). Every statement that reads a
    notification selects it: one that forgot ``send_at`` would send a scheduled one now."""
    value = r[column]
    return value.timestamp() if value is not None else None


#: The states :data:`_CANCEL` takes a row out of.
_CANCELABLE = (State.RECEIVED, State.SCHEDULED, State.FORWARDED)


#: The columns the multi-row statements write (:mod:`notifsvc.db.rows`: each sent as an
#: array, once, or not at all).
_NOTIFICATION_COLUMNS = columns(
    "uuid uuid, channel text=, recipient text, body text, subject text?, priority text=, "
    "fingerprint bytea, accepted_at epoch, callback_url text?, client text?, "
    "send_at epoch?, expires_at epoch?"
)
_ATTEMPT_COLUMNS = columns(
    "uuid uuid, attempt_number int=, seq int8=, outcome text=, started_at epoch, "
    "finished_at epoch, provider text=, status_code int?, message_id text?, "
    "error_class text?, error text?"
)
#: An outcome's columns (the UPDATE sets each one, NULL included: none is optional).
_OUTCOME_COLUMNS = columns("uuid uuid, state text=, attempts int=, error text=")


@functools.lru_cache(maxsize=shapes(_NOTIFICATION_COLUMNS))
def _insert(sent: Shape) -> str:
    s = select(_NOTIFICATION_COLUMNS, sent, 1)
    return f"""
INSERT INTO notifications ({s.names})
SELECT {s.values} FROM {s.source}
ON CONFLICT (uuid) DO NOTHING
RETURNING uuid
"""  # noqa: S608 - names and types are constants


_LOOKUP = """
SELECT uuid, channel, recipient, body, subject, priority, fingerprint, state, accepted_at,
       callback_url, client, send_at, expires_at
FROM notifications WHERE uuid = ANY($1::uuid[])
"""
#: Statements that look rows up by UUID test their state as ``(state || '')``, which no
#: index holds, and join a list of UUIDs with ``unnest``: the planner then takes one
#: primary-key look-up per UUID. Given a plain state condition, PostgreSQL 18 proved from it
#: that a partial index applies (the reconciler's unfinished rows, the lists' unfinished or
#: finished ones), expected a handful of rows there, and scanned it, through every dead
#: entry it held: 7-13 ms for 100 rows instead of under 1 (docs/performance.md).
_MARK_FORWARDED = """
UPDATE notifications AS n SET state = 'forwarded', forwarded_at = now(), updated_at = now()
FROM unnest($1::uuid[]) AS u(id) WHERE n.uuid = u.id AND (n.state || '') = 'received'
"""
#: The router's placement of a notification whose ``send_at`` is ahead (produced to a delay
#: tier, or left in the database for the scheduler's reader).
_MARK_SCHEDULED = """
UPDATE notifications AS n SET state = 'scheduled', updated_at = now()
FROM unnest($1::uuid[]) AS u(id) WHERE n.uuid = u.id AND (n.state || '') = 'received'
"""
#: Rows whose ``expires_at`` passed before they were sent: never sent afterwards. Only
#: unfinished ones move (a row sent, failed or canceled meanwhile stays so); the answer is
#: those that moved, for their caller to announce.
_EXPIRE = """
UPDATE notifications AS n
SET state = 'expired', expired_at = now(), updated_at = now(), last_error = $2
FROM unnest($1::uuid[]) AS u(id)
WHERE n.uuid = u.id AND (n.state || '') IN ('received', 'scheduled', 'forwarded', 'sending')
RETURNING n.uuid
"""
_CONFLICTS = """
UPDATE notifications AS n SET conflicts = n.conflicts + c.n, updated_at = now()
FROM unnest($1::uuid[], $2::int[]) AS c(uuid, n) WHERE n.uuid = c.uuid
"""
#: The notificator's claim of a batch (see :meth:`Store.claim`): rows it may send now move
#: to ``sending`` (a redelivered batch re-claims its own; a ``scheduled`` one is taken too:
#: the scheduler produces a due one to its lane before it marks it forwarded); the answer is
#: the rows that exist and were not claimed (sent, failed, canceled, expired), judged by the
#: UPDATE alone. (Reading their
#: state in the outer SELECT would not do on PostgreSQL: it sees the statement's snapshot,
#: so a cancel committed while the UPDATE waited for the row's lock would be missed.)
_CLAIM = """
WITH claimed AS (
    UPDATE notifications AS n SET state = 'sending', updated_at = now()
    FROM unnest($1::uuid[]) AS u(id)
    WHERE n.uuid = u.id AND (n.state || '') IN ('received', 'scheduled', 'forwarded', 'sending')
    RETURNING n.uuid
)
SELECT u.id AS uuid FROM unnest($1::uuid[]) AS u(id)
WHERE u.id NOT IN (SELECT uuid FROM claimed)
  AND EXISTS (SELECT 1 FROM notifications AS n WHERE n.uuid = u.id)
"""
#: An operator's cancel: only a row nothing was sent for yet (the notificator's claim takes
#: it out of these states, so of a cancel and a claim racing, one finds the row changed).
_CANCEL = f"""
UPDATE notifications SET state = 'canceled', canceled_at = now(), updated_at = now()
WHERE uuid = $1 AND (state || '') IN ('received', 'scheduled', 'forwarded')
RETURNING {queries.COLUMNS}
"""  # noqa: S608 - a constant column list
#: An operator's retry or replay: failed rows back to ``forwarded``, only if still failed
#: (so a retry sent twice requeues once), with what their message needs.
_REQUEUE = f"""
UPDATE notifications AS n SET state = 'forwarded', forwarded_at = now(), updated_at = now(),
    replayed_from = attempts
FROM unnest($1::uuid[]) AS u(id) WHERE n.uuid = u.id AND (n.state || '') = 'failed'
RETURNING {queries.COLUMNS}, client
"""  # noqa: S608 - a constant column list


#: The outcomes of a flush and the attempts behind them, in one statement, so in one
#: transaction (retried as a whole on 40001, one round trip; CockroachDB retries an implicit
#: transaction itself): a row already sent or canceled stays so, and an attempt already
#: written (the same flush run again after an unknown outcome) is kept as it was. With no
#: attempts the insert is of no rows. An ``expired`` row stays expired unless the outcome is
#: ``sent`` (a send that did happen is the truth), so a late postponement never revives it.
#: Nor does one revive a ``failed`` row: the notificator writes a postponement before it
#: produces the retry, but a former owner of the partition (a rebalance while its pass was
#: sending) may write one after the new owner's pass failed the row; the row stays failed
#: with its reason, and only the late pass's attempts are added.
@functools.lru_cache(maxsize=shapes(_OUTCOME_COLUMNS) * shapes(_ATTEMPT_COLUMNS))
def _outcomes(outcomes: Shape, attempts: Shape) -> str:
    o = select(_OUTCOME_COLUMNS, outcomes, 1)
    a = select(_ATTEMPT_COLUMNS, attempts, 1 + o.taken)
    return (
        _OUTCOMES.replace("$ATTEMPT_NAMES", a.names)
        .replace("$ATTEMPT_VALUES", a.values)
        .replace("$ATTEMPT_SOURCE", a.source)
        .replace("$OUTCOME_VALUES", o.values)
        .replace("$OUTCOME_SOURCE", o.source)
    )


_OUTCOMES = """
WITH recorded AS (
    INSERT INTO notification_attempts ($ATTEMPT_NAMES)
    SELECT $ATTEMPT_VALUES FROM $ATTEMPT_SOURCE
    ON CONFLICT (uuid, attempt_number, seq) DO NOTHING
    RETURNING 1
), updated AS (
    UPDATE notifications AS n SET
        state = CASE WHEN n.state = 'failed' AND o.state = 'forwarded' THEN n.state
                     ELSE o.state END,
        attempts = n.attempts + o.attempts,
        last_error = CASE WHEN n.state = 'failed' AND o.state = 'forwarded' THEN n.last_error
                          ELSE o.error END,
        sent_at = CASE WHEN o.state = 'sent' THEN now() ELSE n.sent_at END,
        failed_at = CASE WHEN o.state = 'failed' THEN now() ELSE n.failed_at END,
        expired_at = CASE WHEN o.state = 'expired' THEN now() ELSE n.expired_at END,
        updated_at = now()
    FROM (SELECT $OUTCOME_VALUES FROM $OUTCOME_SOURCE) AS o
    WHERE n.uuid = o.uuid AND n.state NOT IN ('sent', 'canceled')
      AND (n.state <> 'expired' OR o.state = 'sent')
    RETURNING 1
)
SELECT (SELECT count(*) FROM recorded) AS attempts, (SELECT count(*) FROM updated) AS outcomes
"""
#: One notification's attempts, oldest first (see :mod:`notifsvc.attempts`); one row with
#: NULL attempt columns when it has none, no row when there is no such notification.
_ATTEMPTS = """
SELECT a.attempt_number, a.seq, a.outcome, a.started_at, a.finished_at, a.provider,
       a.status_code, a.message_id, a.error_class, a.error
FROM notifications AS n LEFT JOIN notification_attempts AS a ON a.uuid = n.uuid
WHERE n.uuid = $1
ORDER BY a.attempt_number, a.seq = 0, a.seq
"""
_GET = f"SELECT {queries.COLUMNS} FROM notifications WHERE uuid = $1"  # noqa: S608 - constant


#: Rows in flight unmoved for longer than $1: the reconciler's work, and its count.
_STALLED = f"""{queries.IS_IN_FLIGHT}
      AND received_at < now() - $1::interval AND updated_at < now() - $1::interval"""
#: A row's slice (before the modulo by the slice count): the first two bytes of md5(uuid),
#: as :func:`notifsvc.duty.slice_of` computes it, balanced whatever version of UUID clients
#: use.
_SLICE = """(get_byte(decode(md5(uuid::text), 'hex'), 0) * 256
           + get_byte(decode(md5(uuid::text), 'hex'), 1))"""
#: The reconciler's page (see :mod:`notifsvc.reconciler`): rows in flight that have not
#: moved for longer than $1 by the database's clock, after the keyset cursor ($2, $3) in
#: (received_at, uuid) order, in the slices $5 of $4, oldest first, at most $6 of them. The
#: index of rows in flight (migration 0012) holds them in that order; a row received within
#: $1 cannot have been unmoved for longer (its ``updated_at`` is at least its
#: ``received_at``, both the database's), so only the older part of it is read. Each row is
#: claimed by moving its ``updated_at`` to now, in the same statement, on condition that it
#: has not moved since it was read: of two replicas reading the same row (a rebalance under
#: way), one claims it and the other finds it changed (PostgreSQL re-checks the condition
#: after waiting for the row's lock; CockroachDB's serializable isolation makes one of them
#: retry, and then skip).
_CLAIM_STALLED = f"""
UPDATE notifications AS n
SET updated_at = now(), redriven = n.redriven + 1, redriven_at = now()
FROM (
    SELECT uuid, updated_at FROM notifications
    WHERE {_STALLED}
      AND (received_at, uuid) > ($2::timestamptz, $3::uuid)
      AND {_SLICE} % $4::int = ANY($5::int[])
    ORDER BY received_at, uuid
    LIMIT $6
) AS c
WHERE n.uuid = c.uuid AND n.updated_at = c.updated_at
  AND n.state IN ('received', 'forwarded', 'sending')
RETURNING n.uuid, n.channel, n.recipient, n.body, n.subject, n.priority, n.fingerprint,
          n.state, n.accepted_at, n.attempts, n.redriven, c.updated_at AS stalled_since,
          n.received_at, n.callback_url, n.client, n.replayed_from, n.forwarded_at, n.send_at,
          n.expires_at
"""  # noqa: S608 - a constant condition


@dataclass(frozen=True, slots=True)
class Replayed:
    """An operator's requeue of a failed row: its attempts then (not in the new run's
    budget) and when (the new run's age counts from there)."""

    attempts: int
    at: float  # unix seconds


@dataclass(frozen=True, slots=True)
class StalledRow:
    """An unfinished row the reconciler claimed: what to forward again, and since when it
    had not moved."""

    notification: Notification
    state: State  # RECEIVED, FORWARDED or SENDING
    attempts: int  # delivery attempts recorded so far
    redriven: int  # re-drives, this one included
    stalled_since: datetime  # its updated_at before the claim
    received_at: datetime
    replayed: Replayed | None = None  # the operator's last requeue, if any

    @property
    def cursor(self) -> tuple[datetime, uuid_mod.UUID]:
        """Its place in the reconciler's keyset order."""
        return self.received_at, self.notification.uuid


@functools.cache
def _delete_finished(state: State) -> str:
    """Retention's page (see :mod:`notifsvc.retention`) of one finished ``state``, written
    out so that the planner reads its partial list index: up to $6 rows of the slices $5 of
    $4 received before $1, after the keyset cursor ($2, $3) in (received_at, uuid) order.
    Those of them that last changed before $1 too are deleted with their attempts; the
    delete tests state and age on the row itself, so that a row an operator requeued
    meanwhile (not finished any more) stays. Answers the page's last row (none: the
    state's end), how many rows it read, and how many rows and attempts went."""
    rests = queries.state_is(state)
    return f"""
WITH page AS (
    SELECT uuid, received_at, updated_at FROM notifications
    WHERE {rests} AND received_at < $1::timestamptz
      AND (received_at, uuid) > ($2::timestamptz, $3::uuid)
      AND {_SLICE} % $4::int = ANY($5::int[])
    ORDER BY received_at, uuid
    LIMIT $6
), gone AS (
    DELETE FROM notifications
    WHERE uuid IN (SELECT uuid FROM page) AND {rests} AND updated_at < $1::timestamptz
    RETURNING uuid
), attempts AS (
    DELETE FROM notification_attempts WHERE uuid IN (SELECT uuid FROM gone) RETURNING uuid
)
SELECT last.received_at, last.uuid, (SELECT count(*) FROM page) AS read,
       (SELECT count(*) FROM gone) AS deleted, (SELECT count(*) FROM attempts) AS attempts
FROM (SELECT received_at, uuid FROM page ORDER BY received_at DESC, uuid DESC LIMIT 1) AS last
"""  # noqa: S608 - constant conditions


class Deleted(NamedTuple):
    """One page of retention: its last row (None: no row), the rows it read, and the rows
    and attempts it deleted."""

    last: tuple[datetime, uuid_mod.UUID] | None
    read: int
    rows: int
    attempts: int


#: The operator's view (``notifsvc status``): counts by channel, no rows.
_BY_STATE = "SELECT channel, state, count(*) AS n FROM notifications GROUP BY channel, state"
_SENT_LAST_MINUTE = """
SELECT channel, count(*) AS n FROM notifications
WHERE sent_at > now() - INTERVAL '60 seconds' GROUP BY channel
"""
_STALLED_BY_CHANNEL = f"""
SELECT channel, count(*) AS n FROM notifications WHERE {_STALLED} GROUP BY channel
"""  # noqa: S608 - a constant condition
_REDRIVEN_LAST_HOUR = """
SELECT channel, count(*) AS n,
       count(CASE WHEN state = 'failed' AND last_error LIKE 'expired_unfinished%' THEN 1 END)
           AS expired
FROM notifications WHERE redriven_at > now() - INTERVAL '1 hour' GROUP BY channel
"""


class Store:
    #: Statements that fail unless this store's part of the schema is in place.
    schema_probes: ClassVar[tuple[str, ...]] = (
        "SELECT uuid, state, resting_state, callback_url, client FROM notifications LIMIT 0",
        "SELECT uuid, attempt_number, seq FROM notification_attempts LIMIT 0",
    )

    def __init__(
        self, target: connect.Target, *, max_connections: int = 10, attempts: int = 4
    ) -> None:
        """``target``: a URL, or the settings' :class:`~notifsvc.config.DatabaseConnection`
        (password and TLS files). No I/O here."""
        self._target = target
        self._max = max_connections
        self._attempts = attempts
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        # min_size=0: no connection is opened here, so a stage starts while the database is
        # down and its first statement waits (and retries) instead.
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                connect.dsn_of(self._target),
                min_size=0,
                max_size=self._max,
                **connect.options(self._target),
            )

    async def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _retry(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op``, retrying outages briefly; every failure leaves here classified."""
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(is_retriable),
                wait=wait_exponential_jitter(multiplier=0.05, max=1.0, jitter=0.05),
                stop=stop_after_attempt(self._attempts),
                reraise=False,
            ):
                with attempt:
                    return await op()
        except RetryError as exc:
            cause = exc.last_attempt.exception()
            raise StoreUnavailable(f"database unavailable: {cause!r}") from cause
        except Exception as exc:
            raise classify(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async def op() -> list[asyncpg.Record]:
            if self._pool is None:
                raise StoreUnavailable("store is not started")
            return await self._pool.fetch(sql, *args, timeout=COMMAND_TIMEOUT)

        return await self._retry(op)

    async def insert(self, batch: Sequence[Notification]) -> set[uuid_mod.UUID]:
        """Insert new notifications; return the UUIDs that were new.

        One statement per :data:`MAX_STATEMENT_BYTES` of data (one for any ordinary batch),
        rows in UUID order so that concurrent writers lock them in the same order."""
        new: set[uuid_mod.UUID] = set()
        for chunk in _chunks(sorted(batch, key=_uuid_order)):
            sent, params = shape_of(_NOTIFICATION_COLUMNS, _insert_columns(chunk))
            inserted = await self._fetch(_insert(sent), *params)
            new.update(r["uuid"] for r in inserted)
        return new

    async def lookup(self, uuids: Sequence[uuid_mod.UUID]) -> dict[uuid_mod.UUID, StoredRow]:
        """The stored rows for ``uuids`` (those that exist)."""
        if not uuids:
            return {}
        return {r["uuid"]: _stored(r) for r in await self._fetch(_LOOKUP, list(uuids))}

    async def mark_forwarded(self, uuids: Sequence[uuid_mod.UUID]) -> None:
        if uuids:
            await self._fetch(_MARK_FORWARDED, by_uuid(uuids))

    async def mark_scheduled(self, uuids: Sequence[uuid_mod.UUID]) -> None:
        """``received`` -> ``scheduled``: the router placed them to wait for their send_at."""
        if uuids:
            await self._fetch(_MARK_SCHEDULED, by_uuid(uuids))

    async def expire(
        self, uuids: Sequence[uuid_mod.UUID], why: str = "its expires_at passed before it was sent"
    ) -> set[uuid_mod.UUID]:
        """Move those of ``uuids`` still unfinished (received, scheduled, forwarded, sending)
        to ``expired``, with ``last_error`` "expired: ``why``"; returns those it moved (the
        others were sent, failed, canceled or expired already)."""
        if not uuids:
            return set()
        rows = await self._fetch(_EXPIRE, by_uuid(uuids), _storable(f"expired: {why}"))
        return {r["uuid"] for r in rows}

    async def add_conflicts(self, counts: dict[uuid_mod.UUID, int]) -> None:
        if counts:
            ordered = by_uuid(counts)
            await self._fetch(_CONFLICTS, ordered, [counts[u] for u in ordered])

    async def claim(self, uuids: Sequence[uuid_mod.UUID]) -> set[uuid_mod.UUID]:
        """The notificator's claim before sending, in one statement: rows it may send (in
        received, scheduled, forwarded or sending) move to ``sending``; returned are those of
        ``uuids`` NOT to send: sent, failed, canceled or expired. A UUID with no row is sent
        (something wrote to the lane topic directly, as the benchmarks do)."""
        if not uuids:
            return set()
        return {r["uuid"] for r in await self._fetch(_CLAIM, by_uuid(uuids))}

    async def cancel(self, uuid: uuid_mod.UUID) -> tuple[dict[str, Any] | None, bool]:
        """Cancel ``uuid`` if nothing was sent for it yet. The row's public view either way
        (state ``canceled``, or the state that kept it from being canceled; None when there
        is no such notification), and whether this call canceled it."""
        row = None
        for _ in range(3):  # a row may go back to forwarded (postponed) between the two
            rows = await self._fetch(_CANCEL, uuid)
            if rows:
                return _view(rows[0]), True
            row = await self.get(uuid)
            if row is None or row["state"] not in _CANCELABLE:
                break
        return row, False

    async def requeue_failed(self, uuids: Sequence[uuid_mod.UUID]) -> list[Requeued]:
        """Move those of ``uuids`` still failed back to ``forwarded`` (one conditional
        statement); the rows moved, for their caller to produce to a lane."""
        if not uuids:
            return []
        rows = await self._fetch(_REQUEUE, by_uuid(uuids))
        return [Requeued(notification_of(r), r["attempts"], _view(r)) for r in rows]

    async def list_page(self, query: queries.ListQuery) -> queries.Page:
        """One page of ``GET /notifications`` (see :mod:`notifsvc.db.queries`)."""
        if query.filter.impossible:
            return queries.Page([], None)
        sql, args = queries.statement(query)
        rows = await self._fetch(sql, *args)
        page = rows[: query.limit]
        cursor = None
        if len(rows) > query.limit:
            last = queries.Position(page[-1]["received_at"], page[-1]["uuid"])
            cursor = queries.encode_cursor(last, query.filter)
        return queries.Page([_view(r) for r in page], cursor)

    async def record(
        self, outcomes: Sequence[Outcome], *, attempts: Sequence[Attempt] = ()
    ) -> None:
        """Write sends' outcomes, and the attempts behind them, in one statement; a row
        already sent stays sent (an expired one stays expired but for a send), an attempt
        already written is kept as it was."""
        if not outcomes and not attempts:
            return
        ordered = sorted(outcomes, key=_uuid_order)
        values: list[list[Any]] = [
            [o.uuid for o in ordered],
            [o.state.value for o in ordered],
            [o.attempts for o in ordered],
            [_storable(o.error) for o in ordered],
        ]
        outcome_shape, outcome_params = shape_of(_OUTCOME_COLUMNS, values)
        attempt_shape, attempt_params = shape_of(_ATTEMPT_COLUMNS, _attempt_columns(attempts))
        sql = _outcomes(outcome_shape, attempt_shape)
        await self._fetch(sql, *outcome_params, *attempt_params)

    async def attempts(self, uuid: uuid_mod.UUID) -> list[dict[str, Any]] | None:
        """The public view of one notification's attempts, oldest first; None when there
        is no such notification."""
        rows = await self._fetch(_ATTEMPTS, uuid)
        if not rows:
            return None
        return [_attempt_view(r) for r in rows if r["attempt_number"] is not None]

    async def get(self, uuid: uuid_mod.UUID) -> dict[str, Any] | None:
        """The public view of one notification's state, or None."""
        rows = await self._fetch(_GET, uuid)
        return _view(rows[0]) if rows else None

    async def counts_by_state(self) -> dict[str, dict[State, int]]:
        """How many notifications each channel has in each state."""
        out: dict[str, dict[State, int]] = {}
        for r in await self._fetch(_BY_STATE):
            out.setdefault(r["channel"], {})[State(r["state"])] = r["n"]
        return out

    async def sent_last_minute(self) -> dict[str, int]:
        return {r["channel"]: r["n"] for r in await self._fetch(_SENT_LAST_MINUTE)}

    async def stalled_by_channel(self, unmoved_for: timedelta) -> dict[str, int]:
        """Unfinished rows that have not moved for ``unmoved_for``: the reconciler's next work."""
        rows = await self._fetch(_STALLED_BY_CHANNEL, unmoved_for)
        return {r["channel"]: r["n"] for r in rows}

    async def redriven_last_hour(self) -> dict[str, tuple[int, int]]:
        """Per channel: rows the reconciler re-drove, and those it expired, in the last hour."""
        rows = await self._fetch(_REDRIVEN_LAST_HOUR)
        return {r["channel"]: (r["n"] - r["expired"], r["expired"]) for r in rows}

    async def ping(self) -> None:
        await self._fetch("SELECT 1")

    async def claim_stalled(
        self,
        *,
        stalled_for: timedelta,
        after: tuple[datetime, uuid_mod.UUID],
        slices: int,
        owned: Sequence[int],
        limit: int,
    ) -> list[StalledRow]:
        """Claim up to ``limit`` rows in flight and unmoved for longer than ``stalled_for``,
        after ``after`` in (received_at, uuid) order, whose slice (of ``slices``) is in
        ``owned``; returned in that order. See :data:`_CLAIM_STALLED`."""
        if not owned or limit <= 0:
            return []
        rows = await self._fetch(
            _CLAIM_STALLED, stalled_for, after[0], after[1], slices, sorted(owned), limit
        )
        claimed = [
            StalledRow(
                _stored(r).notification,
                State(r["state"]),
                r["attempts"],
                r["redriven"],
                r["stalled_since"],
                r["received_at"],
                _replayed(r),
            )
            for r in rows
        ]
        return sorted(claimed, key=lambda row: row.cursor)

    async def delete_finished(
        self,
        state: State,
        *,
        before: datetime,
        after: tuple[datetime, uuid_mod.UUID],
        slices: int,
        owned: Sequence[int],
        limit: int,
    ) -> Deleted:
        """Delete the rows of finished ``state`` unchanged since ``before``, with their
        attempts, among the next ``limit`` received before it after ``after``, in the slices
        ``owned`` of ``slices``. See :func:`_delete_finished`."""
        if state not in queries.FINISHED:
            raise ValueError(f"retention never deletes {state.value} rows")
        sql = _delete_finished(state)
        rows = await self._fetch(sql, before, after[0], after[1], slices, sorted(owned), limit)
        if not rows:
            return Deleted(None, 0, 0, 0)
        r = rows[0]
        return Deleted((r["received_at"], r["uuid"]), r["read"], r["deleted"], r["attempts"])

    async def check_schema(self) -> None:
        """:class:`StoreMisconfigured` unless the schema is in place (run ``migrate``): each
        of :attr:`schema_probes` must run."""
        try:
            for probe in self.schema_probes:
                await self._fetch(probe)
        except StoreMisconfigured as exc:
            raise StoreMisconfigured(f"{exc} (has `notifsvc migrate` run?)") from exc


def _replayed(r: asyncpg.Record) -> Replayed | None:
    if r["replayed_from"] is None or r["forwarded_at"] is None:
        return None
    return Replayed(r["replayed_from"], r["forwarded_at"].timestamp())


def _storable(error: str | None, limit: int = MAX_ERROR_CHARS) -> str | None:
    """``error`` as text PostgreSQL stores: NUL (which it refuses) and lone surrogates
    replaced, at most ``limit`` characters. Error texts quote what providers answered, so
    they carry whatever bytes a provider sent."""
    if error is None:
        return None
    text = error[:limit].replace("\x00", "\ufffd")
    return text.encode("utf-8", "replace").decode()


def _attempt_columns(attempts: Sequence[Attempt]) -> list[list[Any]]:
    """The insert's arrays, rows in key order (the order concurrent writers lock them in),
    texts sanitised and capped like ``last_error``; built in one pass."""
    rows = [
        (
            a.uuid,
            a.number,
            a.seq,
            a.outcome.value,
            a.started_at,
            a.finished_at,
            _name(a.provider),
            a.status if a.status is not None and 0 <= a.status < 1000 else None,
            _storable(a.message_id, MAX_ATTEMPT_NAME_CHARS),
            _name(a.error_class),
            _storable(a.error, MAX_ATTEMPT_ERROR_CHARS),
        )
        for a in sorted(attempts, key=_attempt_order)
    ]
    return _columns(rows, 11)


@functools.lru_cache(maxsize=256)
def _name(value: str | None) -> str | None:
    """A provider's or an error class's name as stored: one of a few, kept once made."""
    return _storable(value, MAX_ATTEMPT_NAME_CHARS)


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as the arrays, one per column, that a statement's ``unnest`` takes."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width


def _attempt_view(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "attempt": r["attempt_number"],
        "outcome": r["outcome"],
        "counted": r["seq"] == 0,
        "started_at": r["started_at"].isoformat(),
        "finished_at": r["finished_at"].isoformat(),
        "provider": r["provider"],
        "status_code": r["status_code"],
        "message_id": r["message_id"],
        "error_class": r["error_class"],
        "error": r["error"],
    }


def _insert_columns(chunk: list[Notification]) -> list[list[Any]]:
    """The arrays of :data:`_NOTIFICATION_COLUMNS`, built in one pass over the rows (the router's
    time per batch went to twelve passes before). Times are unix seconds (``epoch``); a
    notification without ``accepted_at`` (0) is accepted now."""
    now = time.time()
    rows = [
        (
            n.uuid,
            n.channel,
            n.to,
            n.txt,
            n.subject,
            n.priority.value,
            n.fingerprint(),
            n.accepted_at if n.accepted_at > 0 else now,
            n.callback_url,
            n.client,
            n.send_at,
            n.expires_at,
        )
        for n in chunk
    ]
    return _columns(rows, 12)


def _utf8_len(text: str | None) -> int:
    """The length of ``text`` in UTF-8, without encoding an ASCII text (``isascii`` reads a
    flag of the string)."""
    if text is None:
        return 0
    return len(text) if text.isascii() else len(text.encode())


def _chunks(batch: list[Notification]) -> list[list[Notification]]:
    """``batch`` cut into runs of at most :data:`MAX_STATEMENT_BYTES` of client data."""
    out: list[list[Notification]] = [[]]
    size = 0
    for n in batch:
        cost = 128 + _utf8_len(n.txt) + _utf8_len(n.to)
        cost += _utf8_len(n.subject) + _utf8_len(n.callback_url)
        if out[-1] and size + cost > MAX_STATEMENT_BYTES:
            out.append([])
            size = 0
        out[-1].append(n)
        size += cost
    return out if out[-1] else []


def _view(r: asyncpg.Record) -> dict[str, Any]:
    """The public view of a row read with :data:`queries.COLUMNS`."""
    out = dict(r.items())
    out.pop("client", None)
    for column, public in _RENAMED.items():
        out[public] = out.pop(column)
    out["uuid"] = str(out["uuid"])
    failed = out["state"] == State.FAILED
    out["reason"] = reason_of(out["last_error"]) if failed else None
    for key, value in out.items():
        if isinstance(value, datetime):
            out[key] = value.isoformat()
    return out


#: Columns the public view names as the request did.
_RENAMED = {"recipient": "to", "body": "txt"}


def _stored(r: asyncpg.Record) -> StoredRow:
    return StoredRow(notification_of(r), bytes(r["fingerprint"]), State(r["state"]))


def notification_of(r: asyncpg.Record) -> Notification:
    """The notification a row holds (read with its request columns and ``client``)."""
    return Notification(
        uuid=r["uuid"],
        channel=r["channel"],
        to=r["recipient"],
        txt=r["body"],
        subject=r["subject"],
        priority=Priority(r["priority"]),
        accepted_at=r["accepted_at"].timestamp(),
        callback_url=r["callback_url"],
        client=r["client"],
        send_at=_seconds(r, "send_at"),
        expires_at=_seconds(r, "expires_at"),
    )
