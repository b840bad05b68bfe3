"""The notificator's next hop and the channel throttle, without a broker (no I/O happens
before start())."""

from __future__ import annotations

import asyncio
import contextlib
import time
import unittest.mock
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from notifsvc import config, deadletter, headers, topics
from notifsvc.attempts import Attempt
from notifsvc.channels.base import PermanentError, TransientError
from notifsvc.channels.log import LogChannel
from notifsvc.config import Secret, Settings
from notifsvc.db.store import Outcome, Replayed, StoreRefused
from notifsvc.deadletter import Message
from notifsvc.delivery import MAX_INLINE_PAUSE, Delivery, Throttle
from notifsvc.kafka import KafkaUnavailable, Rebalance, Record
from notifsvc.model import Notification, State
from notifsvc.notificator import Incoming, Notificator

SETTINGS = Settings(
    kafka_bootstrap="127.0.0.1:9",
    database_url=Secret("postgresql://nowhere/x"),
    topic_prefix="t.",
    retry_delay_ms=10_000,
)


def incoming(passes: int = 0) -> Incoming:
    n = Notification(uuid.uuid4(), "log", "ops", "hi", accepted_at=1.0)
    return Incoming(n, 1, passes, (("traceparent", b"00-abc"),))


def header_of(hdrs: object, name: str) -> bytes | None:
    record = Record("t", 0, 0, None, b"", tuple(hdrs), 0)  # type: ignore[arg-type]
    return record.header(name)


def test_a_postponed_notification_goes_to_the_retry_lane_with_its_pass_counted() -> None:
    notificator = Notificator(SETTINGS, LogChannel(SETTINGS))
    came = incoming(passes=2)
    before = time.time()
    topic, value, key, hdrs = notificator._next_hop(
        Delivery(came.notification, State.FORWARDED, 2, 3, "HTTP 503"), came
    )
    assert topic == topics.channel(SETTINGS, "log", "retry")
    assert Notification.decode(value).uuid == came.notification.uuid and key
    assert header_of(hdrs, headers.ATTEMPTS) == b"3"
    assert header_of(hdrs, headers.PASSES) == b"3"
    due = float(header_of(hdrs, headers.NOT_BEFORE) or 0)
    assert due >= before + 39.99  # 10 s doubled twice (written to the millisecond)
    assert header_of(hdrs, "traceparent") == b"00-abc"


def test_a_failed_notification_goes_to_the_dlq_with_the_reason_and_stage() -> None:
    notificator = Notificator(SETTINGS, LogChannel(SETTINGS))
    came = incoming()
    topic, _, _, hdrs = notificator._next_hop(
        Delivery(came.notification, State.FAILED, 1, 2, "HTTP 400 " + "x" * 5000), came
    )
    assert topic == topics.dlq(SETTINGS)
    reason = header_of(hdrs, deadletter.REASON) or b""
    assert reason.startswith(b"HTTP 400") and len(reason) == deadletter.MAX_REASON_BYTES
    assert header_of(hdrs, deadletter.STAGE) == b"notificator[log]"
    assert header_of(hdrs, headers.ATTEMPTS) == b"2"


def test_the_consumer_groups_are_one_per_lane() -> None:
    notificator = Notificator(SETTINGS, LogChannel(SETTINGS))
    groups = {lane: c.group_id for lane, c in notificator.consumers.items()}
    assert groups == {
        lane: topics.notificator_group(SETTINGS, "log", lane) for lane in topics.LANES
    }
    assert len(set(groups.values())) == len(topics.LANES)


def test_the_throttle_holds_the_longest_pause_asked_capped() -> None:
    now = [100.0]
    throttle = Throttle(clock=lambda: now[0])
    assert throttle.remaining() == 0
    throttle.hold(3)
    throttle.hold(1)  # a shorter pause never shortens one in force
    assert throttle.remaining() == 3
    throttle.hold(10_000)
    assert throttle.remaining() == MAX_INLINE_PAUSE
    now[0] += MAX_INLINE_PAUSE
    assert throttle.remaining() == 0


def test_a_requeued_notification_keeps_its_requeue_through_the_retry_lane() -> None:
    # Without it, a replayed notification postponed once would come back from the retry lane
    # with its old attempts counted again and fail at once.
    notificator = Notificator(SETTINGS, LogChannel(SETTINGS))
    hdrs = (
        (headers.ATTEMPTS, b"5"),
        (headers.REPLAYED_FROM, b"4"),
        (headers.REPLAYED_AT, b"1800000000.5"),
    )
    n = Notification(uuid.uuid4(), "log", "ops", "hi", accepted_at=1.0)
    record = Record("t", 0, 0, n.key, n.encode(), hdrs, 0)
    came = notificator._decode([record])[0][n.uuid]
    assert came.replayed == Replayed(4, 1_800_000_000.5) and came.prior == 5
    _, _, _, hop = notificator._next_hop(Delivery(n, State.FORWARDED, 1, 6, "HTTP 503"), came)
    assert header_of(hop, headers.REPLAYED_FROM) == b"4"
    assert header_of(hop, headers.REPLAYED_AT) == b"1800000000.500"


def test_a_replay_header_alone_is_not_a_requeue() -> None:
    notificator = Notificator(SETTINGS, LogChannel(SETTINGS))
    n = Notification(uuid.uuid4(), "log", "ops", "hi", accepted_at=1.0)
    for hdrs in (((headers.REPLAYED_FROM, b"4"),), ((headers.REPLAYED_AT, b"17"),)):
        record = Record("t", 0, 0, n.key, n.encode(), hdrs, 0)
        assert notificator._decode([record])[0][n.uuid].replayed is None


# A batch through handle(), with a fake store and producer: the fast path (no task per
# notification, for a channel whose send never waits) ends it as the tasks do.


class FakeStore:
    """Claims everything; records outcomes and attempts (refusing the first ``refuse``);
    ``events``: what was written, in order, shared with a :class:`FakeProducer`."""

    def __init__(self, refuse: int = 0, events: list[str] | None = None) -> None:
        self.refuse = refuse
        self.outcomes: list[Outcome] = []
        self.attempts: list[Attempt] = []
        self.events = [] if events is None else events

    async def claim(self, uuids: list[uuid.UUID]) -> set[uuid.UUID]:
        return set()

    async def record(self, outcomes: list[Outcome], *, attempts: Sequence[Attempt] = ()) -> None:
        if self.refuse:
            self.refuse -= 1
            raise StoreRefused("the database is away")
        self.outcomes += outcomes
        self.attempts += attempts
        self.events += [f"{o.state.value} {o.uuid}" for o in outcomes]


class FakeProducer:
    """Sends everything (refusing, as an outage, the first ``refuse`` sends that hold a
    message for ``refused_topic``)."""

    def __init__(
        self, events: list[str] | None = None, refuse: int = 0, refused_topic: str = ""
    ) -> None:
        self.sent: list[Message] = []
        self.events = [] if events is None else events
        self.refuse, self.refused_topic = refuse, refused_topic

    async def send_all(self, messages: list[Message]) -> None:
        if self.refuse and any(topic == self.refused_topic for topic, *_ in messages):
            self.refuse -= 1
            raise KafkaUnavailable("the broker is away")
        self.sent += messages
        self.events += [f"{topic} {key.decode() if key else ''}" for topic, _, key, _ in messages]


class Flaky(LogChannel):
    """The log channel, failing the first send of each notification whose ``to`` is
    ``flaky`` (transiently) or ``broken`` (permanently); ``waits``: its send is a
    coroutine only (the tasks' path)."""

    waits = False

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.sends: list[str] = []
        self._seen: set[uuid.UUID] = set()

    def synchronous_send(self) -> Callable[[Notification], None] | None:
        return None if self.waits else self.answer

    async def send(self, notification: Notification) -> None:
        self.answer(notification)

    def answer(self, notification: Notification) -> None:
        self.sends.append(notification.to)
        first = notification.uuid not in self._seen
        self._seen.add(notification.uuid)
        if first and notification.to == "flaky":
            raise TransientError("flaky: try again")
        if notification.to == "broken":
            raise PermanentError("broken: never")
        if notification.to == "down":
            raise TransientError("down: later")
        self.write(notification)


class Waiting(Flaky):
    waits = True


def batch(tos: list[str]) -> list[Record]:
    now = time.time()
    notes = [
        Notification(uuid.uuid4(), "log", to, "hi", accepted_at=now, expires_at=expiry)
        for to, expiry in ((to, now - 1 if to == "late" else None) for to in tos)
    ]
    return [Record("t", 0, i, n.key, n.encode(), (), int(now * 1000)) for i, n in enumerate(notes)]


def log_settings(tmp_path: Path) -> Settings:
    return config.load(
        {**config.to_env(SETTINGS), "NOTIFSVC_LOG_PATH": str(tmp_path / "log.jsonl")}
    )


async def run_batch(
    channel: Flaky,
    records: list[Record],
    refuse: int = 0,
    *,
    producer: FakeProducer | None = None,
    tries: int | None = None,
) -> tuple[FakeStore, FakeProducer]:
    """``records`` through handle() ``tries`` times (by default once more than the store
    refuses), as a batch retried after each failed write (refused or an outage)."""
    producer = producer or FakeProducer()
    store = FakeStore(refuse, producer.events)  # one list: what was written, in order
    notificator = Notificator(channel.settings, channel, store=store)  # type: ignore[arg-type]
    notificator.producer = producer  # type: ignore[assignment]
    await channel.start()
    try:
        with unittest.mock.patch("notifsvc.delivery.backoff", return_value=0.0):
            for _ in range(refuse + 1 if tries is None else tries):
                with contextlib.suppress(StoreRefused, KafkaUnavailable):
                    await notificator.handle("normal", records)
    finally:
        await channel.stop()
    return store, producer


def ends(store: FakeStore, records: list[Record]) -> list[tuple[object, ...]]:
    """What became of each record, in order: its outcome and its attempts (untimed)."""
    order = {Notification.decode(r.value).uuid: i for i, r in enumerate(records)}
    outcomes = sorted(store.outcomes, key=lambda o: order[o.uuid])
    tried = {
        uid: [(a.number, a.outcome, a.provider, a.error) for a in store.attempts if a.uuid == uid]
        for uid in order
    }
    return [(o.state, o.attempts, o.error, tried[o.uuid]) for o in outcomes]


TOS = ["ops", "flaky", "ops", "broken", "late", "ops", "flaky"]


async def test_a_batch_ends_alike_with_and_without_a_task_per_notification(
    tmp_path: Path,
) -> None:
    settings = log_settings(tmp_path)
    records = batch(TOS)
    fast, fast_producer = await run_batch(Flaky(settings), records)
    slow, slow_producer = await run_batch(Waiting(settings), records)
    assert ends(fast, records) == ends(slow, records)
    assert [state for state, *_ in ends(fast, records)] == [
        State.SENT,
        State.SENT,
        State.SENT,
        State.FAILED,
        State.EXPIRED,
        State.SENT,
        State.SENT,
    ]
    assert len(fast_producer.sent) == len(slow_producer.sent) == 1  # the DLQ's
    lines = (tmp_path / "log.jsonl").read_bytes().splitlines()
    assert len(lines) == 2 * TOS.count("ops") + 2 * TOS.count("flaky")


async def test_a_retried_batch_sends_nothing_again(tmp_path: Path) -> None:
    settings = log_settings(tmp_path)
    records = batch(["ops", "flaky", "ops"])
    channel = Flaky(settings)
    store, _ = await run_batch(channel, records, refuse=1)
    assert channel.sends == ["ops", "flaky", "ops", "flaky"]  # each once, flaky retried
    assert [(state, n) for state, n, *_ in ends(store, records)] == [
        (State.SENT, 1),
        (State.SENT, 2),
        (State.SENT, 1),
    ]
    assert len(store.outcomes) == len(records)


async def test_with_every_send_slot_taken_a_batch_sends_nothing_inline(tmp_path: Path) -> None:
    """The notificator looks at a lane's send slots once per batch: none free, each
    notification waits for one in a task of its own (the policy's fast path is not asked)."""
    settings = log_settings(tmp_path)
    channel = Flaky(settings)
    notificator = Notificator(settings, channel, store=FakeStore(0))  # type: ignore[arg-type]
    taken = asyncio.Semaphore(1)
    await taken.acquire()
    notificator._slots["normal"] = taken
    ready, tasks = notificator._start("normal", [incoming(), incoming()])
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert ready == [] and len(tasks) == 2
    assert channel.sends == []


async def postpone(
    settings: Settings, producer: FakeProducer, tries: int = 1
) -> tuple[str, FakeStore]:
    """A notification whose sends all fail transiently through handle() (``tries`` times,
    a retried batch after each outage); its UUID, and the store it was recorded in."""
    records = batch(["down"])
    store, _ = await run_batch(Flaky(settings), records, producer=producer, tries=tries)
    return str(Notification.decode(records[0].value).uuid), store


async def test_a_postponement_is_recorded_before_its_retry_is_produced(tmp_path: Path) -> None:
    """Else the retry could be claimed and finished first, and the postponement then written
    over its outcome (a failed row back to forwarded), or let a cancel succeed mid-send."""
    settings = log_settings(tmp_path)
    producer = FakeProducer()
    uid, _ = await postpone(settings, producer)
    events = producer.events
    retry = topics.channel(settings, "log", "retry")
    written = [f"forwarded {uid}", f"{retry} {uid}"]
    assert [e for e in events if e in written] == written


async def test_a_retry_that_could_not_go_goes_with_the_retried_batch_recorded_once(
    tmp_path: Path,
) -> None:
    settings = log_settings(tmp_path)
    retry = topics.channel(settings, "log", "retry")
    producer = FakeProducer(refuse=1, refused_topic=retry)
    uid, store = await postpone(settings, producer, tries=2)
    assert [(str(o.uuid), o.state) for o in store.outcomes] == [(uid, State.FORWARDED)]
    assert [key.decode() for topic, _, key, _ in producer.sent if topic == retry and key] == [uid]


# A rebalance while a batch is under way: the sends of partitions this replica lost are
# left to their new owner, which reads them again and claims their rows.


class Gated(Waiting):
    """A send that waits until ``gate`` opens (after saying it began)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.gate = asyncio.Event()

    async def send(self, notification: Notification) -> None:
        self.sends.append(notification.to)
        await self.gate.wait()
        self.write(notification)


class ClaimingStore(FakeStore):
    def __init__(self) -> None:
        super().__init__()
        self.claimed: list[uuid.UUID] = []

    async def claim(self, uuids: list[uuid.UUID]) -> set[uuid.UUID]:
        self.claimed += uuids
        return set()


def owning(notificator: Notificator, lane: str, owned: set[int]) -> None:
    """The lane's consumer owns the partitions in ``owned`` (changed by the test)."""
    consumer = notificator.consumers[lane]
    consumer.owns = lambda record: record.partition in owned  # type: ignore[method-assign]


async def test_the_sends_of_a_revoked_partition_are_left_to_its_new_owner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One send slot: the first notification is being sent, the other two wait for the
    slot. The partition is revoked: none of them is sent or recorded here any more (before,
    all three were sent by this replica while the new owner sent them too)."""
    monkeypatch.setattr("notifsvc.notificator.FLUSH_EVERY", 0.01)
    settings = config.load(
        {**config.to_env(log_settings(tmp_path)), "NOTIFSVC_SEND_CONCURRENCY": "1"}
    )
    channel = Gated(settings)
    store = ClaimingStore()
    notificator = Notificator(settings, channel, store=store)  # type: ignore[arg-type]
    notificator.producer = FakeProducer()  # type: ignore[assignment]
    owned = {0}
    owning(notificator, "normal", owned)
    await channel.start()
    try:
        handling = asyncio.ensure_future(notificator.handle("normal", batch(["a", "b", "c"])))
        await until(lambda: channel.sends == ["a"])
        owned.clear()  # revoked
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(handling), timeout=5.0)
        channel.gate.set()
        await handling
    finally:
        await channel.stop()
    assert channel.sends == ["a"]
    assert store.outcomes == []
    assert len(store.claimed) == 3


async def test_the_retry_lane_claims_nothing_of_a_partition_revoked_during_its_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = log_settings(tmp_path)
    channel = Flaky(settings)
    store = ClaimingStore()
    notificator = Notificator(settings, channel, store=store)  # type: ignore[arg-type]
    notificator.producer = FakeProducer()  # type: ignore[assignment]
    owned = {0, 1}
    owning(notificator, "retry", owned)
    records = batch(["a", "b"])
    records[1] = records[1]._replace(partition=1)

    async def revoke_while_waiting(_wait: float, _stopping: asyncio.Event) -> None:
        owned.discard(1)

    monkeypatch.setattr("notifsvc.batching.wait_until_due", revoke_while_waiting)
    await channel.start()
    try:
        await notificator.handle("retry", records)
    finally:
        await channel.stop()
    assert store.claimed == [Notification.decode(records[0].value).uuid]
    assert channel.sends == ["a"]


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


async def test_after_a_revocation_a_notification_coming_back_is_sent_again(
    tmp_path: Path,
) -> None:
    """A batch fails (its outcome could not be written) and its partition is revoked
    before the retry: the retry never comes here, and what was kept for it must not answer
    for the same notification when it comes back to this lane later (before, the kept
    delivery was returned: nothing sent, and a row once written stayed `sending`)."""
    settings = log_settings(tmp_path)
    channel = Flaky(settings)
    store = FakeStore(refuse=1)
    notificator = Notificator(settings, channel, store=store)  # type: ignore[arg-type]
    notificator.producer = FakeProducer()  # type: ignore[assignment]
    records = batch(["ops"])
    partition = frozenset({(records[0].topic, records[0].partition)})
    notificator._rebalanced("normal", Rebalance(partition, {}))
    await channel.start()
    try:
        with contextlib.suppress(StoreRefused):
            await notificator.handle("normal", records)
        assert channel.sends == ["ops"] and notificator._done["normal"]
        notificator._rebalanced("normal", Rebalance(frozenset(), {}))  # revoked
        assert not notificator._done["normal"] and not notificator._recorded["normal"]
        notificator._rebalanced("normal", Rebalance(partition, {}))  # back, later
        await notificator.handle("normal", records)
    finally:
        await channel.stop()
    assert channel.sends == ["ops", "ops"]
    assert [o.state for o in store.outcomes] == [State.SENT]
