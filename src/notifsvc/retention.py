"""Retention: a finished notification is deleted ``NOTIFSVC_RETENTION_DAYS`` after it last
changed, with its attempts.

Finished means ``sent``, ``failed``, ``canceled`` or ``expired``. A row in flight or
``scheduled`` is never deleted, whatever its age: the reconciler fails a row left unfinished
for too long, and then it goes in its turn. With ``0`` days nothing is deleted, and the
tables grow for ever. What retention means for clients: a UUID is deduplicated only while
its row exists (posted again later, it is a new notification), and ``GET`` answers 404 for
it once it went.

It is a duty of the router, sliced as the reconciler is: each replica deletes the rows of
the slices numbered like the partitions of ``outstanding-notifications`` it owns. The same
statement runs on PostgreSQL and CockroachDB (whose row-level TTL, fixed at 30 days by
earlier migrations, ``crdb/0009`` removes: one rule, one setting).

Every :data:`PERIOD_SECONDS` (the first pass :data:`FIRST_PASS_SECONDS` after start, so
that routers restarted often still get to it) a pass goes through each finished state's
rows received before the cutoff, oldest first, by keyset pages of at most
``NOTIFSVC_BATCH_SIZE`` read from the state's partial list index (migration 0012); a row
received before the cutoff but changed after it is read and kept. Pages are paced at
``NOTIFSVC_RETENTION_RATE`` rows read per second per replica; a pass goes on to each
state's end. A failure ends the pass (logged); the next one starts over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from notifsvc import metrics
from notifsvc.config import Settings
from notifsvc.db.queries import FINISHED
from notifsvc.duty import START, SlicedDuty
from notifsvc.model import State

log = logging.getLogger(__name__)

STAGE = "retention"
#: Seconds between passes.
PERIOD_SECONDS = 600.0
#: Seconds from start to the first pass.
FIRST_PASS_SECONDS = 60.0
DAY = 86_400


class Retention(SlicedDuty):
    """Passes deleting the finished rows of the slices ``owns`` says are this replica's,
    paced at ``NOTIFSVC_RETENTION_RATE``; ``clock`` is what the cutoff counts back from."""

    stage = STAGE

    #: Rows and attempts deleted by this replica since it started.
    deleted = 0
    attempts = 0

    @staticmethod
    def rate(settings: Settings) -> float:
        return settings.retention_rate

    @property
    def enabled(self) -> bool:
        return self.settings.retention_days > 0

    def schedule(self) -> tuple[float, float]:
        return FIRST_PASS_SECONDS, PERIOD_SECONDS

    async def run(self, stopping: asyncio.Event) -> None:
        if not self.enabled:
            log.info("%s: off (NOTIFSVC_RETENTION_DAYS=0): finished rows are kept", STAGE)
            return
        await super().run(stopping)

    async def run_pass(self, stopping: asyncio.Event | None = None) -> int:
        """One pass over this replica's slices; the number of rows deleted."""
        return await super().run_pass(stopping) if self.enabled else 0

    def cutoff(self) -> datetime:
        """Rows unchanged since this instant are due."""
        return datetime.fromtimestamp(self._clock() - self.settings.retention_days * DAY, UTC)

    async def _pass(self, stopping: asyncio.Event) -> int:
        count, owned = await self.owned()
        before = self.cutoff()
        done = 0
        for state in FINISHED if owned else ():
            done += await self._state(state, before, count, owned, stopping)
        if done:
            log.info("%s: deleted %d notifications finished before %s", STAGE, done, before)
        return done

    async def _state(
        self,
        state: State,
        before: datetime,
        count: int,
        owned: Sequence[int],
        stopping: asyncio.Event,
    ) -> int:
        """Delete the due rows of ``state`` page by page, to its end (or until stopping)."""
        after, done = START, 0
        while not stopping.is_set():
            await self.pace()
            page = await self.store.delete_finished(
                state, before=before, after=after, slices=count, owned=owned, limit=self.page
            )
            done += page.rows
            self.deleted += page.rows
            self.attempts += page.attempts
            metrics.RETENTION_DELETED.labels(state.value).inc(page.rows)
            if page.last is None or page.read < self.page:
                break
            after = page.last
        return done
