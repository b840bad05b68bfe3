"""The scheduler's statements (migration 0009): row states of a tier batch, the release
mark, and the parked reader's lease and pages.

:class:`ScheduleStore` is a :class:`~notifsvc.db.store.Store` (the same pool, short retries
and error classification) with, each one statement:

- :meth:`~ScheduleStore.states`: the states of a tier batch's rows, so that a canceled or
  already released row is dropped instead of hopped or sent;
- :meth:`~ScheduleStore.mark_released`: ``scheduled -> forwarded`` after the message reached
  its lane (a row the router left ``received`` after producing its first hop too);
- :meth:`~ScheduleStore.claim_reader` / :meth:`~ScheduleStore.release_reader`: the lease that
  elects one parked reader among the router replicas (a row of ``schedule_leases``, taken
  with one conditional upsert: no advisory lock);
- :meth:`~ScheduleStore.parked` and :meth:`~ScheduleStore.touch`: a page of the parked rows
  coming near, and marking them moved.

A row is *parked* when, at its last write, it was due further ahead than the tiers take
(``send_at > updated_at + look-ahead``): the router wrote it ``scheduled`` without a hop.
So no flag has to be kept in step: moving a row into a tier touches its ``updated_at``,
after which it no longer reads as parked. A ``scheduled`` row overdue by more than a grace
period is read too, whatever its ``updated_at``: its tier message was lost (or its tier's
consumers are down), and a second message of it is harmless (the release is conditional).
All times here are the database's (``now()``, ``updated_at``).
"""

from __future__ import annotations

import uuid as uuid_mod
from collections.abc import Sequence
from datetime import datetime, timedelta

from notifsvc.db.store import Store, by_uuid, notification_of
from notifsvc.model import Notification, State

#: The name of the parked reader's lease.
READER = "parked-reader"

_STATES = "SELECT uuid, state FROM notifications WHERE uuid = ANY($1::uuid[])"
#: (By UUID, the state tested as ``(state || '')``: see :mod:`notifsvc.db.store`, where the
#: statements that look rows up by UUID say why.)
_RELEASED = """
UPDATE notifications AS n SET state = 'forwarded', forwarded_at = now(), updated_at = now()
FROM unnest($1::uuid[]) AS u(id)
WHERE n.uuid = u.id AND (n.state || '') IN ('scheduled', 'received')
RETURNING n.uuid
"""
#: The lease ``$1`` to ``$2`` for ``$3``, if free (ran out) or already ``$2``'s: of two
#: routers claiming at once, one gets it (the upsert's condition is checked on the row).
_CLAIM = """
INSERT INTO schedule_leases (name, owner, lease_until) VALUES ($1, $2, now() + $3::interval)
ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
WHERE schedule_leases.lease_until < now() OR schedule_leases.owner = excluded.owner
RETURNING name
"""
_RELEASE = """
UPDATE schedule_leases SET owner = NULL, lease_until = now() - interval '1 hour'
WHERE name = $1 AND owner = $2
"""
#: Parked rows due within ``$1`` (by the database's clock), or overdue by more than ``$2``,
#: after the cursor (``$3``, ``$4``), by due time, at most ``$5``; ``$1`` is also the
#: look-ahead that tells a parked row (see the module's docstring). Read from the index
#: ``notifications_scheduled_v2`` (migration 0012: by ``resting_state``, not ``state``).
_PARKED = """
SELECT uuid, channel, recipient, body, subject, priority, accepted_at, callback_url, client,
       send_at, expires_at
FROM notifications
WHERE resting_state = 'scheduled' AND send_at <= now() + $1::interval
  AND (send_at > updated_at + $1::interval OR send_at < now() - $2::interval)
  AND (send_at, uuid) > ($3::timestamptz, $4::uuid)
ORDER BY send_at, uuid
LIMIT $5
"""
_TOUCH = """
UPDATE notifications AS n SET updated_at = now()
FROM unnest($1::uuid[]) AS u(id) WHERE n.uuid = u.id AND (n.state || '') = 'scheduled'
"""

Cursor = tuple[datetime, uuid_mod.UUID]


class ScheduleStore(Store):
    """The scheduler's statements over the store's pool (no I/O before :meth:`start`)."""

    schema_probes = (
        "SELECT name, owner, lease_until FROM schedule_leases LIMIT 0",
        "SELECT send_at, expires_at, resting_state FROM notifications LIMIT 0",
    )

    async def states(self, uuids: Sequence[uuid_mod.UUID]) -> dict[uuid_mod.UUID, State]:
        """The states of those of ``uuids`` that have a row."""
        if not uuids:
            return {}
        rows = await self._fetch(_STATES, by_uuid(set(uuids)))
        return {r["uuid"]: State(r["state"]) for r in rows}

    async def mark_released(self, uuids: Sequence[uuid_mod.UUID]) -> set[uuid_mod.UUID]:
        """``scheduled`` (or ``received``) -> ``forwarded``: their messages are in the lanes;
        the rows this call moved."""
        if not uuids:
            return set()
        return {r["uuid"] for r in await self._fetch(_RELEASED, by_uuid(set(uuids)))}

    async def claim_reader(self, owner: str, lease: timedelta) -> bool:
        """Take or renew the parked reader's lease for ``owner``; False: another holds it."""
        return bool(await self._fetch(_CLAIM, READER, owner, lease))

    async def release_reader(self, owner: str) -> None:
        """Give the lease up, so that another router reads at its next bucket."""
        await self._fetch(_RELEASE, READER, owner)

    async def parked(
        self, lookahead: timedelta, grace: timedelta, after: Cursor, limit: int
    ) -> list[tuple[Notification, Cursor]]:
        """A page of the parked rows due within ``lookahead``, and of the ``scheduled`` rows
        overdue by more than ``grace``, after ``after`` in due-time order (each with its
        cursor)."""
        rows = await self._fetch(_PARKED, lookahead, grace, after[0], after[1], limit)
        return [(notification_of(r), (r["send_at"], r["uuid"])) for r in rows]

    async def touch(self, uuids: Sequence[uuid_mod.UUID]) -> None:
        """Mark rows moved into a tier: they no longer read as parked."""
        if uuids:
            await self._fetch(_TOUCH, by_uuid(set(uuids)))
