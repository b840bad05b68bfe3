"""The one thin, typed, asyncio-friendly layer over confluent-kafka.

Nothing outside this module builds librdkafka configuration or touches confluent-kafka
objects. The producer's delivery reports are served on the event loop and resolve asyncio
futures (a watchdog thread only replaces a producer that broke); every consumer call runs
on the consumer's own single thread, so that librdkafka sees one caller and rebalance
callbacks run between our batches.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias, TypeVar

import confluent_kafka
from confluent_kafka import ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from notifsvc import errors
from notifsvc.config import KafkaConnection, Settings, kafka_extra_pairs

log = logging.getLogger(__name__)
T = TypeVar("T")

Headers = Sequence[tuple[str, bytes]]
#: What a consumer logs (logger ``notifsvc.kafka``) when it gains or loses partitions, with a
#: sorted list of (topic, partition): ``notifsvc dev`` and the chaos harness read these lines
#: to know when every stage owns its partitions.
ASSIGNED_LOG = "assigned %s"
REVOKED_LOG = "revoked %s"
TopicPartition = tuple[str, int]


class KafkaError(Exception):
    """A produce, commit or admin call that did not succeed (see the subclasses' kinds)."""


class KafkaUnavailable(KafkaError, errors.Unavailable):
    """The broker is unreachable, slow or mid-failover: try again later."""


class ProducerBusy(KafkaUnavailable):
    """The local produce queue is full: the broker is slow or unreachable."""


class KafkaRecordError(KafkaError, errors.RecordError):
    """The broker (or librdkafka) refuses this message for good, e.g. it is too large."""


class KafkaStageError(KafkaError, errors.StageError):
    """The topic does not exist, or this client may not use it: an operator must act."""


_E = confluent_kafka.KafkaError
#: Error codes that no retry can fix for the message at hand.
_RECORD_CODES = frozenset(
    {
        _E.MSG_SIZE_TOO_LARGE,
        _E.RECORD_LIST_TOO_LARGE,
        _E.INVALID_RECORD,
        _E.INVALID_MSG,
        _E._BAD_MSG,
        _E._INVALID_ARG,
        _E.POLICY_VIOLATION,
    }
)
#: Error codes that no retry can fix for any message of the stage.
_STAGE_CODES = frozenset(
    {
        _E.UNKNOWN_TOPIC_OR_PART,
        _E._UNKNOWN_TOPIC,
        _E._UNKNOWN_PARTITION,
        _E.TOPIC_AUTHORIZATION_FAILED,
        _E.CLUSTER_AUTHORIZATION_FAILED,
        _E.SASL_AUTHENTICATION_FAILED,
        _E._AUTHENTICATION,
        _E._SSL,
    }
)


def classify(err: confluent_kafka.KafkaError | object) -> KafkaError:
    """A librdkafka error (or anything raised in its place) as one of the three kinds."""
    if not isinstance(err, confluent_kafka.KafkaError):
        return KafkaUnavailable(str(err))
    code = err.code()
    if code in _RECORD_CODES:
        return KafkaRecordError(err.str())
    if code in _STAGE_CODES:
        return KafkaStageError(err.str())
    return KafkaUnavailable(err.str())


class Record(NamedTuple):
    """One consumed message. (A named tuple: a frozen dataclass took 2.6 µs to build, a
    third of the consumer thread's time per message; this takes 0.7.)"""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int
    #: Which ownership of its partition by this member read it (see :meth:`Consumer.owns`).
    epoch: int = 0

    def header(self, name: str) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)


Connects = Settings | KafkaConnection  # a stage passes its Settings; others a connection


def connection(where: Connects) -> KafkaConnection:
    return where.kafka if isinstance(where, Settings) else where


def security(conn: KafkaConnection) -> dict[str, Any]:
    """The librdkafka properties of ``conn``'s TLS and SASL settings, then its extras."""
    out: dict[str, Any] = {"security.protocol": conn.security_protocol.lower()}
    if conn.uses_tls:
        out["ssl.endpoint.identification.algorithm"] = (
            "https" if conn.ssl_endpoint_identification else "none"
        )
        out |= {
            prop: str(path)
            for prop, path in (
                ("ssl.ca.location", conn.ssl_ca_file),
                ("ssl.certificate.location", conn.ssl_cert_file),
                ("ssl.key.location", conn.ssl_key_file),
            )
            if path is not None
        }
        if conn.ssl_key_password is not None:
            out["ssl.key.password"] = conn.ssl_key_password.reveal()
    if conn.sasl_mechanism is not None:
        out |= _sasl(conn)
    if conn.extra is not None:
        out |= dict(kafka_extra_pairs(conn.extra.reveal()))
    return out


def _sasl(conn: KafkaConnection) -> dict[str, Any]:
    out: dict[str, Any] = {"sasl.mechanism": conn.sasl_mechanism}
    if conn.sasl_mechanism != "OAUTHBEARER":
        assert conn.sasl_password is not None, "validated by config.load"
        return out | {
            "sasl.username": conn.sasl_username,
            "sasl.password": conn.sasl_password.reveal(),
        }
    assert conn.oauth_client_secret is not None, "validated by config.load"
    out |= {
        "sasl.oauthbearer.method": "oidc",
        "sasl.oauthbearer.token.endpoint.url": conn.oauth_token_url,
        "sasl.oauthbearer.client.id": conn.oauth_client_id,
        "sasl.oauthbearer.client.secret": conn.oauth_client_secret.reveal(),
    }
    if conn.oauth_scope:
        out["sasl.oauthbearer.scope"] = conn.oauth_scope
    return out


def _common(where: Connects, client_id: str) -> dict[str, Any]:
    conn = connection(where)
    return {
        "bootstrap.servers": conn.bootstrap,
        "client.id": client_id,
        "logger": logging.getLogger("notifsvc.librdkafka"),
        "socket.keepalive.enable": True,
        "reconnect.backoff.max.ms": 1000,
    } | security(conn)


class Producer:
    """An idempotent, ``acks=all`` producer whose sends are awaitable.

    Sends made during one event-loop iteration are handed to librdkafka together at its
    end, so a send never raises into its caller: a message that cannot be queued fails its
    own future. Delivery reports are served on the loop too: by a non-blocking poll after
    each hand-over and on a timer (every :data:`POLL_BUSY` seconds while messages wait for
    their reports, :data:`POLL_IDLE` otherwise). A thread of its own serving them cost the
    receiver a fifth of its CPU: each report took the interpreter lock from the loop's
    thread (see docs/performance.md). The watchdog thread (:meth:`_watch`) only looks for a
    producer that had a fatal error or made no progress while the broker answered, and
    has the loop replace it.
    """

    #: Seconds between polls while messages wait for their reports, and while none do.
    POLL_BUSY = 0.001
    POLL_IDLE = 0.05
    #: Seconds between the watchdog's looks for a fatal error or a wedged producer.
    WATCH_EVERY = 0.5

    def __init__(
        self,
        settings: Connects,
        *,
        client_id: str,
        linger_ms: int = 5,
        timeout_ms: int = 30_000,
        max_queued: int = 500_000,
    ) -> None:
        self._config = _common(settings, client_id) | {
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": linger_ms,
            "message.timeout.ms": timeout_ms,
            "queue.buffering.max.messages": max_queued,
            "error_cb": self._on_error,
        }
        self._producer: confluent_kafka.Producer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchdog: threading.Thread | None = None
        self._polling: asyncio.TimerHandle | None = None
        self._polling_busy = False
        self._stopping = threading.Event()  # this start's watchdog's (one per start)
        self._fatal = threading.Event()
        self._wake = threading.Event()  # the watchdog's: a fatal error, or stop()
        self._outbox: list[_Outgoing] = []
        self._deadlines: dict[float, list[asyncio.Future[None]]] = {}  # of the outbox's sends
        self._due: dict[float, deque[_Due]] = {}  # by duration: oldest first
        self._reports: list[_Report] = []  # filled by whichever thread serves reports
        self._reports_lock = threading.Lock()
        # Progress watchdog: sends waiting this long with no acknowledgement while the
        # broker answers metadata mean a wedged producer (seen after a broker lost its state).
        self._timeout = timeout_ms / 1000
        self._stuck_after = max(5.0, min(15.0, 3 * self._timeout))
        self._waiting_since: float | None = None
        self._next_check = 0.0

    async def start(self) -> None:
        if self._producer is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._producer = confluent_kafka.Producer(self._config)
        self._stopping = stopping = threading.Event()
        self._wake.clear()
        self._watchdog = threading.Thread(
            target=self._watch, args=(stopping,), name="kafka-producer", daemon=True
        )
        self._watchdog.start()
        self._poll()
        try:  # connect (and let the idempotent producer get its id) before the first send
            await asyncio.to_thread(self.ping, 5.0)
        except KafkaError as exc:
            log.warning("starting without a broker: %s", exc)

    def _on_error(self, err: confluent_kafka.KafkaError | str) -> None:
        if isinstance(err, confluent_kafka.KafkaError) and err.fatal():
            log.error("producer fatal error: %s", err.str())
            self._fatal.set()
            self._wake.set()

    def _poll(self) -> None:
        """Serve the reports (and errors and logs) librdkafka holds, on the loop, and fail
        the bounded sends due; again soon. While stop() flushes (no producer to poll any
        more) only the deadlines; stop() ends the polls when it is done."""
        producer = self._producer
        try:
            if producer is not None:
                self._serve(producer)
        finally:  # whatever a callback raised (the loop logs it): deadlines, the next poll
            assert self._loop is not None, "polled only once started"
            self._expire_due(self._loop.time())
            busy = producer is not None and len(producer) > 0
            self._poll_in(self.POLL_BUSY if busy else self.POLL_IDLE)

    def _poll_in(self, seconds: float) -> None:
        assert self._loop is not None
        self._end_polling()
        self._polling = self._loop.call_later(seconds, self._poll)
        self._polling_busy = seconds == self.POLL_BUSY

    def _end_polling(self) -> None:
        if self._polling is not None:
            self._polling.cancel()
            self._polling = None

    def _take_reports(self) -> list[_Report]:
        """The reports served so far, on whichever thread (see :meth:`_on_delivery`)."""
        with self._reports_lock:
            reports, self._reports = self._reports, []
        return reports

    def _serve(self, producer: confluent_kafka.Producer) -> None:
        try:
            producer.poll(0)
        except confluent_kafka.KafkaException as exc:  # an error callback raised: carry on
            self._on_error(exc.args[0])
        reports = self._take_reports()
        if reports:
            self._settle(reports)

    def _expire_due(self, now: float, why: str = "") -> None:
        """Fail the bounded sends whose time ran out by ``now`` with no report."""
        for within, queue in self._due.items():
            while queue and queue[0][0] <= now:
                _expire(queue.popleft()[1], why or f"no acknowledgement within {within:g}s")

    def _settle(self, reports: list[_Report]) -> None:
        if any(err is None for _, err in reports):
            self._waiting_since = None
        _settle_all(reports)

    def _watch(self, stopping: threading.Event) -> None:
        """The watchdog thread, until ``stopping`` (its start's, so that a start() while
        the previous stop() still flushes keeps its own): a producer with a fatal error, or
        wedged, is replaced (by the loop, which alone produces: no send can reach an
        instance after its purge)."""
        while not stopping.is_set():
            self._wake.wait(self.WATCH_EVERY)
            self._wake.clear()
            producer, loop = self._producer, self._loop
            if producer is None or loop is None or stopping.is_set():
                return
            try:
                if self._fatal.is_set() or self._wedged(producer):
                    self._fatal.clear()
                    loop.call_soon_threadsafe(self._replace, producer)
            except Exception:  # e.g. the loop closed meanwhile; this thread must not die
                log.exception("producer watchdog")

    def _wedged(self, producer: confluent_kafka.Producer) -> bool:
        now = time.monotonic()
        since = self._waiting_since
        if since is None or now - since < self._stuck_after or now < self._next_check:
            return False
        self._next_check = now + self._stuck_after
        try:
            producer.list_topics(timeout=1.0)
        except confluent_kafka.KafkaException:
            return False  # the broker is away: a new producer would not help
        log.warning("producer made no progress for %.0fs while the broker answers", now - since)
        return True

    def _replace(self, broken: confluent_kafka.Producer) -> None:
        """On the loop: a fatal error (e.g. a broker that lost the idempotent producer's
        state) is final for that instance: carry on with a new one, and fail what the old
        one still holds (off the loop). Nothing to do if it was stopped or replaced since."""
        if self._producer is not broken or self._loop is None:
            return
        log.warning("replacing the producer")
        self._producer = confluent_kafka.Producer(self._config)
        self._waiting_since = None
        self._loop.run_in_executor(None, self._drain, broken)

    def _drain(self, broken: confluent_kafka.Producer) -> None:
        """Fail every message ``broken`` holds: purged, then flushed, which serves each
        one's delivery report (as a failure) on this thread, handed over to the loop."""
        try:
            broken.purge()
            left = broken.flush(5.0)
        except Exception:  # in an executor nobody awaits: say so here
            log.exception("draining a replaced producer")
        else:
            if left:
                log.warning("a replaced producer kept %d messages without a report", left)
        finally:  # what was served still reaches the loop
            self._hand_over_reports()

    def _on_delivery(
        self, waiter: _Waiter, err: confluent_kafka.KafkaError | None, _msg: object
    ) -> None:
        """A delivery report, on whichever thread polls (the loop's, or one flushing a
        replaced or stopped producer): kept until that poll returns."""
        with self._reports_lock:
            self._reports.append((waiter, err))

    def _hand_over_reports(self) -> None:
        """Reports served off the loop (by a flush), settled on the loop."""
        reports = self._take_reports()
        loop = self._loop
        if reports and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._settle, reports)

    def send(
        self, topic: str, value: bytes, *, key: bytes | None = None, headers: Headers | None = None
    ) -> asyncio.Future[None]:
        """Queue one message. The future resolves once the broker has acknowledged it, or
        fails with :class:`KafkaError` (:class:`ProducerBusy` when the local queue is full)."""
        future: asyncio.Future[None] = self._started().create_future()
        self._queue((topic, value, key, headers, future))
        return future

    def _started(self) -> asyncio.AbstractEventLoop:
        if self._producer is None or self._loop is None:
            raise KafkaUnavailable("producer is not started")
        return self._loop

    def _queue(self, outgoing: _Outgoing) -> None:
        """Hand a message to librdkafka at the end of this loop iteration; its waiter is
        settled by its delivery report (:func:`settle`)."""
        if not self._outbox:
            self._started().call_soon(self._produce_outbox)
        self._outbox.append(outgoing)

    def send_within(
        self,
        within: float,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Headers | None = None,
    ) -> asyncio.Future[None]:
        """:meth:`send`, and fail the future with :class:`KafkaUnavailable` if no report came
        within ``within`` seconds (looked at by each poll: at most :attr:`POLL_IDLE` late).

        No timer per send, nor per loop iteration: under uvloop every timer is a libuv handle
        made and closed again (6 % of the receiver's time with an ``asyncio.timeout`` per
        request). With one duration, deadlines fall due in the order they were set, so the
        sends of an iteration wait together in a queue the poll looks at."""
        future = self.send(topic, value, key=key, headers=headers)
        self._deadlines.setdefault(within, []).append(future)
        return future

    def _produce_outbox(self) -> None:
        """Hand this loop iteration's sends to librdkafka; start their deadlines."""
        outbox, self._outbox = self._outbox, []
        deadlines, self._deadlines = self._deadlines, {}
        if deadlines and self._loop is not None:
            now = self._loop.time()
            for within, futures in deadlines.items():
                self._due.setdefault(within, deque()).append((now + within, futures))
        if not outbox:  # stop() handed it over already
            return
        producer = self._producer
        assert producer is not None, "stop() hands the outbox over before dropping the producer"
        if self._waiting_since is None:
            self._waiting_since = time.monotonic()
        for topic, value, key, headers, waiter in outbox:
            try:
                producer.produce(
                    topic,
                    value,
                    key,
                    headers=list(headers) if headers else None,
                    on_delivery=functools.partial(self._on_delivery, waiter),
                )
            except BufferError:
                settle(waiter, ProducerBusy("produce queue is full"))
            except confluent_kafka.KafkaException as exc:
                self._on_error(exc.args[0])
                settle(waiter, classify(exc.args[0]))
            except (TypeError, ValueError) as exc:  # e.g. a header librdkafka cannot take
                settle(waiter, KafkaRecordError(f"cannot produce: {exc}"))
        if not self._polling_busy:  # reports are due now: poll for them at the busy pace
            self._poll_in(self.POLL_BUSY)
        self._serve(producer)

    async def send_all(self, messages: Iterable[tuple[str, bytes, bytes | None, Headers]]) -> None:
        """Send many messages and wait until every one is acknowledged.

        On any failure, raise the gravest kind among the failures: a message refused for good
        (:class:`KafkaRecordError`) over a stage problem over an outage, so that the batch
        loop isolates a bad message instead of retrying it forever."""
        outgoing = list(messages)
        if not outgoing:
            return
        batch = _Batch(self._started().create_future())
        batch.waiting = count = len(outgoing)
        for t, v, k, h in outgoing:
            self._queue((t, v, k, h, batch))
        # Every report comes within the message timeout; the margin guards against a lost one.
        await asyncio.wait((batch.done,), timeout=self._timeout + 10)
        failures, pending = batch.failures, batch.waiting
        if not failures and not pending:
            return
        lost = f"{len(failures) + pending} of {count} messages not delivered"
        for kind in (KafkaRecordError, KafkaStageError):
            first = next((e for e in failures if isinstance(e, kind)), None)
            if first is not None:
                raise kind(f"{lost}: {first}")
        raise KafkaUnavailable(f"{lost}: {failures[0] if failures else 'no report in time'}")

    def ping(self, timeout: float) -> None:
        """Raise :class:`KafkaError` unless the cluster answers a metadata request (blocking)."""
        if self._producer is None:
            raise KafkaUnavailable("producer is not started")
        try:
            self._producer.list_topics(timeout=timeout)
        except confluent_kafka.KafkaException as exc:
            raise KafkaUnavailable(f"broker unreachable: {exc}") from exc

    async def stop(self, flush_seconds: float = 10.0) -> None:
        if self._producer is None:
            return
        if self._outbox:  # sends of the current loop iteration
            self._produce_outbox()
        producer, self._producer = self._producer, None
        watchdog, stopping = self._watchdog, self._stopping
        try:  # the polls go on meanwhile, failing the bounded sends as they fall due
            remaining = await asyncio.to_thread(producer.flush, flush_seconds)
            if remaining:
                log.warning("producer stopped with %d undelivered messages", remaining)
        finally:  # also when stop() is cancelled: nothing reports on the rest any more
            stopping.set()
            self._wake.set()
            self._settle(self._take_reports())  # served by the flush
            if self._producer is None:  # not started again meanwhile
                self._end_polling()
                self._expire_due(math.inf, "the producer stopped before the broker acknowledged")
        if watchdog is not None:
            await asyncio.to_thread(watchdog.join)


class _Batch:
    """The delivery reports of one :meth:`Producer.send_all`, settled on the event loop: one
    future for the whole batch (a future per message, each waited on, cost the router a
    loop callback per message), done when no message waits for its report any more."""

    __slots__ = ("done", "failures", "waiting")

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.done = done
        self.waiting = 0
        self.failures: list[KafkaError] = []

    def settle(self, error: KafkaError | None) -> None:
        if error is not None:
            self.failures.append(error)
        self.waiting -= 1
        if self.waiting <= 0 and not self.done.done():
            self.done.set_result(None)


#: What waits for a message's report: its own future (:meth:`Producer.send`) or its batch.
_Waiter: TypeAlias = "asyncio.Future[None] | _Batch"
_Outgoing = tuple[str, bytes, bytes | None, Headers | None, _Waiter]
_Report = tuple[_Waiter, confluent_kafka.KafkaError | None]


def settle(waiter: _Waiter, error: KafkaError | None) -> None:
    """A message's report: acknowledged (no ``error``) or failed. Also for a message
    librdkafka would not queue (it gets no report)."""
    if isinstance(waiter, _Batch):
        waiter.settle(error)
    elif waiter.done():
        return
    elif error is None:
        waiter.set_result(None)
    else:
        waiter.set_exception(error)


#: Bounded sends of one loop iteration: when their time runs out, and their futures.
_Due = tuple[float, list[asyncio.Future[None]]]


def _expire(futures: list[asyncio.Future[None]], why: str) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(KafkaUnavailable(why))


def _settle_all(reports: list[_Report]) -> None:
    for waiter, err in reports:
        settle(waiter, None if err is None else classify(err))


RevokeHandler = Callable[[list[TopicPartition]], None]


@dataclass(frozen=True, slots=True)
class Rebalance:
    """A member's assignment after a change, and how many partitions each of its topics
    has (from the metadata at that moment; empty when the broker did not answer)."""

    assignment: frozenset[TopicPartition]
    partitions: Mapping[str, int]


#: Told of each change of a member's assignment (on the consumer's thread).
RebalanceHandler = Callable[[Rebalance], None]


class Consumer:
    """A consumer-group member that reads batches and commits explicit offsets."""

    def __init__(
        self,
        settings: Connects,
        *,
        group_id: str,
        topics: Sequence[str],
        client_id: str,
        on_revoke: RevokeHandler | None = None,
        fetch_wait_ms: int | None = None,
    ) -> None:
        """``settings`` may be a bare connection; the group-liveness timeouts are then the
        defaults of :class:`~notifsvc.config.Settings`. ``fetch_wait_ms`` overrides
        ``NOTIFSVC_KAFKA_FETCH_WAIT_MS`` for a consumer that never needs its records sooner
        (one idle fetch per that many milliseconds, per broker)."""
        liveness = settings if isinstance(settings, Settings) else Settings()
        session_ms = liveness.kafka_session_timeout_ms
        max_poll_ms = liveness.kafka_max_poll_interval_ms
        self._config = _common(settings, client_id) | {
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": session_ms,
            "heartbeat.interval.ms": max(100, session_ms // 5),
            "max.poll.interval.ms": max_poll_ms,
            # Kafka answers a fetch as soon as data arrives; brokers without real long polling
            # (Tansu) hold it this long anyway, so the dev infrastructure asks for 50 ms.
            "fetch.wait.max.ms": fetch_wait_ms or liveness.kafka_fetch_wait_ms,
        }
        self._topics = list(topics)
        self.group_id = group_id
        self._on_revoke = on_revoke
        self._consumer: confluent_kafka.Consumer | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"kafka-{client_id}")
        self.assignment: set[TopicPartition] = set()
        #: Called on the consumer's thread after every assignment, revocation or loss,
        #: with a copy of the assignment (``assignment`` changes on that thread).
        self.on_rebalance: RebalanceHandler | None = None
        self._rebalanced = False  # set in librdkafka's callbacks, told after the poll
        self._counts: dict[str, int] = {}  # partitions per topic, as last read
        # Bumped each time a partition is assigned: records read under an earlier assignment
        # (e.g. from the log of a broker that has since lost it) are never committed.
        self._epochs: dict[TopicPartition, int] = {}
        self._paused = False

    @property
    def fetch_wait_ms(self) -> int:
        """The longest the broker holds an idle fetch of this consumer."""
        return int(self._config["fetch.wait.max.ms"])

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def start(self) -> None:
        if self._consumer is None:
            await self._call(self._open)

    def _open(self) -> None:
        consumer = confluent_kafka.Consumer(self._config)
        consumer.subscribe(
            self._topics, on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked
        )
        self._consumer = consumer

    def _assigned(
        self, consumer: confluent_kafka.Consumer, partitions: list[confluent_kafka.TopicPartition]
    ) -> None:
        added = {(p.topic, p.partition) for p in partitions}
        self.assignment |= added
        for tp in added:
            self._epochs[tp] = self._epochs.get(tp, 0) + 1
        # librdkafka keeps a partition's pause flag through revocation and reassignment (the
        # Java client does not): set it explicitly, so that a member paused now stays paused
        # and a partition paused before it was lost does not come back paused for good.
        _set_pause(consumer, partitions, paused=self._paused)
        log.info(ASSIGNED_LOG, sorted(added))
        self._rebalanced = True

    def _revoked(
        self, consumer: confluent_kafka.Consumer, partitions: list[confluent_kafka.TopicPartition]
    ) -> None:
        gone = [(p.topic, p.partition) for p in partitions]
        self.assignment -= set(gone)
        _set_pause(consumer, partitions, paused=False)  # a pause never outlives ownership
        log.info(REVOKED_LOG, sorted(gone))
        if self._on_revoke is not None:
            self._on_revoke(gone)
        self._rebalanced = True

    def _tell_rebalance(self, consumer: confluent_kafka.Consumer | None) -> None:
        """Tell :attr:`on_rebalance` of the assignment changed by the last poll. Called
        after ``consume`` returned, never from librdkafka's rebalance callback: a metadata
        request from inside that callback aborts the process (confluent-kafka's
        ``CallState_get`` assertion, seen under a rebalance in the chaos run). Without a
        ``consumer`` (it was closed), the counts last read are told."""
        self._rebalanced = False
        if self.on_rebalance is None:
            return
        try:  # a topic that grew rebalances the group: its new count is read now
            if consumer is not None:
                self._counts = _partition_counts(consumer, self._topics, timeout=2.0)
        except KafkaError as exc:
            log.warning("partition counts unknown after a rebalance: %s", exc)
            self._counts = {}
        counts = dict(self._counts)
        try:
            self.on_rebalance(Rebalance(frozenset(self.assignment), counts))
        except Exception:  # never raise from a rebalance callback
            log.exception("rebalance handler failed")

    async def partition_counts(self) -> dict[str, int]:
        """How many partitions each subscribed topic has (from the cluster's metadata);
        :class:`KafkaError` when the broker does not answer."""
        return await self._call(self._partition_counts)

    def _partition_counts(self) -> dict[str, int]:
        assert self._consumer is not None, "consumer is not started"
        return _partition_counts(self._consumer, self._topics, timeout=5.0)

    async def consume(self, max_messages: int, wait: float, *, idle: float = 0.0) -> list[Record]:
        """Up to ``max_messages`` records, returning when full or after ``wait`` seconds.

        With ``idle``, first waits up to that long for one record (returning nothing if none
        came), so that an idle consumer polls seldom while the first record still returns
        at once."""
        return await self._call(self._consume, max_messages, wait, idle)

    def _consume(self, max_messages: int, timeout: float, idle: float = 0.0) -> list[Record]:
        assert self._consumer is not None, "consumer is not started"
        got = self._consumer.consume(1, idle) if idle > 0 else []
        if (got or idle <= 0) and len(got) < max_messages:
            got += self._consumer.consume(max_messages - len(got), timeout)
        records = []
        for msg in got:
            err = msg.error()
            if err is not None:
                level = logging.ERROR if err.fatal() else logging.WARNING
                log.log(level, "consumer error: %s", err.str())
                continue
            records.append(_record(msg, self._epochs))
        if self._rebalanced:
            self._tell_rebalance(self._consumer)
        return records

    def owns(self, record: Record) -> bool:
        """Whether ``record`` was read under this member's current ownership of its partition.

        False once the partition was revoked or lost, even if it has been assigned again
        since: the log may have changed meanwhile (a broker that lost its data), and the
        offsets read before are then no offsets of the log read now.
        """
        tp = (record.topic, record.partition)
        return tp in self.assignment and self._epochs.get(tp) == record.epoch

    def owned(self, records: list[Record]) -> list[Record]:
        """Those of ``records`` that this member :meth:`owns`, asked once per run of records
        of one partition and epoch (a batch holds long runs; asking per record took a
        tuple, a set and a dict look-up each)."""
        out: list[Record] = []
        topic, partition, epoch, owns = "", -1, -1, False
        for r in records:
            if r.partition != partition or r.epoch != epoch or r.topic != topic:
                topic, partition, epoch = r.topic, r.partition, r.epoch
                owns = self.owns(r)
            if owns:
                out.append(r)
        return out

    async def lag(self) -> dict[TopicPartition, int]:
        """Messages between this member's position and the end, per assigned partition."""
        return await self._call(self._lag)

    def _lag(self) -> dict[TopicPartition, int]:
        assert self._consumer is not None, "consumer is not started"
        tps = [confluent_kafka.TopicPartition(t, p) for t, p in self.assignment]
        out: dict[TopicPartition, int] = {}
        for tp in self._consumer.position(tps) if tps else ():
            _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0 and tp.offset >= 0:
                out[(tp.topic, tp.partition)] = max(0, high - tp.offset)
        return out

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> bool:
        """Commit ``offsets`` (the next offset to read, per partition); False if refused."""
        if not offsets:
            return True
        return await self._call(self._commit, dict(offsets))

    def _commit(self, offsets: dict[TopicPartition, int]) -> bool:
        assert self._consumer is not None, "consumer is not started"
        tps = [confluent_kafka.TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            self._consumer.commit(offsets=tps, asynchronous=False)
        except confluent_kafka.KafkaException as exc:
            log.warning("offset commit refused (will be redelivered): %s", exc)
            return False
        return True

    async def pause(self) -> None:
        await self._call(self._set_paused, True)

    async def resume(self) -> None:
        await self._call(self._set_paused, False)

    def _set_paused(self, paused: bool) -> None:
        assert self._consumer is not None, "consumer is not started"
        self._paused = paused
        tps = [confluent_kafka.TopicPartition(t, p) for t, p in self.assignment]
        if tps:
            (self._consumer.pause if paused else self._consumer.resume)(tps)

    async def stop(self) -> None:
        """Leave the group (without committing anything more) and release the thread."""
        if self._consumer is not None:
            await self._call(self._close)
        self._thread.shutdown(wait=True)

    def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.close()
        if self._rebalanced:  # closing revoked the assignment
            self._tell_rebalance(None)


def _partition_counts(
    consumer: confluent_kafka.Consumer, topics: Iterable[str], *, timeout: float
) -> dict[str, int]:
    out: dict[str, int] = {}
    for topic in topics:
        try:
            meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        except confluent_kafka.KafkaException as exc:
            raise classify(exc.args[0]) from exc
        if meta is None or meta.error is not None or not meta.partitions:
            raise KafkaStageError(f"no partitions known for topic {topic}")
        out[topic] = len(meta.partitions)
    return out


def _set_pause(
    consumer: confluent_kafka.Consumer,
    partitions: list[confluent_kafka.TopicPartition],
    *,
    paused: bool,
) -> None:
    if not partitions:
        return
    try:
        (consumer.pause if paused else consumer.resume)(partitions)
    except confluent_kafka.KafkaException as exc:  # never raise from a rebalance callback
        log.warning("cannot %s %s: %s", "pause" if paused else "resume", partitions, exc)


def _record(msg: confluent_kafka.Message, epochs: Mapping[TopicPartition, int]) -> Record:
    ts_type, ts = msg.timestamp()
    topic, partition = msg.topic() or "", msg.partition() or 0
    headers = msg.headers()
    return Record(
        topic,
        partition,
        msg.offset() or 0,
        msg.key(),
        msg.value(),
        tuple((k, v or b"") for k, v in headers) if headers else (),
        ts if ts_type != confluent_kafka.TIMESTAMP_NOT_AVAILABLE else 0,
        epochs.get((topic, partition), 0),
    )


def next_offsets(records: Iterable[Record]) -> dict[TopicPartition, int]:
    """The offsets to commit after ``records``: one past the highest seen per partition."""
    out: dict[TopicPartition, int] = {}
    for r in records:
        key = (r.topic, r.partition)
        out[key] = max(out.get(key, 0), r.offset + 1)
    return out


def wait_ready(bootstrap: str, timeout: float, *, metadata: bool = True) -> None:
    """Block until the cluster answers a metadata request, or raise :class:`KafkaError`.
    With ``metadata=False`` only wait until the port accepts connections (a broker that
    advertises another address, e.g. a TLS terminator's, is checked through that)."""
    if not metadata:
        host, _, port = bootstrap.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=timeout).close()
        except OSError as exc:
            raise KafkaUnavailable(f"broker at {bootstrap} not listening: {exc}") from exc
        return
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": logging.getLogger(__name__)})
    try:
        admin.list_topics(timeout=timeout)
    except confluent_kafka.KafkaException as exc:
        raise KafkaUnavailable(f"broker at {bootstrap} not ready after {timeout}s: {exc}") from exc


def missing_topics(settings: Settings, names: Iterable[str], *, timeout: float = 10.0) -> list[str]:
    """Those of ``names`` the cluster does not have (blocking). :class:`KafkaStageError` when
    the cluster refuses this client (an untrusted certificate, a wrong password: librdkafka
    would retry those silently forever), :class:`KafkaUnavailable` when it does not answer."""
    seen: list[confluent_kafka.KafkaError] = []
    admin = _admin(settings, "notifsvc-admin", error_cb=seen.append)
    try:
        existing = admin.list_topics(timeout=timeout).topics
    except confluent_kafka.KafkaException as exc:
        admin.poll(0.5)  # serves error_cb: why the connection failed
        refused = [e for e in map(classify, seen) if isinstance(e, KafkaStageError)]
        if refused:
            raise KafkaStageError(f"the Kafka cluster refused this client: {refused[0]}") from exc
        raise KafkaUnavailable(f"broker unreachable: {exc}") from exc
    return sorted(set(names) - set(existing))


def _admin(where: Connects, client_id: str, **callbacks: Any) -> AdminClient:
    """An admin client; a configuration librdkafka refuses (an unreadable CA file, an
    unknown property in NOTIFSVC_KAFKA_EXTRA) is a :class:`KafkaStageError`."""
    try:
        return AdminClient(_common(where, client_id) | callbacks)
    except confluent_kafka.KafkaException as exc:
        raise KafkaStageError(f"invalid Kafka client configuration: {exc.args[0]}") from exc


def create_topics(settings: Settings, names: Iterable[str], *, timeout: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet; return the ones created (blocking)."""
    admin = _admin(settings, "notifsvc-admin")
    specs = [
        NewTopic(
            n,
            num_partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication,
        )
        for n in names
    ]
    created = []
    for name, future in admin.create_topics(specs, request_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except confluent_kafka.KafkaException as exc:
            err = exc.args[0]
            exists = isinstance(err, confluent_kafka.KafkaError) and (
                err.code() == confluent_kafka.KafkaError.TOPIC_ALREADY_EXISTS
            )
            if not exists:
                raise KafkaStageError(f"cannot create topic {name}: {exc}") from exc
    return created


@dataclass(frozen=True, slots=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  # None: the group has committed nothing here
    end: int

    @property
    def lag(self) -> int:
        return self.end - (self.committed or 0)


def _ends(admin: AdminClient, topic: str, timeout: float) -> dict[int, tuple[int, int]]:
    """(earliest, latest) offset per partition of ``topic``."""
    meta = admin.list_topics(topic, timeout=timeout).topics.get(topic)
    if meta is None or meta.error is not None:
        return {}
    tps = [confluent_kafka.TopicPartition(topic, p) for p in meta.partitions]
    out: dict[int, tuple[int, int]] = {}
    for spec, slot in ((OffsetSpec.earliest(), 0), (OffsetSpec.latest(), 1)):
        for tp, future in admin.list_offsets(
            {tp: spec for tp in tps}, isolation_level=confluent_kafka.IsolationLevel.READ_COMMITTED
        ).items():
            low_high = out.setdefault(tp.partition, (0, 0))
            answer: Any = future.result(timeout=timeout)  # the stubs lack .offset
            value = int(answer.offset)
            out[tp.partition] = (value, low_high[1]) if slot == 0 else (low_high[0], value)
    return out


def group_lag(
    settings: Settings, group: str, topic: str, *, timeout: float = 5.0
) -> list[PartitionLag]:
    """Committed offset and end of each partition of ``topic`` for consumer group ``group``."""
    admin = _admin(settings, "notifsvc-status")
    ends = _ends(admin, topic, timeout)
    request = ConsumerGroupTopicPartitions(
        group, [confluent_kafka.TopicPartition(topic, p) for p in ends]
    )
    committed: dict[int, int | None] = {}
    for future in admin.list_consumer_group_offsets([request]).values():
        for tp in future.result(timeout=timeout).topic_partitions or ():
            committed[tp.partition] = tp.offset if tp.offset >= 0 else None
    return [PartitionLag(topic, p, committed.get(p), end) for p, (_, end) in sorted(ends.items())]


def topic_size(settings: Settings, topic: str, *, timeout: float = 5.0) -> int:
    """Messages currently held by ``topic`` (sum over partitions of latest - earliest)."""
    admin = _admin(settings, "notifsvc-status")
    return sum(high - low for low, high in _ends(admin, topic, timeout).values())
