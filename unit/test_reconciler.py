"""The reconciler's pass: paging, pacing, ownership, what it sends and records, failures."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from notifsvc import config, deadletter, headers, kafka, reconciler, topics
from notifsvc.attempts import Attempt
from notifsvc.config import Secret, Settings
from notifsvc.db.store import Outcome, Replayed, StalledRow, Store, StoreUnavailable
from notifsvc.duty import START, slice_of
from notifsvc.kafka import Headers, KafkaError, KafkaRecordError, KafkaUnavailable, Producer
from notifsvc.model import State, parse
from notifsvc.reconciler import EXPIRED, Reconciler
from notifsvc.router import Router

SETTINGS = Settings(
    kafka_bootstrap="127.0.0.1:1",
    database_url=Secret("postgresql://x/y"),
    redrive_rate=3.0,  # pages of 3
)
NOW = 1_800_000_000.0


def stalled(
    state: State = State.FORWARDED, *, attempts: int = 0, priority: str = "normal", minute: int = 0
) -> StalledRow:
    body = {"uuid": str(uuid.uuid4()), "destination": "log", "to": "ops", "txt": "hi"}
    n = msgspec.structs.replace(parse(body | {"priority": priority}), accepted_at=NOW - 600)
    received = datetime(2027, 1, 1, tzinfo=UTC) + timedelta(minutes=minute)
    return StalledRow(n, state, attempts, 1, received + timedelta(seconds=30), received)


class FakeStore(Store):
    def __init__(self, pages: Sequence[list[StalledRow]], events: list[str]) -> None:
        super().__init__("postgresql://x/y")
        self.pages = list(pages)
        self.events = events
        self.claims: list[dict[str, object]] = []
        self.forwarded: list[uuid.UUID] = []
        self.recorded: list[Outcome] = []
        self.on_claim: Callable[[], None] = lambda: None

    async def claim_stalled(
        self,
        *,
        stalled_for: timedelta,
        after: tuple[datetime, uuid.UUID],
        slices: int,
        owned: Sequence[int],
        limit: int,
    ) -> list[StalledRow]:
        self.events.append("claim")
        self.claims.append({"after": after, "slices": slices, "owned": list(owned), "limit": limit})
        self.on_claim()
        return self.pages.pop(0) if self.pages else []

    async def mark_forwarded(self, uuids: Sequence[uuid.UUID]) -> None:
        self.forwarded += uuids

    async def record(
        self, outcomes: Sequence[Outcome], *, attempts: Sequence[Attempt] = ()
    ) -> None:
        self.recorded += outcomes


class FakeProducer(Producer):
    """Acknowledges every message at once, except those of the UUIDs in ``fail``."""

    def __init__(self, fail: dict[uuid.UUID, KafkaError] | None = None) -> None:
        super().__init__(SETTINGS, client_id="fake")
        self.fail = fail or {}
        self.sent: list[tuple[str, bytes, bytes | None, Headers | None]] = []

    def _started(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def _queue(self, outgoing: kafka._Outgoing) -> None:
        topic, value, key, headers, waiter = outgoing
        error = self.fail.get(uuid.UUID((key or b"").decode()))
        if error is None:
            self.sent.append((topic, value, key, headers))
        kafka.settle(waiter, error)


class RecordingLimiter:
    def __init__(self, events: list[str]) -> None:
        self.events = events

    async def acquire(self, amount: float = 1) -> None:
        self.events.append(f"acquire {amount:g}")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def build(
    pages: Sequence[list[StalledRow]],
    *,
    owns: Callable[[int], bool] = lambda n: True,
    fail: dict[uuid.UUID, KafkaError] | None = None,
    clock: Clock | None = None,
    monotonic: Clock | None = None,
    settings: Settings = SETTINGS,
) -> tuple[Reconciler, FakeStore, FakeProducer, list[str]]:
    events: list[str] = []
    store, producer = FakeStore(pages, events), FakeProducer(fail)

    async def four() -> int:
        return 4

    one = Reconciler(
        settings,
        store,
        producer,
        owns=owns,
        slices=four,
        clock=clock or Clock(NOW),
        monotonic=monotonic or Clock(0.0),
        limiter=RecordingLimiter(events),
    )
    return one, store, producer, events


def test_settings_have_defaults_far_above_normal_latency_and_are_read_by_name() -> None:
    defaults = config.load({})
    assert defaults.redrive_after_seconds == 300  # 2.5x the longest retry-lane delay
    assert (defaults.redrive_period_seconds, defaults.redrive_rate) == (30, 200.0)
    assert defaults.redrive_expire_seconds == 86_400
    loaded = config.load(
        {
            "NOTIFSVC_REDRIVE_AFTER_SECONDS": "600",
            "NOTIFSVC_REDRIVE_PERIOD_SECONDS": "10",
            "NOTIFSVC_REDRIVE_RATE": "0.5",
            "NOTIFSVC_REDRIVE_EXPIRE_SECONDS": "3600",
        }
    )
    assert (loaded.redrive_after_seconds, loaded.redrive_period_seconds) == (600, 10)
    assert (loaded.redrive_rate, loaded.redrive_expire_seconds) == (0.5, 3600)


@pytest.mark.parametrize(
    "make",
    [
        lambda i: uuid.uuid4(),
        lambda i: uuid.UUID(int=(0x0190_0000_0000 << 80) | uuid.uuid4().int >> 48),  # v7-like
        lambda i: uuid.UUID(int=(i << 64) | 0x8000_0A0B_0C0D_0E0F),  # v1-like: one node
    ],
    ids=["random", "time-prefixed", "node-suffixed"],
)
def test_slices_are_balanced_whatever_the_uuid_version(make: Callable[[int], uuid.UUID]) -> None:
    counts = Counter(slice_of(make(i), 8) for i in range(8000))
    assert set(counts) == set(range(8))
    assert all(800 <= n <= 1200 for n in counts.values()), counts


async def test_a_pass_pages_by_keyset_paying_for_each_page_before_claiming_it() -> None:
    full = [stalled(minute=m) for m in range(3)]
    short = [stalled(minute=5)]
    one, store, producer, events = build([full, short])
    assert await one.run_pass() == 4
    assert events == ["acquire 3", "claim", "acquire 3", "claim"]  # stops after a short page
    assert [c["after"] for c in store.claims] == [START, full[-1].cursor]
    assert all(c["limit"] == 3 for c in store.claims)
    assert len(producer.sent) == 4


async def test_a_pass_stopped_by_an_outage_leaves_the_next_one_where_it_was() -> None:
    """The rows of the page that failed were claimed (they wait one more ``REDRIVE_AFTER``),
    and nothing after them was read: the next pass continues after the last page done."""
    done = [stalled(minute=m) for m in range(3)]
    one, store, producer, _ = build([done, [stalled(minute=5)]])
    claims = iter([None, StoreUnavailable("the database is away")])

    def outage() -> None:
        if (failure := next(claims, None)) is not None:
            raise failure

    store.on_claim = outage
    assert await one.run_pass() == 0  # the second page's claim failed: logged, pass over
    assert len(producer.sent) == 3  # the first page was re-driven
    await one.run_pass()
    assert [c["after"] for c in store.claims] == [START, done[-1].cursor, done[-1].cursor]


async def test_only_the_slices_of_owned_partitions_are_claimed() -> None:
    one, store, _, _ = build([[stalled()]], owns=lambda n: n in {1, 3})
    await one.run_pass()
    assert [(c["slices"], c["owned"]) for c in store.claims] == [(4, [1, 3])]
    nobody, store, _, events = build([[stalled()]], owns=lambda n: False)
    assert await nobody.run_pass() == 0
    assert events == []  # a replica owning no partition claims nothing


async def test_a_pass_ends_after_one_period_even_with_more_to_do() -> None:
    monotonic = Clock(0.0)
    pages = [[stalled(), stalled(), stalled()] for _ in range(100)]
    one, store, _, _ = build(pages, monotonic=monotonic)

    def tick() -> None:
        monotonic.now += 10.0

    store.on_claim = tick
    await one.run_pass()
    assert len(store.claims) == 3  # 30 s period, 10 s per page


async def test_the_next_pass_continues_where_one_stopped_and_starts_over_after_the_end() -> None:
    """Rows are read oldest received first: a pass cut short by its period must not hand
    the next one the same oldest rows again, or those after them would never get a turn."""
    monotonic = Clock(0.0)
    pages = [[stalled(minute=3 * p + i) for i in range(3)] for p in range(4)]
    one, store, _, _ = build([*pages, [stalled(minute=20)]], monotonic=monotonic)

    def tick() -> None:
        monotonic.now += 10.0

    store.on_claim = tick
    await one.run_pass()  # three full pages, then the period is over
    await one.run_pass()  # one full page, then a short one: the end
    await one.run_pass()
    afters = [c["after"] for c in store.claims]
    assert afters == [START, *(page[-1].cursor for page in pages), START]


async def test_a_redrive_is_the_routers_forward_with_the_attempts_made_so_far() -> None:
    received = stalled(State.RECEIVED, priority="high")
    retried = stalled(State.FORWARDED, attempts=2)
    one, store, producer, _ = build([[received, retried]])
    await one.run_pass()
    by_key = {key: (topic, value, dict(hdrs or ())) for topic, value, key, hdrs in producer.sent}
    topic, value, hdrs = by_key[received.notification.key]
    assert topic == topics.channel(SETTINGS, "log", "high")
    assert value == received.notification.encode()
    assert headers.ATTEMPTS not in hdrs and hdrs[reconciler.REDRIVEN_HEADER] == b"1"
    assert by_key[retried.notification.key][2][headers.ATTEMPTS] == b"2"
    assert store.forwarded == [received.notification.uuid]  # only a received row moves on
    assert store.recorded == []


async def test_rows_unfinished_past_the_expiry_are_dead_lettered_then_failed() -> None:
    old = stalled()
    clock = Clock(old.notification.accepted_at + SETTINGS.redrive_expire_seconds + 1)
    one, store, producer, _ = build([[old]], clock=clock)
    await one.run_pass()
    [(topic, _, _, hdrs)] = producer.sent
    assert topic == topics.dlq(SETTINGS)
    assert dict(hdrs or ())[deadletter.REASON].startswith(EXPIRED.encode())
    [outcome] = store.recorded
    assert (outcome.uuid, outcome.state) == (old.notification.uuid, State.FAILED)
    assert (outcome.error or "").startswith(EXPIRED)
    assert (one.redriven, one.expired) == (0, 1)


async def test_an_outage_ends_the_pass_and_marks_only_what_the_broker_acknowledged() -> None:
    ok, lost = stalled(State.RECEIVED), stalled(State.RECEIVED)
    pages = [[ok, lost, stalled()], [stalled()]]
    one, store, _, _ = build(pages, fail={lost.notification.uuid: KafkaUnavailable("down")})
    assert await one.run_pass() == 0  # not raised: the router carries on
    assert store.forwarded == [ok.notification.uuid]
    assert len(store.claims) == 1 and one.redriven == 2


async def test_a_message_refused_for_good_does_not_end_the_pass() -> None:
    huge = stalled()
    pages = [[huge, stalled(), stalled()], [stalled()]]
    one, store, _, _ = build(pages, fail={huge.notification.uuid: KafkaRecordError("too large")})
    assert await one.run_pass() == 4  # the refused one ends failed (even undead-lettered)
    assert len(store.claims) == 2
    assert [o.uuid for o in store.recorded] == [huge.notification.uuid]


async def test_a_database_outage_never_escapes_the_pass() -> None:
    one, store, _, _ = build([])

    def down() -> None:
        raise StoreUnavailable("database unavailable")

    store.on_claim = down
    assert await one.run_pass() == 0


async def test_run_stops_without_a_pass_once_stopping_is_set() -> None:
    one, store, _, _ = build([[stalled()]])
    stopping = asyncio.Event()
    stopping.set()
    await one.run(stopping)
    assert store.claims == []


def test_the_router_reconciles_the_slices_of_the_partitions_it_owns() -> None:
    router = Router(SETTINGS)
    router.consumer.assignment = {(topics.outstanding(SETTINGS), 1), ("elsewhere", 2)}
    assert [n for n in range(4) if router.owns_slice(n)] == [1]


async def test_a_row_an_operator_requeued_is_re_driven_as_the_requeue_sent_it() -> None:
    # Accepted long before the expiry limit, requeued a minute ago, then stalled: it goes to
    # its low lane with the requeue's budget start, and is not expired for its old age.
    settings = dataclasses.replace(SETTINGS, redrive_expire_seconds=3600)
    old = dataclasses.replace(stalled(attempts=4), replayed=Replayed(3, NOW - 60))
    old = dataclasses.replace(
        old, notification=msgspec.structs.replace(old.notification, accepted_at=NOW - 86_400)
    )
    fresh = stalled(attempts=1)
    one, store, producer, _ = build([[old, fresh]], clock=Clock(NOW), settings=settings)
    assert await one.run_pass() == 2
    assert store.recorded == []  # neither expired
    sent = {
        uuid.UUID((key or b"").decode()): (topic, dict(h or ()))
        for topic, _, key, h in producer.sent
    }
    topic, hop = sent[old.notification.uuid]
    assert topic == topics.channel(settings, "log", "low")
    assert hop[headers.ATTEMPTS] == b"4" and hop[headers.REPLAYED_FROM] == b"3"
    assert float(hop[headers.REPLAYED_AT]) == NOW - 60
    topic, hop = sent[fresh.notification.uuid]
    assert topic == topics.channel(settings, "log", "normal")
    assert headers.REPLAYED_FROM not in hop and headers.REPLAYED_AT not in hop


async def test_a_requeued_row_expires_counting_from_its_requeue() -> None:
    settings = dataclasses.replace(SETTINGS, redrive_expire_seconds=3600)
    row = dataclasses.replace(stalled(), replayed=Replayed(2, NOW - 7200))
    one, store, _, _ = build([[row]], clock=Clock(NOW), settings=settings)
    assert await one.run_pass() == 1
    assert [o.state for o in store.recorded] == [State.FAILED]
    assert (
        store.recorded[0].error is not None and "after it was requeued" in store.recorded[0].error
    )


class LaneRefusing(FakeProducer):
    """Refuses for good every message of the UUIDs in ``fail`` that carries a value; takes
    value-less dead-letter records."""

    def _queue(self, outgoing: kafka._Outgoing) -> None:
        topic, value, key, headers, waiter = outgoing
        if not value:
            self.sent.append((topic, value, key, headers))
            kafka.settle(waiter, None)
            return
        super()._queue(outgoing)


async def test_a_row_whose_message_the_broker_refuses_for_good_ends_failed_with_the_reason() -> (
    None
):
    """Re-driving it again in 5 minutes would be refused again, for ever: it ends ``failed``
    with the broker's reason, dead-lettered without its value (which is what was refused)."""
    huge, fine = stalled(), stalled()
    one, store, _, _ = build([[huge, fine]])
    producer = LaneRefusing({huge.notification.uuid: KafkaRecordError("message too large")})
    one.producer = producer
    assert await one.run_pass() == 2
    [failed] = store.recorded
    assert failed.uuid == huge.notification.uuid and failed.state is State.FAILED
    assert failed.error is not None and "message too large" in failed.error
    [(_, value, key, hop)] = [m for m in producer.sent if m[0] == topics.dlq(SETTINGS)]
    assert value == b"" and key == huge.notification.key
    assert dict(hop or ())[deadletter.VALUE_DROPPED] == b"1"
    lanes = [m for m in producer.sent if m[0] != topics.dlq(SETTINGS)]
    assert [k for _, _, k, _ in lanes] == [fine.notification.key]
