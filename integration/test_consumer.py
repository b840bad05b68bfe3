"""The Kafka consumer wrapper against the real broker: a pause must never outlive the
ownership of a partition (issue #13 item 11, the broker-outage chaos scenario)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from integration.helpers import eventually
from notifsvc import topics
from notifsvc.config import Settings
from notifsvc.kafka import Consumer, Producer, Record


@asynccontextmanager
async def pair(settings: Settings) -> AsyncIterator[tuple[Consumer, Producer]]:
    """A started consumer of the outstanding topic (in a group of its own) and a producer."""
    topic = topics.outstanding(settings)
    consumer = Consumer(settings, group_id=f"g-{uuid.uuid4()}", topics=[topic], client_id="t")
    producer = Producer(settings, client_id="t")
    await consumer.start()
    await producer.start()
    try:
        yield consumer, producer
    finally:
        await producer.stop()
        await consumer.stop()


async def test_partitions_lost_while_paused_come_back_unpaused(settings: Settings) -> None:
    """librdkafka keeps a partition's pause flag through loss and reassignment. A stage that
    was paused (retrying a batch) when its partitions were lost, and "resumed" while it held
    none, used to get them back paused and consume nothing, silently, for good."""
    quick = dataclasses.replace(
        settings, kafka_session_timeout_ms=6_000, kafka_max_poll_interval_ms=6_000
    )
    topic = topics.outstanding(quick)
    async with pair(quick) as (consumer, producer):

        async def assigned() -> bool:
            await consumer.consume(10, 0.1)
            return bool(consumer.assignment)

        await eventually(assigned, within=60)
        await consumer.pause()
        # The fault: no poll for longer than max.poll.interval.ms, so the member leaves the
        # group and its partitions are lost (not a synchronisation sleep).
        await asyncio.sleep(8)

        async def lost() -> bool:
            await consumer.consume(10, 0.1)
            return not consumer.assignment

        await eventually(lost, within=30)
        await consumer.resume()  # holds nothing now: resumes nothing
        await producer.send_all([(topic, b"after", str(i).encode(), ()) for i in range(20)])
        seen: list[Record] = []

        async def consumed() -> bool:
            seen.extend(await consumer.consume(100, 0.2))
            return len(seen) >= 20

        await eventually(consumed, within=60)
        assert all(consumer.owns(r) for r in seen)


async def test_an_idle_poll_returns_nothing_and_a_first_record_brings_the_rest_with_it(
    settings: Settings,
) -> None:
    topic = topics.outstanding(settings)
    async with pair(settings) as (consumer, producer):

        async def assigned() -> bool:
            assert await consumer.consume(10, 0.05, idle=0.2) == []  # nothing was written
            return bool(consumer.assignment)

        await eventually(assigned, within=60)
        await producer.send_all([(topic, str(i).encode(), b"k", ()) for i in range(20)])
        batches: list[list[Record]] = []

        async def consumed() -> bool:
            batches.append(await consumer.consume(100, 0.2, idle=1.0))
            return sum(map(len, batches)) >= 20

        await eventually(consumed, within=60)
        assert max(map(len, batches)) > 1  # not only the one record the idle wait asked for
        assert [r.value for b in batches for r in b] == [str(i).encode() for i in range(20)]
