"""The status-callback dispatcher (``notifsvc callbacks``): delivers callback events.

The notificator produces one :class:`~notifsvc.events.Event` per callback to
``notifications.callbacks``; this stage POSTs each to its URL, signed by the Standard
Webhooks spec (:mod:`notifsvc.signing`: ``webhook-id`` is the event's id on every attempt,
``webhook-timestamp`` and ``webhook-signature`` fresh on each), with the secrets of the API
key that posted the notification (``NOTIFSVC_CALLBACK_CLIENTS``), else
``NOTIFSVC_CALLBACK_SECRET`` (neither: unsigned).

It reads two lanes, each with its own consumer group: the events (``normal``) and its own
retry lane (``retry``), whose records wait until due. Per batch, through the shared
:class:`~notifsvc.batching.BatchLoop` (offsets committed once every event is delivered,
re-queued or dead-lettered; poison isolated):

- undecodable records, and events whose URL breaks the webhook channel's SSRF rules on
  ``NOTIFSVC_CALLBACK_ALLOWED_HOSTS`` (checked again here), go to
  ``notifications.callbacks.dlq`` without a request;
- events to a URL that is gone (its receiver once answered 410, remembered in the
  database) are dropped;
- the rest are POSTed concurrently (at most ``NOTIFSVC_CALLBACK_CONCURRENCY`` at once, at
  most ``NOTIFSVC_CALLBACK_RATE`` per second), each with a total timeout of
  ``NOTIFSVC_CALLBACK_TIMEOUT_MS``, redirects not followed. A 2xx answer is delivered; 410
  marks the URL gone; 3xx, 408, 425, 429, 5xx, a timeout or a connection error go to the
  retry lane, due after ``NOTIFSVC_CALLBACK_RETRY_DELAY_MS`` doubling per pass (or when a
  ``Retry-After`` asks, both capped at :data:`MAX_RETRY_DELAY`), until
  ``NOTIFSVC_CALLBACK_MAX_ATTEMPTS``, then to the DLQ; any other answer goes to the DLQ at
  once, with the reason.

A receiver that times out or refuses connections makes its host *failing* for
:data:`FAILING_SECONDS` (:class:`Circuit`): events of the normal lane to that host go
straight to the retry lane without a request (the attempt counts), so a dead receiver
costs the fresh events of other receivers at most one request timeout, however many
events it has. The retry lane still tries every due event (it is where a failing host is
probed), except those of a host found failing earlier in the same batch. Any answer from
the host ends its failing state.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import aiohttp
from aiolimiter import AsyncLimiter

from notifsvc import batching, deadletter, headers, metrics, preflight, topics
from notifsvc.batching import BatchLoop
from notifsvc.channels.http import parse_retry_after, read_bounded
from notifsvc.channels.webhook import host_of, url_problem, url_secrets
from notifsvc.config import Settings
from notifsvc.db.callbacks import CallbackStore
from notifsvc.db.store import StoreUnavailable
from notifsvc.deadletter import Message
from notifsvc.events import Event, InvalidEvent
from notifsvc.kafka import Consumer, Headers, Producer, Record
from notifsvc.ratelimit import make_limiter
from notifsvc.signing import ID_HEADER, TIMESTAMP_HEADER, SigningSecrets, unix_now

log = logging.getLogger(__name__)

STAGE = "callbacks"
#: The setting naming the hosts callbacks may target (quoted in reasons).
ALLOWED_HOSTS_VARIABLE = "NOTIFSVC_CALLBACK_ALLOWED_HOSTS"
#: Longest wait before an event is taken up again from the retry lane, and longest
#: ``Retry-After`` honoured.
MAX_RETRY_DELAY = 3600.0
#: Seconds a host stays failing after a timeout or refused connection (see :class:`Circuit`).
FAILING_SECONDS = 60.0
#: Bytes of a receiver's answer read (quoted in a dead-letter reason); the rest is not read.
MAX_ANSWER_BYTES = 4 * 1024
#: Characters of an answer or exception quoted in a reason.
DETAIL_CHARS = 200
#: Statuses that mean "not now" besides 3xx and 5xx.
RETRIABLE_STATUSES = frozenset({408, 425, 429})
USER_AGENT = "notifsvc-callbacks"


class Outcome(StrEnum):
    """What became of an event (the ``outcome`` label of ``notifsvc_callbacks_total``)."""

    DELIVERED = "delivered"
    RETRIED = "retried"  # to the retry lane, due later
    FAILED = "failed"  # to the callbacks DLQ
    GONE = "gone"  # the receiver answered 410: its URL gets nothing more
    DROPPED = "dropped"  # its URL was gone already


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one try of an event came to: DELIVERED, RETRIED (retriable), FAILED or GONE."""

    outcome: Outcome
    reason: str = ""
    retry_after: float = 0.0  # what the receiver asked for (Retry-After), in seconds
    unreachable: bool = False  # a timeout or connection error: its host is failing


def classify(status: int, answer_headers: Mapping[str, str], detail: str, label: str) -> Verdict:
    """The verdict of an HTTP answer (redirects are never followed: a 3xx is retried)."""
    if 200 <= status < 300:
        return Verdict(Outcome.DELIVERED)
    reason = f"{label} answered HTTP {status}: {detail[:DETAIL_CHARS]}".rstrip(": ")
    if status == 410:
        return Verdict(Outcome.GONE, reason)
    if 300 <= status < 400 or status in RETRIABLE_STATUSES or status >= 500:
        wait = parse_retry_after(answer_headers.get("Retry-After")) or 0.0
        return Verdict(Outcome.RETRIED, reason, retry_after=min(wait, MAX_RETRY_DELAY))
    return Verdict(Outcome.FAILED, reason)


def retry_delay(settings: Settings, passes: int, retry_after: float = 0.0) -> float:
    """Seconds before the retry lane takes an event up again after ``passes`` earlier
    passes: the base delay doubled per pass, or what the receiver asked, capped."""
    delay = settings.callback_retry_delay_ms / 1000 * (1 << min(passes, 24))
    return min(MAX_RETRY_DELAY, max(delay, retry_after))


def due(record: Record, *, now: float) -> float:
    """When a retry-lane record is due; a time later than any retry delay was not written
    by a dispatcher (or by a clock far off) and counts as due now."""
    at = headers.read_float(record, headers.NOT_BEFORE, default=0.0, low=0.0, high=math.inf)
    return at if at <= now + MAX_RETRY_DELAY + 60 else 0.0


class Circuit:
    """Hosts that timed out or refused connections lately (see the module's docstring)."""

    def __init__(
        self, hold: float = FAILING_SECONDS, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.hold = hold
        self.clock = clock
        self._failing: dict[str, tuple[float, float]] = {}  # host -> (last failure, until)

    def trip(self, host: str) -> None:
        """``host`` timed out or refused a connection just now."""
        now = self.clock()
        self._failing[host] = (now, now + self.hold)

    def heal(self, host: str) -> None:
        """``host`` answered."""
        self._failing.pop(host, None)

    def failing(self, host: str, *, since: float | None = None) -> bool:
        """Whether ``host`` is failing (with ``since``: and failed again at or after it)."""
        found = self._failing.get(host)
        if found is None or found[1] <= self.clock():
            return False
        return since is None or found[0] >= since


@dataclass(frozen=True, slots=True)
class Pending:
    """An event to try, with the record it came in and its history."""

    record: Record
    event: Event
    body: bytes
    prior: int  # attempts made in earlier passes
    passes: int  # earlier passes through the retry lane

    @property
    def host(self) -> str:
        return host_of(self.event.url)


def settle(
    settings: Settings, item: Pending, verdict: Verdict, *, now: float
) -> tuple[Outcome, Message | None]:
    """The final outcome of a try, and the message that carries the event on, if any."""
    if verdict.outcome in (Outcome.DELIVERED, Outcome.GONE):
        return verdict.outcome, None
    attempts = item.prior + 1
    if verdict.outcome is Outcome.RETRIED and attempts < settings.callback_max_attempts:
        at = now + retry_delay(settings, item.passes, verdict.retry_after)
        hop: Headers = (
            (headers.ATTEMPTS, str(attempts).encode()),
            (headers.PASSES, str(item.passes + 1).encode()),
            (headers.NOT_BEFORE, f"{at:.3f}".encode()),
        )
        record = item.record
        return Outcome.RETRIED, (
            topics.callbacks(settings, "retry"),
            _value(record),
            record.key,
            hop,
        )
    reason = verdict.reason
    if verdict.outcome is Outcome.RETRIED:
        reason = f"gave up after {attempts} attempts: {reason}"
    return Outcome.FAILED, dead_letter(settings, item.record, reason, attempts=attempts)


def dead_letter(
    settings: Settings, record: Record, reason: str, *, attempts: int | None = None
) -> Message:
    """``record`` for the callbacks DLQ, with the dead-letter headers (and its attempts)."""
    dlq = topics.callbacks_dlq(settings)
    topic, value, key, found = deadletter.dead_letter(
        settings, record, reason=reason, stage=STAGE, topic=dlq
    )
    if attempts is not None:
        found = (*found, (headers.ATTEMPTS, str(attempts).encode()))
    return topic, value, key, found


def _value(record: Record) -> bytes:
    return record.value or b""


class Dispatcher:
    """The stage: :meth:`start`, :meth:`run` until stopping, :meth:`stop` (safe twice)."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: CallbackStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store or CallbackStore(settings.database)
        self.clock = clock
        self.producer = Producer(settings, client_id=topics.DISPATCHER)
        self.circuit = Circuit()
        self.limiter: AsyncLimiter | None = make_limiter(settings.callback_rate)
        self.consumers: dict[str, Consumer] = {}
        self.loops: dict[str, BatchLoop] = {}
        self._done: dict[str, dict[tuple[str, int, int], Verdict]] = {}  # survives a retry
        self._slots = asyncio.Semaphore(settings.callback_concurrency)
        self._session: aiohttp.ClientSession | None = None
        self._stopping = asyncio.Event()
        self.counts: Counter[Outcome] = Counter()
        for lane in topics.CALLBACK_LANES:
            self._add_lane(lane)

    def _add_lane(self, lane: str) -> None:
        self.consumers[lane], self.loops[lane] = batching.lane(
            self.settings,
            group=topics.dispatcher_group(self.settings, lane),
            topic=topics.callbacks(self.settings, lane),
            handler=functools.partial(self.handle, lane),
            on_poison=self.isolate,
            name=f"{STAGE}:{lane}",
            # Offsets move once a batch is settled, and a crash re-sends its unsettled part:
            # batches of twice the concurrency keep that (and the duplicates) small.
            batch_size=min(self.settings.batch_size, 2 * self.settings.callback_concurrency),
            deferred=lane == "retry",
        )
        self._done[lane] = {}

    async def start(self) -> None:
        await self.store.start()
        names = [topics.callbacks(self.settings, lane) for lane in topics.CALLBACK_LANES]
        await preflight.check_topics(self.settings, [*names, topics.callbacks_dlq(self.settings)])
        try:
            await self.store.check_schema()
        except StoreUnavailable as exc:
            log.warning("cannot check the schema now (will wait for the database): %s", exc)
        if not self.settings.callback_allowed_hosts:
            log.warning("%s is not set: every callback is dead-lettered", ALLOWED_HOSTS_VARIABLE)
        await self.producer.start()
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.settings.callback_timeout_ms / 1000)
            connector = aiohttp.TCPConnector(limit=self.settings.callback_concurrency)
            self._session = aiohttp.ClientSession(
                timeout=timeout, connector=connector, raise_for_status=False
            )
        await asyncio.gather(*(c.start() for c in self.consumers.values()))

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.consumers.values()))
        await self.producer.stop()
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        await self.store.stop()

    async def run(self, stopping: asyncio.Event) -> None:
        self._stopping = stopping
        async with asyncio.TaskGroup() as group:
            for loop in self.loops.values():
                group.create_task(loop.run(stopping))

    async def handle(self, lane: str, records: list[Record]) -> None:
        """Deliver a batch; every event ends delivered, re-queued, dead-lettered or dropped."""
        if lane == "retry":
            await self._until_due(records)
        started = self.circuit.clock()
        items, poison = self._decode(records)
        gone = await self.store.gone(i.event.url for i in items)
        todo = [i for i in items if i.event.url not in gone]
        verdicts = await asyncio.gather(*(self._try(lane, i, started) for i in todo))
        await self.store.mark_gone(
            i.event.url for i, v in zip(todo, verdicts, strict=True) if v.outcome is Outcome.GONE
        )
        now = self.clock()
        settled = [
            settle(self.settings, i, v, now=now) for i, v in zip(todo, verdicts, strict=True)
        ]
        await self.producer.send_all([*poison, *(m for _, m in settled if m is not None)])
        outcomes = Counter(o for o, _ in settled)
        outcomes[Outcome.FAILED] += len(poison)
        outcomes[Outcome.DROPPED] += len(items) - len(todo)
        self._account(outcomes)
        for record in records:  # done; a retried batch would have nothing left to try
            self._done[lane].pop(_where(record), None)

    def _decode(self, records: list[Record]) -> tuple[list[Pending], list[Message]]:
        """The events to try, and dead letters for the records that are not events or
        whose URL callbacks may not target."""
        items: list[Pending] = []
        poison: list[Message] = []
        for record in records:
            try:
                event = Event.decode(record.value)
                body = event.body()
            except (InvalidEvent, KeyError, TypeError, ValueError) as exc:
                reason = exc if isinstance(exc, InvalidEvent) else f"not a callback event: {exc!r}"
                poison.append(dead_letter(self.settings, record, str(reason)))
                continue
            allowed = self.settings.callback_allowed_hosts
            problem = url_problem(event.url, allowed, variable=ALLOWED_HOSTS_VARIABLE)
            if problem is not None:
                reason = f"callback URL to {host_of(event.url)}: {problem}"
                poison.append(dead_letter(self.settings, record, reason))
                continue
            prior = headers.read_int(record, headers.ATTEMPTS)
            passes = headers.read_int(record, headers.PASSES, high=64)
            items.append(Pending(record, event, body, prior, passes))
        return items, poison

    async def _until_due(self, records: list[Record]) -> None:
        now = self.clock()
        await batching.wait_until_due(max(due(r, now=now) for r in records) - now, self._stopping)

    async def _try(self, lane: str, item: Pending, started: float) -> Verdict:
        """One try of ``item``; the same verdict again if its batch is retried."""
        where = _where(item.record)
        verdict = self._done[lane].get(where)
        if verdict is not None:
            return verdict
        async with self._slots:
            # Fresh events never wait on a failing host; the retry lane probes it, once
            # per batch.
            since = None if lane == "normal" else started
            if self.circuit.failing(item.host, since=since):
                why = f"not tried: {item.host} is failing (timeouts or refused connections)"
                verdict = Verdict(Outcome.RETRIED, why)
            else:
                if self.limiter is not None:
                    await self.limiter.acquire()
                verdict = await self.post(item)
        self._done[lane][where] = verdict
        return verdict

    def _secrets(self, client: str | None) -> SigningSecrets | None:
        clients = self.settings.callback_clients
        found = clients.secrets(client) if clients is not None else None
        chosen = found if found is not None else self.settings.callback_secret
        return chosen if isinstance(chosen, SigningSecrets) else None

    def request_headers(self, event: Event, body: bytes) -> dict[str, str]:
        """The headers of one attempt, signed now (unsigned without any secret)."""
        out = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        secrets = self._secrets(event.client)
        if secrets is None:
            return out | {ID_HEADER: event.id, TIMESTAMP_HEADER: str(unix_now())}
        return out | secrets.headers(event.id, body)

    async def post(self, item: Pending) -> Verdict:
        """POST ``item``'s event once and classify what happened; never raises."""
        session, event = self._session, item.event
        label = f"callback to {item.host}"
        if session is None:
            return Verdict(Outcome.RETRIED, f"{label}: the dispatcher is not started")
        try:
            sent_headers = self.request_headers(event, item.body)
        except ValueError as exc:  # e.g. an id the spec does not allow
            return Verdict(Outcome.FAILED, f"{label}: cannot sign: {exc}")
        started = time.monotonic()
        try:
            async with session.post(
                event.url, data=item.body, headers=sent_headers, allow_redirects=False
            ) as resp:
                answer = await read_bounded(resp.content, MAX_ANSWER_BYTES)
            detail = _scrub(event.url, answer.decode(errors="replace"))
            verdict = classify(resp.status, resp.headers, detail, label)
        except (TimeoutError, aiohttp.ClientError) as exc:
            failure = _scrub(event.url, _describe(exc))
            verdict = Verdict(Outcome.RETRIED, f"{label} failed: {failure}", unreachable=True)
        except Exception as exc:  # noqa: BLE001 - a bug or a surprise: this event fails alone
            failure = _scrub(event.url, _describe(exc))
            verdict = Verdict(Outcome.FAILED, f"{label} failed unexpectedly: {failure}")
        metrics.CALLBACK_SECONDS.observe(time.monotonic() - started)
        if verdict.unreachable:
            self.circuit.trip(item.host)
        else:
            self.circuit.heal(item.host)
        return verdict

    async def isolate(self, record: Record, reason: str) -> None:
        """A record that fails on its own: to the callbacks DLQ; if even that refuses it
        (too large), its headers and reason without the value."""
        dlq = topics.callbacks_dlq(self.settings)
        await deadletter.isolate(
            self.producer, self.settings, record, reason=reason, stage=STAGE, topic=dlq
        )
        for done in self._done.values():
            done.pop(_where(record), None)
        # The batch loop counts it in notifsvc_dlq_total (under the lane's name).
        self._account(Counter({Outcome.FAILED: 1}), dlq=False)

    def _account(self, outcomes: Counter[Outcome], *, dlq: bool = True) -> None:
        self.counts.update(outcomes)
        for outcome, n in outcomes.items():
            metrics.CALLBACKS.labels(outcome.value).inc(n)
        if dlq:
            metrics.DLQ.labels(STAGE).inc(outcomes[Outcome.FAILED])


def _where(record: Record) -> tuple[str, int, int]:
    return record.topic, record.partition, record.offset


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, TimeoutError) and not text:
        return "timed out"
    shown = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return shown[:DETAIL_CHARS]


def _scrub(url: str, text: str) -> str:
    """``text`` without the parts of ``url`` that may be secret (path, query, tokens)."""
    for secret in sorted(url_secrets(url), key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    return text
