"""Replay jobs: the failed notifications an operator asked for, sent again in the background.

``POST /replays`` (:mod:`notifsvc.api.replays`) checks the filter (:func:`parse_filter`) and
stores a running job; the job is worked by a :class:`ReplayRunner`, a duty of every router
replica (one job at a time each), so that it survives the process working on it:

- **Who.** A runner polls the small ``replays`` table every ``NOTIFSVC_REPLAY_POLL_MS`` for
  a running job whose lease ran out and takes it with one conditional update (no advisory
  lock): of two routers polling at once, one gets it. Its lease
  (``NOTIFSVC_REPLAY_LEASE_SECONDS``) is renewed with every page, and between pages when a
  third of it has gone by. A router stopped politely gives its job up at once; one killed
  keeps it until the lease runs out, then any router takes it over from its cursor.
- **What.** Pages of the matching failed rows, newest first by ``(received_at, uuid)``
  after the job's cursor. Per page: one conditional update flips the rows still ``failed``
  to ``forwarded`` (recording the job in ``replay_id``), and returns them with the rows of
  this job still ``forwarded`` after the cursor (a page whose messages a killed runner may
  not have finished producing); they are produced to their channel's *low* lane with their
  recorded attempts (``notifsvc-attempts``, and ``notifsvc-replayed-from`` so that the
  attempts before the replay do not count against ``NOTIFSVC_MAX_ATTEMPTS``); once the
  broker acknowledged them, the cursor and the counts move in one update conditional on
  the lease. ``matched`` counts the rows pages selected, ``requeued`` those this job flipped,
  ``skipped`` the others (no longer failed: sent meanwhile, retried alone, or taken by
  another job; or expired).
- **Expired.** A failed row whose ``expires_at`` has passed (by the database's clock) is
  never requeued: the same conditional update moves it to ``expired`` instead, and its
  ``notification.expired`` callback event is produced with the page's messages. One that
  expires after its requeue is dropped by the notificator.
- **Never twice.** The flip is conditional, so two jobs (or a job and a single retry)
  never both requeue a row, and a job requeues a row once; a message produced twice (the
  re-sent page) is sent once, because the notificator claims a row before sending it.
- **Pace.** ``NOTIFSVC_REPLAY_RATE`` rows per second per job, in pages of a quarter of a
  second's worth, so that a replay of 100,000 feeds the low lane steadily: the notificator
  gives that lane a quarter of its send slots, and fresh traffic keeps the rest. A faster
  pace would only queue messages in the low lane, where a row waiting longer than
  ``NOTIFSVC_REDRIVE_AFTER_SECONDS`` would be re-driven by the reconciler.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Protocol

from notifsvc import batching, channels, errors, events, headers, kafka, metrics, process, topics
from notifsvc.config import Settings
from notifsvc.db.replays import TOP, Cursor, Job, ReplayFilter, ReplayStore, Requeued
from notifsvc.db.store import StoreUnavailable
from notifsvc.deadletter import Message
from notifsvc.events import expired_event
from notifsvc.kafka import Producer
from notifsvc.model import EARLIEST, LATEST, FieldError, Reason, State
from notifsvc.ratelimit import make_limiter

log = logging.getLogger(__name__)

#: The fields of ``POST /replays``.
FIELDS = ("channel", "state", "since", "until", "reason")
#: The fields that narrow a replay down (at least one is required).
NARROWING = ("channel", "since", "until", "reason")
#: Seconds of ``NOTIFSVC_REPLAY_RATE`` one page holds.
PAGE_SECONDS = 0.25
#: RFC 3339 date-time, with its offset (``Z`` or ``+hh:mm``).
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)

Clock = Callable[[], float]


class InvalidReplay(ValueError):
    """A ``POST /replays`` body that does not describe a replay; ``errors`` lists every
    failing field."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__(
            "; ".join(f"{e.field}: {e.message}" if e.field else e.message for e in errors)
        )


def parse_filter(data: object) -> ReplayFilter:
    """The filter of a ``POST /replays`` body, or :class:`InvalidReplay`."""
    if not isinstance(data, dict):
        raise InvalidReplay([FieldError("", "expected a JSON object")])
    problems = [
        FieldError(str(k), f"is not a known field (known: {', '.join(FIELDS)})")
        for k in data
        if k not in FIELDS
    ]
    f = ReplayFilter(
        channel=_channel(data.get("channel"), problems),
        since=_instant("since", data.get("since"), problems),
        until=_instant("until", data.get("until"), problems),
        reason=_reason(data.get("reason"), problems),
    )
    _state(data.get("state"), problems)
    if f.since is not None and f.until is not None and f.since >= f.until:
        problems.append(FieldError("until", "must be later than since"))
    f = dataclasses.replace(f, since=_bounded(f.since), until=_bounded(f.until))
    if not problems and all(getattr(f, name) is None for name in NARROWING):
        why = (
            "give at least one of channel, since, until, reason: a replay without any "
            "would resend every failed notification"
        )
        problems.append(FieldError("", why))
    if problems:
        raise InvalidReplay(problems)
    return f


def _channel(value: object, problems: list[FieldError]) -> str | None:
    if value is None:
        return None
    name = value.lower() if isinstance(value, str) else None
    if name is None or name not in channels.REGISTRY:
        known = ", ".join(sorted(channels.REGISTRY))
        problems.append(FieldError("channel", f"must be a registered channel ({known})"))
        return None
    return name


def _state(value: object, problems: list[FieldError]) -> None:
    if value is not None and value != State.FAILED.value:
        problems.append(FieldError("state", "must be failed: only failed notifications replay"))


def _reason(value: object, problems: list[FieldError]) -> Reason | None:
    if value is None:
        return None
    if isinstance(value, str) and value in {r.value for r in Reason}:
        return Reason(value)
    known = ", ".join(r.value for r in Reason)
    problems.append(FieldError("reason", f"must be one of {known}"))
    return None


def _instant(name: str, value: object, problems: list[FieldError]) -> datetime | None:
    if value is None:
        return None
    parsed = parse_rfc3339(value) if isinstance(value, str) else None
    if parsed is None:
        why = "must be an RFC 3339 date-time with its offset, e.g. 2026-05-01T12:00:00Z"
        problems.append(FieldError(name, why))
    return parsed


def _bounded(at: datetime | None) -> datetime | None:
    """``at`` in UTC, within what the database stores (a time beyond is taken as the bound)."""
    if at is None:
        return None
    try:
        utc = at.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 moved past its end by the offset
        return LATEST if at.year > 1 else EARLIEST
    return max(EARLIEST, min(LATEST, utc))


def parse_rfc3339(text: str) -> datetime | None:
    """``text`` as an aware datetime when it is an RFC 3339 date-time (``T``, seconds, an
    optional fraction, ``Z`` or a numeric offset), else None; fractions beyond
    microseconds are cut."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    micros = int((m.group(7) or "0")[:6].ljust(6, "0"))
    try:
        offset = timedelta(0)
        if m.group(9) is not None:
            hours, minutes = int(m.group(10)), int(m.group(11))
            if hours > 23 or minutes > 59:
                return None
            offset = timedelta(hours=hours, minutes=minutes) * (-1 if m.group(9) == "-" else 1)
        tz = UTC if offset == timedelta(0) else timezone(offset)
        return datetime(year, month, day, hour, minute, second, micros, tzinfo=tz)
    except ValueError:  # a day, hour, ... out of range
        return None


class Limiter(Protocol):
    async def acquire(self, amount: float = 1) -> None: ...


def page_size(settings: Settings) -> int:
    """Rows per page: a quarter of a second of ``NOTIFSVC_REPLAY_RATE`` (at least one, at
    most ``NOTIFSVC_BATCH_SIZE``); the batch size when unpaced."""
    rate = settings.replay_rate
    if not rate:
        return settings.batch_size
    return max(1, min(settings.batch_size, int(rate * PAGE_SECONDS)))


@dataclass(frozen=True, slots=True)
class Step:
    """What one page did."""

    cursor: Cursor
    matched: int
    requeued: int
    done: bool

    @property
    def skipped(self) -> int:
        return self.matched - self.requeued


class ReplayRunner:
    """Works on one replay job at a time, taken from the ``replays`` table.

    ``owner`` names this runner in leases (default: host, pid and a random part, so a
    restarted process is a new owner); ``limiter`` paces pages (default:
    ``NOTIFSVC_REPLAY_RATE``); ``clock`` is the monotonic time lease renewals are timed by.
    """

    def __init__(
        self,
        settings: Settings,
        store: ReplayStore,
        producer: Producer,
        *,
        owner: str | None = None,
        limiter: Limiter | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.settings = settings
        self.store = store
        self.producer = producer
        self.owner = owner or process.owner_id()
        self._limiter = limiter if limiter is not None else make_limiter(settings.replay_rate)
        self._clock = clock
        self.page_size = page_size(settings)
        self.lease = timedelta(seconds=settings.replay_lease_seconds)
        self.requeued = 0
        self.expired = 0

    async def start(self) -> None:
        """Open the store's pool and check the schema (a missing table stops the stage; a
        database away is waited for)."""
        await self.store.start()
        try:
            await self.store.check_schema()
        except StoreUnavailable as exc:
            log.warning("replays: cannot check the schema now (will wait): %s", exc)

    async def stop(self) -> None:
        await self.store.stop()

    async def run(self, stopping: asyncio.Event) -> None:
        """Take jobs and work on them until ``stopping`` is set; never raises."""
        poll = self.settings.replay_poll_ms / 1000
        while not stopping.is_set():
            job = await self._claim()
            if job is None or not await self.work(job, stopping):
                await batching.wait_or_stop(stopping, poll)

    async def _claim(self) -> Job | None:
        try:
            return await self.store.claim_job(self.owner, self.lease)
        except errors.PipelineError as exc:
            log.warning("replays: cannot look for jobs (%s): %s", exc.kind.value, exc)
        except Exception:  # a bug must not stop the router
            log.exception("replays: looking for jobs failed unexpectedly")
        return None

    async def work(self, job: Job, stopping: asyncio.Event) -> bool:
        """Pages of ``job`` until it is done, its lease is lost or ``stopping`` is set;
        False when a failure ended it (it goes on from its cursor later)."""
        try:
            await self._work(job, stopping)
        except errors.PipelineError as exc:
            log.warning("replay %s: paused (%s): %s", job.id, exc.kind.value, exc)
            return False
        except Exception:  # a bug must not stop the router
            log.exception("replay %s: failed unexpectedly", job.id)
            return False
        return True

    async def _work(self, job: Job, stopping: asyncio.Event) -> None:
        log.info(
            "replay %s: working on %s (%d matched so far)", job.id, job.filter.view(), job.matched
        )
        cursor, renewed = job.cursor or TOP, self._clock()
        while not stopping.is_set():
            if self._limiter is not None:
                await self._limiter.acquire(self.page_size)
            if self._clock() - renewed >= self.lease.total_seconds() / 3:
                if not await self.store.renew(job.id, self.owner, self.lease):
                    log.warning("replay %s: lease lost (another router took it over)", job.id)
                    return
                renewed = self._clock()
            step = await self.run_page(job, cursor)
            if step is None:
                log.warning("replay %s: lease lost (another router took it over)", job.id)
                return
            cursor, renewed = step.cursor, self._clock()
            if step.done:
                log.info("replay %s: done", job.id)
                return
        await self.store.release(job.id, self.owner)
        log.info("replay %s: given up on stopping; another router goes on with it", job.id)

    async def run_page(self, job: Job, after: Cursor) -> Step | None:
        """One page of ``job`` after ``after``: flip, produce, record; None when the lease
        is no longer this runner's (the page's work is then the new owner's to redo)."""
        rows = await self.store.page(job, after, self.page_size)
        flipped = await self.store.requeue(job.id, [r.uuid for r in rows])
        expired = [f for f in flipped if f.expired]
        flipped = [f for f in flipped if not f.expired]
        await self._produce(job, flipped, expired)
        mine = {r.uuid for r in rows if r.mine} | {f.notification.uuid for f in flipped}
        mine -= {f.notification.uuid for f in expired}
        step = Step(
            rows[-1].cursor if rows else after, len(rows), len(mine), len(rows) < self.page_size
        )
        held = await self.store.advance(
            job.id,
            self.owner,
            cursor=step.cursor,
            counts=(step.matched, step.requeued, step.skipped),
            lease=self.lease,
            done=step.done,
        )
        if not held:
            return None
        self.requeued += len(flipped)
        self.expired += len(expired)
        for channel, count in Counter(f.notification.channel for f in flipped).items():
            metrics.REQUEUED.labels(channel, "replay").inc(count)
        log.debug(
            "replay %s: page of %d, %d requeued now, %d expired",
            job.id,
            len(rows),
            len(flipped),
            len(expired),
        )
        return step

    async def _produce(self, job: Job, flipped: list[Requeued], expired: list[Requeued]) -> None:
        """Send the flipped rows to their low lanes, and the ``notification.expired`` events
        of the expired ones, and wait for every acknowledgement. An outage raises (the page
        is done again later, and returns these rows again); a message refused for good is
        logged and its row left ``forwarded``, for the reconciler to drive again."""
        told = (expired_event(r.notification, attempts=r.attempts) for r in expired)
        try:
            await self.producer.send_all(
                [self._message(r) for r in flipped] + events.messages(self.settings, told)
            )
        except kafka.KafkaRecordError as exc:
            log.error("replay %s: messages refused, left to the reconciler: %s", job.id, exc)

    def _message(self, row: Requeued) -> Message:
        n, attempts = row.notification, row.attempts
        hop = [(headers.ATTEMPTS, str(attempts).encode()), *headers.replayed(attempts, time.time())]
        return topics.channel(self.settings, n.channel, "low"), n.encode(), n.key, hop
