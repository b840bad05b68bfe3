"""The reconciler: the database is the ledger, and a row left unfinished is driven again.

A notification row is unfinished while its state is ``received``, ``forwarded`` or
``sending`` (claimed by a notificator, which may have died since). Every step of the
pipeline moves its ``updated_at`` (the router's forward, each pass of the notificator, its
claim included, and a postponed send recorded on its way to the retry lane), so a row
whose ``updated_at`` has not moved for ``NOTIFSVC_REDRIVE_AFTER_SECONDS`` (default 5 min,
2.5 times the longest retry-lane delay, :data:`~notifsvc.delivery.MAX_RETRY_DELAY`) has
lost the Kafka message that should move it on: a broker that lost data, a topic deleted and
recreated, a consumer group reset past it, a router that died between insert and forward
while its batch was lost too. Staleness is judged by the database's clock, the one that
wrote ``updated_at``, so replicas with skewed clocks agree on it.

Such a row is forwarded again exactly as the router forwards it (same lane topic, value and
key, its recorded attempts in ``notifsvc-attempts`` so that the attempt budget holds), and a
``received`` row is then marked forwarded. The notificator skips rows already sent or
failed, so a re-drive of a row whose first message did arrive delivers nothing twice. A row
older than ``NOTIFSVC_REDRIVE_EXPIRE_SECONDS`` since it was accepted is not re-driven: it
goes to the dead-letter topic and fails with reason ``expired_unfinished`` (next hop first,
outcome second, as in the notificator), so that no row stays unfinished for ever and
retention (:mod:`notifsvc.retention`), which only deletes finished rows, eventually removes
it. A row past its own ``expires_at`` is neither: it moves to ``expired`` (its
``notification.expired`` callback event first), as everywhere else a notification is found
expired.

It is a duty of the router, sliced by the router's consumer group: a row's slice is
md5(uuid) modulo the partition count of ``outstanding-notifications``, and each replica
reconciles the slices numbered like the partitions it owns. So exactly one replica works
on each slice, scaling with the router; while a rebalance moves a partition, two replicas
may read the same rows, and the claim settles it: rows are claimed (``updated_at`` moved
to now, ``redriven`` counted) by one statement that takes only rows unchanged since they
were read, so each row is re-driven by one of them. The claim comes before the send:
a crash or an outage in between delays the row by one more ``REDRIVE_AFTER``, never loses
it.

Every ``NOTIFSVC_REDRIVE_PERIOD_SECONDS`` a pass pages through the stalled rows of its
slices in (received_at, uuid) order, by keyset, each page a bounded LIMIT served by the
partial index of rows in flight (no index reads ``updated_at``, which every step moves: see
migration 0012), of which it reads only rows received before ``REDRIVE_AFTER`` ago. During
a provider outage that is every row cycling through the retry lane, read once per pass.
Pages are paced by ``NOTIFSVC_REDRIVE_RATE`` (per replica), so that a backlog after an
outage never floods the lanes. A pass ends after one period; the next one reads the
ownership again and continues after the last row claimed, starting over once a pass has
reached the end, so every stalled row gets its turn however many there are. Only
``received``, ``forwarded`` and ``sending`` rows are ever considered (never ``canceled``
ones): a state added later (such as a scheduled send not yet due) is never re-driven unless
this module learns about it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid as uuid_mod
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import Unpack

from notifsvc import deadletter, events, headers, kafka, metrics, schedule, topics
from notifsvc.config import Settings
from notifsvc.db.store import Outcome, StalledRow, Store
from notifsvc.deadletter import Message
from notifsvc.delivery import MAX_RETRY_DELAY
from notifsvc.duty import START, DutyOptions, Owns, SlicedDuty
from notifsvc.events import expired_event
from notifsvc.kafka import Producer
from notifsvc.model import Reason, State

log = logging.getLogger(__name__)

#: Reason (prefix) of a notification failed because it stayed unfinished too long.
EXPIRED = Reason.EXPIRED_UNFINISHED
#: Header of a re-driven message: how many times its row has been re-driven.
REDRIVEN_HEADER = "notifsvc-redriven"
#: Stage name in dead-letter headers and metrics.
STAGE = "reconciler"
#: Seconds to wait for the broker's acknowledgements of a page (the producer gives up on a
#: message after 30 s and reports it).
REPORTS_WITHIN = 45.0


class Reconciler(SlicedDuty):
    """Passes over the stalled rows of the slices ``owns`` says are this replica's, paced
    at ``NOTIFSVC_REDRIVE_RATE`` (see :class:`~notifsvc.duty.DutyOptions`)."""

    stage = STAGE

    @staticmethod
    def rate(settings: Settings) -> float:
        return settings.redrive_rate

    def __init__(
        self,
        settings: Settings,
        store: Store,
        producer: Producer,
        *,
        owns: Owns,
        **options: Unpack[DutyOptions],
    ) -> None:
        super().__init__(settings, store, owns=owns, **options)
        self.producer = producer
        self.redriven = 0
        self.expired = 0
        #: Rows found past their own ``expires_at`` and moved to ``expired``.
        self.lapsed = 0
        #: Where the next pass starts: where the last one stopped, unless it reached the end.
        #: Rows are read oldest received first, so a pass that always started at the
        #: beginning would give the oldest rows every turn: with more stalled rows than a
        #: pass can take, those after them would wait until they expire.
        self._resume = START
        _warn_about(settings)

    def schedule(self) -> tuple[float, float]:
        period = self.settings.redrive_period_seconds
        return period, period

    async def _pass(self, stopping: asyncio.Event) -> int:
        count, owned = await self.owned()
        ends = self._monotonic() + self.settings.redrive_period_seconds
        done = 0
        while owned and not stopping.is_set() and self._monotonic() < ends:
            await self.pace()
            rows = await self.store.claim_stalled(
                stalled_for=timedelta(seconds=self.settings.redrive_after_seconds),
                after=self._resume,
                slices=count,
                owned=owned,
                limit=self.page,
            )
            if rows:
                done += await self._redrive(rows)
                self._resume = rows[-1].cursor
            if len(rows) < self.page:
                self._resume = START  # the end: the next pass starts over
                break
        if done:
            log.warning("%s: re-drove or expired %d unfinished notifications", STAGE, done)
        return done

    async def _redrive(self, rows: list[StalledRow]) -> int:
        """Forward ``rows`` again (or dead-letter the expired ones), then record it; those
        past their own ``expires_at`` become ``expired`` instead (:meth:`_lapse`)."""
        now = self._clock()
        lapsed = [r for r in rows if r.notification.expired(now)]
        done = await self._lapse(lapsed, now) if lapsed else 0
        rows = [r for r in rows if not r.notification.expired(now)]
        later = [r for r in rows if _due_later(r, now)]
        done += await self._place(later, now) if later else 0
        rows = [r for r in rows if not _due_later(r, now)]
        limit = self.settings.redrive_expire_seconds
        expired = [r for r in rows if now - _started(r) > limit]
        live = [r for r in rows if now - _started(r) <= limit]
        messages = [self._forward(r) for r in live]
        messages += [self._dead_letter(r, _reason(r, now)) for r in expired]
        sent, refused, outage = await self._send(
            messages, [r.notification.uuid for r in live + expired]
        )
        await self._give_up(live + expired, refused)
        live = [r for r in live if r.notification.uuid in sent]
        expired = [r for r in expired if r.notification.uuid in sent]
        received = [r.notification.uuid for r in live if r.state is State.RECEIVED]
        await self.store.mark_forwarded(received)
        await self.store.record(
            [Outcome(r.notification.uuid, State.FAILED, 0, _reason(r, now)) for r in expired]
        )
        self._account(live, expired, now)
        if outage is not None:
            raise outage  # the rest of the pass would fail alike
        return done + len(live) + len(expired) + len(refused)

    async def _lapse(self, rows: list[StalledRow], now: float) -> int:
        """Rows past their ``expires_at``: never re-driven, but moved to ``expired``, their
        ``notification.expired`` events produced first (so none is lost; a pass that fails
        in between produces one again, with the same id); the number moved."""
        told = (expired_event(r.notification, attempts=r.attempts, at=now) for r in rows)
        await self.producer.send_all(events.messages(self.settings, told))
        why = "its expires_at passed while it was stalled"
        moved = await self.store.expire([r.notification.uuid for r in rows], why)
        self.lapsed += len(moved)
        for r in rows:
            if r.notification.uuid in moved:
                log.info("%s: %s expired (%s)", STAGE, r.notification.uuid, why)
        return len(moved)

    async def _place(self, rows: list[StalledRow], now: float) -> int:
        """Rows the router inserted but did not place, due later: to their delay tier (or
        parked), then ``scheduled``, as the router does; never to the lane early."""
        hops = [(r, schedule.first_hop(self.settings, r.notification, (), now)) for r in rows]
        messages = [m for _, m in hops if m is not None]
        sent, refused, outage = await self._send(
            messages, [r.notification.uuid for r, m in hops if m]
        )
        await self._give_up(rows, refused)
        placed = [r.notification.uuid for r, m in hops if m is None or r.notification.uuid in sent]
        await self.store.mark_scheduled(placed)
        if outage is not None:
            raise outage
        return len(placed) + len(refused)

    async def _send(
        self, messages: list[Message], uuids: list[uuid_mod.UUID]
    ) -> tuple[set[uuid_mod.UUID], dict[uuid_mod.UUID, BaseException], kafka.KafkaError | None]:
        """Send ``messages`` (one per UUID), each once: the UUIDs whose message the broker
        acknowledged, those it refused for good (with why: :meth:`_give_up`), and the outage
        that kept any other from it (their rows are claimed again one ``REDRIVE_AFTER``
        later). A refused message does not hold back the others."""
        if not messages:
            return set(), {}, None
        futures = [self.producer.send(t, v, key=k, headers=h) for t, v, k, h in messages]
        done, pending = await asyncio.wait(futures, timeout=REPORTS_WITHIN)
        for future in pending:
            future.cancel()
        sent: set[uuid_mod.UUID] = set()
        refused: dict[uuid_mod.UUID, BaseException] = {}
        outage: kafka.KafkaError | None = None
        for uid, future in zip(uuids, futures, strict=True):
            error = future.exception() if future in done else kafka.KafkaUnavailable("no report")
            if error is None:
                sent.add(uid)
            elif isinstance(error, kafka.KafkaUnavailable):
                outage = outage or error
            else:
                log.error("%s: cannot re-drive %s: %s", STAGE, uid, error)
                refused[uid] = error
        return sent, refused, outage

    async def _give_up(
        self, rows: list[StalledRow], refused: dict[uuid_mod.UUID, BaseException]
    ) -> None:
        """Those of ``rows`` whose message the broker refused for good: re-driven again they
        would be refused again, for ever. Each ends ``failed`` with the broker's reason, after
        a dead-letter record without the value (the value is what was refused)."""
        why = {
            r.notification.uuid: f"the broker refused it: {refused[r.notification.uuid]}"
            for r in rows
            if r.notification.uuid in refused
        }
        if not why:
            return
        dead = [
            deadletter.without_value(self._dead_letter(r, why[r.notification.uuid]))
            for r in rows
            if r.notification.uuid in why
        ]
        try:
            await self.producer.send_all(dead)
        except kafka.KafkaRecordError as exc:  # even without the value: the row still ends
            log.error("%s: cannot dead-letter %d refused re-drives: %s", STAGE, len(dead), exc)
        await self.store.record([Outcome(u, State.FAILED, 0, w) for u, w in why.items()])

    def _forward(self, row: StalledRow) -> Message:
        """The router's forward of this notification, with its attempts so far; a row an
        operator requeued goes as the requeue sent it (low lane, the same attempt budget)."""
        n = row.notification
        hop = [(REDRIVEN_HEADER, str(row.redriven).encode())]
        if row.attempts:
            hop.append((headers.ATTEMPTS, str(row.attempts).encode()))
        lane = n.priority.value
        if row.replayed is not None:
            lane = "low"
            hop.extend(headers.replayed(row.replayed.attempts, row.replayed.at))
        return topics.channel(self.settings, n.channel, lane), n.encode(), n.key, hop

    def _dead_letter(self, row: StalledRow, reason: str) -> Message:
        n = row.notification
        hop = (
            deadletter.reason_header(reason),
            (deadletter.STAGE, STAGE.encode()),
            (headers.ATTEMPTS, str(row.attempts).encode()),
        )
        return topics.dlq(self.settings), n.encode(), n.key, hop

    def _account(
        self, live: Sequence[StalledRow], expired: Sequence[StalledRow], now: float
    ) -> None:
        self.redriven += len(live)
        self.expired += len(expired)
        for channel, count in Counter(r.notification.channel for r in live).items():
            metrics.REDRIVEN.labels(channel).inc(count)
        for channel, count in Counter(r.notification.channel for r in expired).items():
            metrics.REDRIVE_EXPIRED.labels(channel).inc(count)
        metrics.DLQ.labels(STAGE).inc(len(expired))
        for r in live:
            log.info(
                "%s: re-drove %s (%s, %s, unmoved for %.0fs, accepted %.0fs ago, re-drive %d)",
                STAGE,
                r.notification.uuid,
                r.notification.channel,
                r.state.value,
                now - r.stalled_since.timestamp(),
                now - r.notification.accepted_at,
                r.redriven,
            )
        for r in expired:
            log.warning("%s: %s failed: %s", STAGE, r.notification.uuid, _reason(r, now))


def _due_later(row: StalledRow, now: float) -> bool:
    """A row still ``received`` whose ``send_at`` is ahead: it waits for its time."""
    send_at = row.notification.send_at
    return row.state is State.RECEIVED and send_at is not None and send_at > now


def _started(row: StalledRow) -> float:
    """When the row's current run began: its acceptance (its ``send_at`` when scheduled),
    or an operator's requeue."""
    return row.replayed.at if row.replayed is not None else row.notification.due_at


def _reason(row: StalledRow, now: float) -> str:
    age = now - _started(row)
    since = "requeued" if row.replayed is not None else "accepted"
    return f"{EXPIRED}: still {row.state.value} {age:.0f}s after it was {since}"


def _warn_about(settings: Settings) -> None:
    after = settings.redrive_after_seconds
    if after < 2 * MAX_RETRY_DELAY:
        log.warning(
            "%s: NOTIFSVC_REDRIVE_AFTER_SECONDS=%d is below twice the longest retry-lane delay "
            "(%.0fs): notifications waiting there may be sent to their lane again early",
            STAGE,
            after,
            MAX_RETRY_DELAY,
        )
    if settings.redrive_expire_seconds <= after:
        log.warning(
            "%s: NOTIFSVC_REDRIVE_EXPIRE_SECONDS=%d is not above NOTIFSVC_REDRIVE_AFTER_SECONDS: "
            "a stalled notification expires instead of being re-driven",
            STAGE,
            settings.redrive_expire_seconds,
        )
