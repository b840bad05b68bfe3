"""What replay jobs keep in the database, and the statements that run them (migration 0007).

A job is a row of ``replays``: its filter, its progress (``matched``, ``requeued``,
``skipped``, and the cursor: the last row done in the job's order, ``(received_at, uuid)``
newest first) and its lease (which router works on it, until when). :class:`ReplayStore`
is a :class:`~notifsvc.db.store.Store` (the same pool, short retries and error
classification) with these statements:

- the receiver's: :meth:`~ReplayStore.create`, :meth:`~ReplayStore.job`,
  :meth:`~ReplayStore.recent`;
- the runner's (:mod:`notifsvc.replays`), each one statement: :meth:`~ReplayStore.claim_job`
  takes a running job whose lease ran out (or is already this runner's), conditionally, so
  that of two routers polling at once one gets it; :meth:`~ReplayStore.page` reads the next
  rows after the cursor; :meth:`~ReplayStore.requeue` flips them ``failed -> forwarded`` on
  condition; :meth:`~ReplayStore.advance` moves the cursor and the counts on condition that
  the lease is still this runner's; :meth:`~ReplayStore.renew` and
  :meth:`~ReplayStore.release` hold and give up the lease.

A page is the union of two keyset range scans after the cursor, each at most ``limit``
rows: the failed rows that match the filter and that this job has not requeued before (the
conditions, order and indexes of the list endpoint, :mod:`notifsvc.db.queries`), and the
rows this job requeued already (a partial index of replayed rows), which after the cursor
are only those of a page whose messages a killed router may not have finished producing.
Filters are put together from constant fragments, one statement shape per combination of
filter fields, so that each shape gets the plan of its index (no ``$n IS NULL OR ...``
that a generic plan cannot use).
"""

from __future__ import annotations

import re
import uuid as uuid_mod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from notifsvc.db.queries import CHANNEL_IS, REASON_IS, SINCE, UNTIL, state_is
from notifsvc.db.store import Store, by_uuid, notification_of
from notifsvc.model import Notification, Reason, State

#: A job id: ``rpl_`` and 32 lower-case hex digits.
JOB_ID = re.compile(r"rpl_[0-9a-f]{32}")
#: A job's cursor before its first page: after every row in its order.
TOP = (datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), uuid_mod.UUID(int=2**128 - 1))
#: Jobs ``GET /replays`` lists at most.
RECENT_LIMIT = 50
RUNNING = "running"
DONE = "done"

Cursor = tuple[datetime, uuid_mod.UUID]


def new_job_id() -> str:
    return f"rpl_{uuid_mod.uuid4().hex}"


@dataclass(frozen=True, slots=True)
class ReplayFilter:
    """Which failed notifications a job requeues (None: not filtered on). ``since`` is
    inclusive and ``until`` exclusive, on ``received_at``; ``reason`` is the code their
    ``last_error`` starts with."""

    channel: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    reason: Reason | None = None

    def view(self) -> dict[str, Any]:
        """The filter as ``GET /replays/{id}`` shows it: what was posted, normalised."""
        out: dict[str, Any] = {"state": "failed"}
        if self.channel is not None:
            out["channel"] = self.channel
        if self.since is not None:
            out["since"] = self.since.astimezone(UTC).isoformat()
        if self.until is not None:
            out["until"] = self.until.astimezone(UTC).isoformat()
        if self.reason is not None:
            out["reason"] = self.reason.value
        return out


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    filter: ReplayFilter
    state: str  # RUNNING or DONE
    matched: int
    requeued: int
    skipped: int
    cursor: Cursor | None  # None: no page done yet
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    def view(self) -> dict[str, Any]:
        """The public JSON of the job."""
        finished = self.finished_at
        return {
            "id": self.id,
            "state": self.state,
            "filter": self.filter.view(),
            "matched": self.matched,
            "requeued": self.requeued,
            "skipped": self.skipped,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "finished_at": finished.isoformat() if finished is not None else None,
        }


@dataclass(frozen=True, slots=True)
class PageRow:
    """A row a page selected: where it is in the job's order, and whether this job had
    requeued it already (before a take-over)."""

    uuid: uuid_mod.UUID
    received_at: datetime
    mine: bool

    @property
    def cursor(self) -> Cursor:
        return self.received_at, self.uuid


@dataclass(frozen=True, slots=True)
class Requeued:
    """A row the job flipped to ``forwarded``: what to produce, with its attempts so far; or,
    ``expired``, one whose ``expires_at`` had passed, flipped to ``expired`` instead (only
    its ``notification.expired`` event is to produce)."""

    notification: Notification
    attempts: int
    expired: bool = False


_CREATE = """
INSERT INTO replays (id, channel, since, until, reason) VALUES ($1, $2, $3, $4, $5)
RETURNING id, channel, since, until, reason, state, matched, requeued, skipped,
          cursor_received_at, cursor_uuid, created_at, updated_at, finished_at
"""
_GET = """
SELECT id, channel, since, until, reason, state, matched, requeued, skipped,
       cursor_received_at, cursor_uuid, created_at, updated_at, finished_at
FROM replays WHERE id = $1
"""
_RECENT = """
SELECT id, channel, since, until, reason, state, matched, requeued, skipped,
       cursor_received_at, cursor_uuid, created_at, updated_at, finished_at
FROM replays ORDER BY created_at DESC, id DESC LIMIT $1
"""
#: One running job whose lease ran out (or that is already ``$1``'s), oldest first, leased
#: to ``$1`` for ``$2``. The condition is checked again on the row itself: of two routers
#: claiming at once, one gets it (PostgreSQL re-checks it after waiting for the row lock,
#: CockroachDB's serializable isolation retries one of them, which then finds it taken).
_CLAIM = """
UPDATE replays SET lease_owner = $1, lease_until = now() + $2::interval, updated_at = now()
WHERE id = (
    SELECT id FROM replays
    WHERE state = 'running'
      AND (lease_until IS NULL OR lease_until < now() OR lease_owner = $1)
    ORDER BY created_at LIMIT 1
) AND state = 'running' AND (lease_until IS NULL OR lease_until < now() OR lease_owner = $1)
RETURNING id, channel, since, until, reason, state, matched, requeued, skipped,
          cursor_received_at, cursor_uuid, created_at, updated_at, finished_at
"""
_RENEW = """
UPDATE replays SET lease_until = now() + $3::interval
WHERE id = $1 AND lease_owner = $2 AND state = 'running'
RETURNING id
"""
_RELEASE = """
UPDATE replays SET lease_owner = NULL, lease_until = NULL
WHERE id = $1 AND lease_owner = $2 AND state = 'running'
"""
#: A page's progress, and the lease renewed, if the lease is still ``$2``'s; with ``$9``
#: the job is done and its lease given up.
_ADVANCE = """
UPDATE replays SET
    matched = matched + $5, requeued = requeued + $6, skipped = skipped + $7,
    cursor_received_at = $3, cursor_uuid = $4, updated_at = now(),
    lease_until = CASE WHEN $9::bool THEN NULL ELSE now() + $8::interval END,
    lease_owner = CASE WHEN $9::bool THEN NULL ELSE lease_owner END,
    state = CASE WHEN $9::bool THEN 'done' ELSE state END,
    finished_at = CASE WHEN $9::bool THEN now() ELSE finished_at END
WHERE id = $1 AND lease_owner = $2 AND state = 'running'
RETURNING id
"""
#: The flip: ``failed -> forwarded`` only if still failed and not requeued by this job
#: before, or ``failed -> expired`` (with ``$3`` as its error) for one whose ``expires_at``
#: passed by the database's clock: it must never be sent; and a row this job requeued that
#: is still ``forwarded`` (or that it expired) is returned again (its message or event may
#: not have been produced). Rows in uuid order, the order writers lock them in. The SET
#: expressions read the row as it was, RETURNING as it is now.
_REQUEUE = """
UPDATE notifications
SET state = CASE WHEN state <> 'failed' THEN state
                 WHEN expires_at <= now() THEN 'expired' ELSE 'forwarded' END,
    expired_at = CASE WHEN state = 'failed' AND expires_at <= now() THEN now()
                      ELSE expired_at END,
    last_error = CASE WHEN state = 'failed' AND expires_at <= now() THEN $3
                      ELSE last_error END,
    forwarded_at = CASE WHEN state = 'expired' OR (state = 'failed' AND expires_at <= now())
                        THEN forwarded_at ELSE now() END,
    replay_id = $1, updated_at = now(),
    replayed_from = CASE WHEN state = 'failed' THEN attempts ELSE replayed_from END
WHERE uuid = ANY($2::uuid[])
  AND ((state = 'failed' AND (replay_id IS NULL OR replay_id <> $1))
       OR (state IN ('forwarded', 'expired') AND replay_id = $1))
RETURNING uuid, channel, recipient, body, subject, priority, accepted_at, callback_url, client,
          attempts, send_at, expires_at, state = 'expired' AS expired
"""
#: ``last_error`` of a failed row a replay found expired.
EXPIRED_ERROR = "expired: its expires_at passed before it was replayed"
#: $1, $2: the cursor; $3: the job; $4: the limit; then the filter's values.
_MINE = """
SELECT uuid, received_at, true AS mine FROM notifications
WHERE replay_id = $3 AND (received_at, uuid) < ($1::timestamptz, $2::uuid)
ORDER BY received_at DESC, uuid DESC LIMIT $4
"""
_FAILED_HEAD = """
SELECT uuid, received_at, false AS mine FROM notifications
WHERE (received_at, uuid) < ($1::timestamptz, $2::uuid)
  AND (replay_id IS NULL OR replay_id <> $3)"""
_FAILED_TAIL = "\nORDER BY received_at DESC, uuid DESC LIMIT $4"
#: The filter's conditions, ``{}`` for their parameter. A reason is asked for alone, by the
#: list's reason key (which implies the state), so that both read the same index.
_FAILED = state_is(State.FAILED)


def page_statement(f: ReplayFilter) -> tuple[str, list[Any]]:
    """The page statement for the shape of ``f``, and the values of its filter (``$5``
    on); the statement takes the cursor, the job and the limit as ``$1`` to ``$4``."""
    conditions = [_FAILED] if f.reason is None else []
    values: list[Any] = []

    def where(sql: str, value: Any) -> None:
        values.append(value)
        conditions.append(sql.format(f"${4 + len(values)}"))

    if f.reason is not None:
        where(REASON_IS, f.reason.value)
    if f.channel is not None:
        where(CHANNEL_IS, f.channel)
    if f.since is not None:
        where(SINCE, f.since)
    if f.until is not None:
        where(UNTIL, f.until)
    failed = "".join([_FAILED_HEAD, *(f"\n  AND {c}" for c in conditions), _FAILED_TAIL])
    union = "\n".join(["(", failed, ")", "UNION ALL", "(", _MINE.strip(), ")"])
    return "\n".join([union, "ORDER BY received_at DESC, uuid DESC LIMIT $4"]), values


class ReplayStore(Store):
    """The statements of replay jobs over the store's pool (no I/O before :meth:`start`)."""

    schema_probes = (
        "SELECT id, lease_owner FROM replays LIMIT 0",
        "SELECT replay_id, resting_state FROM notifications LIMIT 0",
    )

    async def create(self, f: ReplayFilter) -> Job:
        """Store a new running job for ``f``."""
        reason = f.reason.value if f.reason is not None else None
        rows = await self._fetch(_CREATE, new_job_id(), f.channel, f.since, f.until, reason)
        return _job(rows[0])

    async def job(self, job_id: str) -> Job | None:
        """The job ``job_id``, or None."""
        rows = await self._fetch(_GET, job_id)
        return _job(rows[0]) if rows else None

    async def recent(self, limit: int = RECENT_LIMIT) -> list[Job]:
        """The newest jobs first."""
        return [_job(r) for r in await self._fetch(_RECENT, limit)]

    async def claim_job(self, owner: str, lease: timedelta) -> Job | None:
        """A running job whose lease ran out (or is ``owner``'s), leased to ``owner``."""
        rows = await self._fetch(_CLAIM, owner, lease)
        return _job(rows[0]) if rows else None

    async def renew(self, job_id: str, owner: str, lease: timedelta) -> bool:
        """Extend ``owner``'s lease; False when the job is no longer ``owner``'s to work."""
        return bool(await self._fetch(_RENEW, job_id, owner, lease))

    async def release(self, job_id: str, owner: str) -> None:
        """Give up ``owner``'s lease, so that any router may take the job at once."""
        await self._fetch(_RELEASE, job_id, owner)

    async def page(self, job: Job, after: Cursor, limit: int) -> list[PageRow]:
        """Up to ``limit`` rows after ``after``, newest first: the failed ones matching the
        job's filter, and those the job requeued already."""
        sql, values = page_statement(job.filter)
        rows = await self._fetch(sql, after[0], after[1], job.id, limit, *values)
        return [PageRow(r["uuid"], r["received_at"], r["mine"]) for r in rows]

    async def requeue(self, job_id: str, uuids: list[uuid_mod.UUID]) -> list[Requeued]:
        """Flip those of ``uuids`` still failed to ``forwarded`` for ``job_id`` (see
        :data:`_REQUEUE`); the rows to produce."""
        if not uuids:
            return []
        rows = await self._fetch(_REQUEUE, job_id, by_uuid(uuids), EXPIRED_ERROR)
        return [Requeued(notification_of(r), r["attempts"], bool(r["expired"])) for r in rows]

    async def advance(
        self,
        job_id: str,
        owner: str,
        *,
        cursor: Cursor,
        counts: tuple[int, int, int],
        lease: timedelta,
        done: bool,
    ) -> bool:
        """Add ``counts`` (matched, requeued, skipped), move the cursor, renew the lease (or
        finish the job when ``done``); False when the lease is no longer ``owner``'s."""
        matched, requeued, skipped = counts
        rows = await self._fetch(
            _ADVANCE, job_id, owner, cursor[0], cursor[1], matched, requeued, skipped, lease, done
        )
        return bool(rows)


def _job(r: asyncpg.Record) -> Job:
    reason = Reason(r["reason"]) if r["reason"] is not None else None
    f = ReplayFilter(r["channel"], r["since"], r["until"], reason)
    cursor = None
    if r["cursor_received_at"] is not None and r["cursor_uuid"] is not None:
        cursor = (r["cursor_received_at"], r["cursor_uuid"])
    return Job(
        r["id"],
        f,
        r["state"],
        r["matched"],
        r["requeued"],
        r["skipped"],
        cursor,
        r["created_at"],
        r["updated_at"],
        r["finished_at"],
    )
