"""The batch loop's policy without a broker: poison isolation, outages, keepalive, revocation.

``Log`` is an in-memory partitioned log with the consumer calls BatchLoop makes (consume,
commit, pause, resume, lag, assignment), so that each rule is checked on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

import pytest

from notifsvc import batching, errors
from notifsvc.batching import BatchLoop, Postponed
from notifsvc.config import Settings
from notifsvc.db.store import StoreMisconfigured, StoreRefused, StoreUnavailable
from notifsvc.kafka import Consumer, KafkaRecordError, Record, TopicPartition


class Log:
    """One topic's records and a consumer's view of them."""

    group_id = "g"

    def __init__(self, values: list[bytes], partitions: int = 1) -> None:
        self.records = [
            Record("t", i % partitions, i // partitions, None, v, (), 0)
            for i, v in enumerate(values)
        ]
        self.assignment: set[TopicPartition] = {("t", p) for p in range(partitions)}
        self.position = 0
        self.commits: list[dict[TopicPartition, int]] = []
        self.paused = False
        self.polls_while_paused = 0
        self.arrive: list[Record] = []  # handed out by the next poll, even while paused

    def owned(self, records: list[Record]) -> list[Record]:
        return [r for r in records if (r.topic, r.partition) in self.assignment]

    async def consume(self, max_messages: int, wait: float, *, idle: float = 0.0) -> list[Record]:
        await asyncio.sleep(0)
        if self.paused:
            self.polls_while_paused += 1
            out, self.arrive = self.arrive, []
            return out
        out = self.records[self.position : self.position + max_messages]
        self.position += len(out)
        return out

    async def commit(self, offsets: dict[TopicPartition, int]) -> bool:
        self.commits.append(dict(offsets))
        return True

    async def pause(self) -> None:
        self.paused = True

    async def resume(self) -> None:
        self.paused = False

    async def lag(self) -> dict[TopicPartition, int]:
        return {}

    def committed(self) -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        for c in self.commits:
            out.update(c)
        return out


def loop_on(
    log: Log,
    handler: Callable[[list[Record]], object],
    poisoned: list[tuple[bytes | None, str]],
    *,
    keepalive: float = 5.0,
    batch_size: int = 100,
) -> BatchLoop:
    async def handle(records: list[Record]) -> None:
        result = handler(records)
        if asyncio.iscoroutine(result):
            await result

    async def on_poison(record: Record, reason: str) -> None:
        poisoned.append((record.value, reason))

    consumer: Consumer = log  # type: ignore[assignment]  # the calls BatchLoop makes
    return BatchLoop(
        consumer,
        handle,
        on_poison=on_poison,
        batch_size=batch_size,
        batch_timeout=0.01,
        name="test",
        keepalive=keepalive,
    )


async def until(done: Callable[[], bool], within: float = 30.0) -> None:
    """Poll ``done`` until true; fail after ``within`` seconds."""
    for _ in range(int(within / 0.001)):
        if done():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not met in time")


async def run_until(loop: BatchLoop, done: Callable[[], bool]) -> None:
    stopping = asyncio.Event()
    task = asyncio.create_task(loop.run(stopping))
    try:
        await until(done)
    finally:
        stopping.set()
        await asyncio.wait_for(task, 30)


def values(n: int) -> list[bytes]:
    return [f"m{i}".encode() for i in range(n)]


@pytest.mark.parametrize(
    "error",
    [StoreRefused("22021 invalid byte"), KafkaRecordError("too large"), ZeroDivisionError("bug")],
)
async def test_a_record_that_fails_on_its_own_is_isolated_and_the_rest_handled_in_order(
    error: Exception,
) -> None:
    log = Log([*values(9), b"poison", *values(6)])
    handled: list[bytes | None] = []
    poisoned: list[tuple[bytes | None, str]] = []

    def handler(records: list[Record]) -> None:
        if any(r.value == b"poison" for r in records):
            raise error
        handled.extend(r.value for r in records)

    loop = loop_on(log, handler, poisoned)
    await run_until(loop, lambda: log.committed().get(("t", 0)) == 16)
    assert handled == values(9) + values(6)  # every other record, in order, once
    assert len(poisoned) == 1 and poisoned[0][0] == b"poison"
    assert str(error) in poisoned[0][1]
    assert loop.poisoned == 1 and not log.paused


async def test_an_outage_pauses_and_retries_the_batch_without_dead_lettering() -> None:
    log = Log(values(5))
    failures = [StoreUnavailable("db down"), Postponed("not due")]
    handled: list[bytes | None] = []
    poisoned: list[tuple[bytes | None, str]] = []

    def handler(records: list[Record]) -> None:
        if failures:
            raise failures.pop(0)
        handled.extend(r.value for r in records)

    loop = loop_on(log, handler, poisoned)
    await run_until(loop, lambda: log.committed().get(("t", 0)) == 5)
    assert handled == values(5) and poisoned == []
    assert log.polls_while_paused >= 1  # the member kept polling while it waited
    assert not log.paused  # and resumed once the batch went through


async def test_a_stage_error_is_retried_like_an_outage_never_dead_lettered() -> None:
    log = Log(values(3))
    failures = [StoreMisconfigured("42P01 relation does not exist")] * 2
    poisoned: list[tuple[bytes | None, str]] = []

    def handler(records: list[Record]) -> None:
        if failures:
            raise failures.pop()

    loop = loop_on(log, handler, poisoned)
    await run_until(loop, lambda: log.committed().get(("t", 0)) == 3)
    assert poisoned == []


async def test_stopping_during_an_outage_commits_nothing() -> None:
    log = Log(values(3))
    poisoned: list[tuple[bytes | None, str]] = []

    def handler(records: list[Record]) -> None:
        raise StoreUnavailable("db down")

    loop = loop_on(log, handler, poisoned)
    stopping = asyncio.Event()
    task = asyncio.create_task(loop.run(stopping))
    await until(lambda: log.polls_while_paused > 0)
    stopping.set()
    await asyncio.wait_for(task, 30)
    assert log.commits == [] and poisoned == []


async def test_a_poison_handler_outage_is_retried_until_the_record_is_dead_lettered() -> None:
    log = Log([b"poison", b"ok"])
    outages = [StoreUnavailable("dlq broker away")]
    poisoned: list[tuple[bytes | None, str]] = []

    def handler(records: list[Record]) -> None:
        if any(r.value == b"poison" for r in records):
            raise StoreRefused("bad")

    loop = loop_on(log, handler, poisoned)

    async def on_poison(record: Record, reason: str) -> None:
        if outages:
            raise outages.pop()
        poisoned.append((record.value, reason))

    loop._on_poison = on_poison
    await run_until(loop, lambda: log.committed().get(("t", 0)) == 2)
    assert [v for v, _ in poisoned] == [b"poison"]


async def test_a_slow_handler_keeps_polling_and_loses_nothing_that_arrives_meanwhile() -> None:
    log = Log(values(2))
    late = Record("t", 0, 2, None, b"late", (), 0)
    release = asyncio.Event()
    handled: list[bytes | None] = []
    poisoned: list[tuple[bytes | None, str]] = []

    async def handler(records: list[Record]) -> None:
        if records[0].value == b"m0":
            log.arrive.append(late)  # prefetched before the pause took effect
            await until(lambda: log.polls_while_paused >= 3)  # the loop kept polling
            release.set()
        handled.extend(r.value for r in records)

    loop = loop_on(log, handler, poisoned, keepalive=0.001)
    await run_until(loop, lambda: log.committed().get(("t", 0)) == 3)
    assert release.is_set() and handled == [b"m0", b"m1", b"late"]


async def test_records_of_a_partition_revoked_meanwhile_are_not_committed() -> None:
    log = Log(values(4), partitions=2)
    poisoned: list[tuple[bytes | None, str]] = []
    handled: list[bytes | None] = []

    def handler(records: list[Record]) -> None:
        log.assignment.discard(("t", 1))  # a rebalance while the batch was handled
        handled.extend(r.value for r in records)

    loop = loop_on(log, handler, poisoned)
    await run_until(loop, lambda: bool(log.commits))
    assert log.committed() == {("t", 0): 2}


def test_every_failure_has_a_kind() -> None:
    assert errors.kind_of(StoreUnavailable("x")) is errors.Kind.UNAVAILABLE
    assert errors.kind_of(StoreMisconfigured("x")) is errors.Kind.STAGE
    assert errors.kind_of(StoreRefused("x")) is errors.Kind.RECORD
    assert errors.kind_of(ValueError("x")) is errors.Kind.RECORD
    assert errors.retriable(Postponed("x")) and not errors.retriable(KeyError("x"))


async def test_a_record_that_fails_for_good_only_once_is_not_dead_lettered() -> None:
    """A permanent-looking error that was really an outage (asyncpg's InternalClientError on
    a connection a database restart broke, seen in the chaos suite) must not cost a good
    record: a lone failing record is tried again before it is dead-lettered."""
    log = Log(values(4))
    flukes = [ZeroDivisionError("fluke")] * 3  # the batch, a half, then the lone record
    handled: list[bytes | None] = []
    poisoned: list[tuple[bytes | None, str]] = []

    def handler(records: list[Record]) -> None:
        if flukes and any(r.value == b"m1" for r in records):
            raise flukes.pop()
        handled.extend(r.value for r in records)

    loop = loop_on(log, handler, poisoned)
    await run_until(loop, lambda: log.committed().get(("t", 0)) == 4)
    assert poisoned == [] and sorted(v or b"" for v in handled) == values(4)


def test_a_deferred_lane_fetches_seldom_and_the_others_as_configured() -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:9", kafka_fetch_wait_ms=50)

    def fetch_wait(deferred: bool, settings: Settings = settings) -> int:
        consumer, _ = batching.lane(
            settings,
            group="g",
            topic="t",
            handler=noop,
            on_poison=noop,
            name="n",
            deferred=deferred,
        )
        return consumer.fetch_wait_ms

    assert fetch_wait(False) == 50
    assert fetch_wait(True) == batching.DEFERRED_FETCH_WAIT_MS
    assert fetch_wait(True, replace(settings, kafka_fetch_wait_ms=2000)) == 2000  # never shorter


async def noop(*_: object) -> None:
    return None
