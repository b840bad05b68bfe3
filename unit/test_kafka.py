from __future__ import annotations

import asyncio

import pytest

from notifsvc.config import load
from notifsvc.kafka import KafkaError, Producer, ProducerBusy, Record, next_offsets
from notifsvc.process import free_port


def rec(partition: int, offset: int, topic: str = "t") -> Record:
    return Record(topic, partition, offset, None, b"", (), 0)


def test_next_offsets_is_one_past_the_highest_per_partition() -> None:
    records = [rec(0, 5), rec(1, 2), rec(0, 7), rec(0, 6), rec(1, 3, "u")]
    assert next_offsets(records) == {("t", 0): 8, ("t", 1): 3, ("u", 1): 4}


def test_header_lookup() -> None:
    r = Record("t", 0, 0, None, b"", (("a", b"1"), ("b", b"2")), 0)
    assert r.header("b") == b"2" and r.header("c") is None


async def test_a_send_that_cannot_be_queued_fails_its_future_not_the_caller() -> None:
    """A full local queue (the broker away) fails that send's future with ProducerBusy; the
    caller, e.g. a batch request that already queued other items, is not interrupted."""
    settings = load({"NOTIFSVC_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})
    producer = Producer(settings, client_id="test", timeout_ms=2_000, max_queued=1)
    await producer.start()
    try:
        first = producer.send("t", b"1", key=b"a")
        second = producer.send("t", b"2", key=b"b")
        with pytest.raises(ProducerBusy):
            await second
        assert not first.done()
        with pytest.raises(KafkaError):  # and the queued one times out: no false success
            await asyncio.wait_for(first, timeout=30)
    finally:
        await producer.stop(flush_seconds=0.1)
        await producer.stop()  # twice is harmless


async def test_send_before_start_raises() -> None:
    producer = Producer(load({"NOTIFSVC_KAFKA_BOOTSTRAP": "127.0.0.1:9"}), client_id="test")
    with pytest.raises(KafkaError, match="not started"):
        producer.send("t", b"1")
