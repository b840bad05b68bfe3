from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import confluent_kafka
import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifsvc.config import load
from notifsvc.kafka import (
    Consumer,
    KafkaError,
    KafkaRecordError,
    KafkaStageError,
    KafkaUnavailable,
    Producer,
    ProducerBusy,
    Record,
    classify,
    missing_topics,
    next_offsets,
)
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


async def test_a_send_with_a_deadline_fails_at_it_not_at_the_message_timeout() -> None:
    """The receiver's sends carry the produce timeout (looked at by the poll, no timer of
    their own): the future fails then, though librdkafka would wait longer; sends with a
    longer deadline, or of a later iteration, wait on."""
    settings = load({"NOTIFSVC_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})
    producer = Producer(settings, client_id="test", timeout_ms=120_000)
    await producer.start()
    try:
        bounded = [producer.send_within(0.3, "t", b"1", key=b"a") for _ in range(3)]
        longer = producer.send_within(60, "t", b"3", key=b"c")
        unbounded = producer.send("t", b"2", key=b"b")
        await asyncio.sleep(0)  # the next sends belong to another iteration
        later = producer.send_within(60, "t", b"4", key=b"d")
        for future in bounded:
            with pytest.raises(KafkaUnavailable, match=r"no acknowledgement within 0\.3s"):
                await asyncio.wait_for(future, timeout=30)
        assert not unbounded.done() and not longer.done() and not later.done()
    finally:
        await producer.stop(flush_seconds=0.1)


async def test_stop_fails_the_bounded_sends_nothing_can_report_on_any_more() -> None:
    """A send still unacknowledged when stop() gave up flushing fails at once, not at its
    deadline (which no poll would look at any more)."""
    settings = load({"NOTIFSVC_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})
    producer = Producer(settings, client_id="test", timeout_ms=120_000)
    await producer.start()
    bounded = producer.send_within(60, "t", b"1", key=b"a")
    await producer.stop(flush_seconds=0.1)
    assert bounded.done()
    with pytest.raises(KafkaUnavailable, match="stopped before the broker acknowledged"):
        bounded.result()


async def test_a_bounded_send_fails_when_due_while_stop_flushes() -> None:
    """stop() ends the polls before its flush (up to ``flush_seconds``): a bounded send
    still fails at its deadline meanwhile, not when the flush gives up."""
    settings = load({"NOTIFSVC_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})
    producer = Producer(settings, client_id="test", timeout_ms=120_000)
    await producer.start()
    bounded = producer.send_within(0.3, "t", b"1", key=b"a")
    stopping = asyncio.create_task(producer.stop(flush_seconds=5))
    with pytest.raises(KafkaUnavailable, match=r"no acknowledgement within 0\.3s"):
        await asyncio.wait_for(bounded, timeout=4)
    assert not stopping.done()
    await stopping


async def test_a_cancelled_stop_still_fails_the_bounded_sends() -> None:
    settings = load({"NOTIFSVC_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})
    producer = Producer(settings, client_id="test", timeout_ms=120_000)
    await producer.start()
    bounded = producer.send_within(60, "t", b"1", key=b"a")
    stopping = asyncio.create_task(producer.stop(flush_seconds=1))
    await asyncio.sleep(0)  # stop() runs up to its flush, in a thread
    assert producer._producer is None
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    with pytest.raises(KafkaUnavailable, match="stopped before the broker acknowledged"):
        bounded.result()


async def test_a_start_while_stop_flushes_keeps_its_sends_polls_and_watchdog() -> None:
    """stop()'s ending (after its flush) must leave alone what a start() made meanwhile:
    that start's bounded sends, its polls and its watchdog thread."""
    settings = load({"NOTIFSVC_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})
    producer = Producer(settings, client_id="test", timeout_ms=120_000)
    await producer.start()
    old_watchdog = producer._watchdog
    producer.send_within(60, "t", b"1", key=b"a")  # keeps the flush busy to its end
    stopping = asyncio.create_task(producer.stop(flush_seconds=1))
    await asyncio.sleep(0)  # stop() flushes, in a thread
    starting = asyncio.create_task(producer.start())
    await asyncio.sleep(0)  # start() made its producer and waits for a broker (5 s)
    bounded = producer.send_within(60, "t", b"2", key=b"b")
    await stopping
    try:
        assert not bounded.done()
        assert producer._polling is not None
        watchdog = producer._watchdog
        assert watchdog is not None and watchdog is not old_watchdog
        await asyncio.to_thread(watchdog.join, 2 * Producer.WATCH_EVERY)
        assert watchdog.is_alive() and old_watchdog is not None and not old_watchdog.is_alive()
    finally:
        await starting
        await producer.stop(flush_seconds=0.1)


async def test_a_poll_that_raises_still_fails_the_sends_due(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Deadlines are looked at by the poll even when serving the reports raised (the loop
    logs it), or a bounded send would wait for a report forever."""
    settings = load({"NOTIFSVC_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})
    producer = Producer(settings, client_id="test", timeout_ms=120_000)
    await producer.start()

    def broken(_producer: object) -> None:
        raise RuntimeError("serving the reports failed")

    monkeypatch.setattr(producer, "_serve", broken)
    try:
        bounded = producer.send_within(0.2, "t", b"1", key=b"a")
        with pytest.raises(KafkaUnavailable, match=r"no acknowledgement within 0\.2s"):
            await asyncio.wait_for(bounded, timeout=30)
    finally:
        monkeypatch.undo()
        await producer.stop(flush_seconds=0.1)


def _fatal() -> confluent_kafka.KafkaError:
    return confluent_kafka.KafkaError(confluent_kafka.KafkaError._FATAL, "test", fatal=True)


async def test_a_fatal_error_replaces_the_producer_and_fails_what_it_held() -> None:
    """A fatal error (e.g. a broker that lost the idempotent producer's state) ends that
    librdkafka instance: the loop swaps in a new one and fails every message the old one
    held at once, not at the message timeout, and later sends go to the new one."""
    settings = load({"NOTIFSVC_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})
    producer = Producer(settings, client_id="test", timeout_ms=120_000)
    await producer.start()
    try:
        old = producer._producer
        held = producer.send("t", b"1", key=b"a")
        await asyncio.sleep(0)  # handed to librdkafka at the end of this iteration
        producer._on_error(_fatal())
        with pytest.raises(KafkaUnavailable, match="Purged in queue"):
            await asyncio.wait_for(held, timeout=30)
        assert producer._producer is not None and producer._producer is not old
        later = producer.send("t", b"2", key=b"b")
        await asyncio.sleep(0.2)
        assert not later.done()  # queued on the new instance, waiting for a broker
    finally:
        await producer.stop(flush_seconds=0.1)


async def test_a_watchdog_look_that_raises_does_not_end_the_watchdog(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The watchdog thread must outlive a failed look (here its wedged check raising), or
    a later fatal error would leave the producer broken for good."""
    settings = load({"NOTIFSVC_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})
    producer = Producer(settings, client_id="test", timeout_ms=120_000)
    looked = threading.Event()

    def wedged(_producer: object) -> bool:
        looked.set()
        raise RuntimeError("a look failed")

    monkeypatch.setattr(producer, "_wedged", wedged)
    await producer.start()
    try:
        held = producer.send("t", b"1", key=b"a")
        assert await asyncio.to_thread(looked.wait, 30)
        producer._on_error(_fatal())
        with pytest.raises(KafkaUnavailable, match="Purged in queue"):
            await asyncio.wait_for(held, timeout=30)
    finally:
        await producer.stop(flush_seconds=0.1)


async def test_a_replaced_producer_that_cannot_be_drained_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Draining the old instance runs in an executor nobody awaits: a failure there is
    logged, and reports already served still reach the loop."""

    class Broken:
        def purge(self) -> None:
            raise RuntimeError("purge failed")

    settings = load({"NOTIFSVC_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})
    producer = Producer(settings, client_id="test", timeout_ms=1_000)
    await producer.start()
    try:
        waiter = asyncio.get_running_loop().create_future()
        producer._on_delivery(waiter, None, None)  # served before the drain failed
        await asyncio.to_thread(producer._drain, Broken())  # type: ignore[arg-type]
        await asyncio.wait_for(waiter, timeout=30)
        assert "draining a replaced producer" in caplog.text
    finally:
        await producer.stop(flush_seconds=0.1)


async def test_a_replacement_due_after_stop_does_nothing() -> None:
    """stop() and the watchdog's replacement can cross: a replacement of an instance that
    is no longer current (stopped, or replaced already) must not bring a producer back."""
    settings = load({"NOTIFSVC_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})
    producer = Producer(settings, client_id="test", timeout_ms=1_000)
    await producer.start()
    old = producer._producer
    assert old is not None
    await producer.stop(flush_seconds=0.1)
    producer._replace(old)
    assert producer._producer is None
    with pytest.raises(KafkaUnavailable, match="not started"):
        producer.send("t", b"1")


async def test_after_a_hand_over_the_next_poll_is_at_the_busy_pace() -> None:
    """An idle producer polls every POLL_IDLE seconds; once messages are handed over, their
    reports are served within POLL_BUSY (polled at the idle pace, every request of a
    saturated receiver waited up to 50 ms: 1,300 requests/s instead of 10,000)."""
    settings = load({"NOTIFSVC_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})
    producer = Producer(settings, client_id="test", timeout_ms=120_000)
    await producer.start()
    loop = asyncio.get_running_loop()
    try:
        producer._poll()  # nothing waits for a report: the next poll is at the idle pace
        assert producer._polling is not None
        assert producer._polling.when() - loop.time() > Producer.POLL_BUSY
        producer.send("t", b"1", key=b"a")
        await asyncio.sleep(0)  # handed to librdkafka at the end of that iteration
        assert producer._polling.when() - loop.time() <= Producer.POLL_BUSY
    finally:
        await producer.stop(flush_seconds=0.1)


async def test_a_report_callback_that_raises_does_not_stop_the_polling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Reports are served by a chain of loop callbacks: one that raised (the loop logs it)
    must not end the chain, or every later send would wait for a report forever."""
    settings = load({"NOTIFSVC_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})
    producer = Producer(settings, client_id="test", timeout_ms=300)
    await producer.start()
    served = producer._on_delivery
    raised: list[tuple[Any, ...]] = []

    def once(*args: Any) -> None:
        if not raised:
            raised.append(args)
            raise RuntimeError("a report callback failed")
        served(*args)

    monkeypatch.setattr(producer, "_on_delivery", once)
    try:
        producer.send("t", b"1", key=b"a")
        later = producer.send("t", b"2", key=b"b")
        with pytest.raises(KafkaUnavailable):  # its timeout, reported by a later poll
            await asyncio.wait_for(later, timeout=30)
        assert raised  # the failing callback did run first
    finally:
        await producer.stop(flush_seconds=0.1)


async def test_send_before_start_raises() -> None:
    producer = Producer(load({"NOTIFSVC_KAFKA_BOOTSTRAP": "127.0.0.1:9"}), client_id="test")
    with pytest.raises(KafkaError, match="not started"):
        producer.send("t", b"1")


async def test_a_message_too_large_is_a_record_error_not_an_outage() -> None:
    """librdkafka refuses a message over message.max.bytes locally and for good: send_all
    must say so (the batch loop then isolates it) instead of retrying it forever."""
    settings = load({"NOTIFSVC_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})
    producer = Producer(settings, client_id="test", timeout_ms=1_000)
    await producer.start()
    try:
        with pytest.raises(KafkaRecordError, match="size too large"):
            await producer.send_all([("t", b"x" * 2_000_000, None, ()), ("t", b"ok", None, ())])
    finally:
        await producer.stop(flush_seconds=0.1)


async def test_send_all_counts_every_message_no_broker_acknowledged() -> None:
    """One batch, one wait: every message's report counts (here each one's timeout)."""
    settings = load({"NOTIFSVC_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})
    producer = Producer(settings, client_id="test", timeout_ms=500)
    await producer.start()
    try:
        messages = [("t", b"%d" % i, None, ()) for i in range(3)]
        with pytest.raises(KafkaUnavailable, match="3 of 3 messages not delivered"):
            await producer.send_all(messages)
    finally:
        await producer.stop(flush_seconds=0.1)


async def test_send_all_of_nothing_needs_no_producer_but_a_message_does() -> None:
    producer = Producer(load({"NOTIFSVC_KAFKA_BOOTSTRAP": "127.0.0.1:9"}), client_id="test")
    await producer.send_all([])
    with pytest.raises(KafkaUnavailable, match="not started"):
        await producer.send_all([("t", b"1", None, ())])


def test_librdkafka_errors_are_classified_by_code() -> None:
    err = confluent_kafka.KafkaError
    assert isinstance(classify(err(err.MSG_SIZE_TOO_LARGE)), KafkaRecordError)
    assert isinstance(classify(err(err.UNKNOWN_TOPIC_OR_PART)), KafkaStageError)
    assert isinstance(classify(err(err.TOPIC_AUTHORIZATION_FAILED)), KafkaStageError)
    assert isinstance(classify(err(err._MSG_TIMED_OUT)), KafkaUnavailable)
    assert isinstance(classify(err(err._TRANSPORT)), KafkaUnavailable)
    assert isinstance(classify("not a KafkaError"), KafkaUnavailable)


def test_a_configuration_librdkafka_refuses_is_a_stage_error(tmp_path: Path) -> None:
    """An unreadable CA (or a bad NOTIFSVC_KAFKA_EXTRA property) makes librdkafka refuse to
    create the client: permanent for the stage, said at start-up, not retried."""
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n")
    settings = load(
        {
            "NOTIFSVC_KAFKA_BOOTSTRAP": "127.0.0.1:9",
            "NOTIFSVC_KAFKA_SECURITY_PROTOCOL": "SSL",
            "NOTIFSVC_KAFKA_SSL_CA_FILE": str(tmp_path / "ca.pem"),
        }
    )
    with pytest.raises(KafkaStageError, match="invalid Kafka client configuration"):
        missing_topics(settings, ["t"], timeout=1)


_PARTS = st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 2), st.integers(0, 2))


@given(
    st.lists(_PARTS, max_size=30),
    st.dictionaries(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 2)), st.integers(0, 2)),
)
def test_the_records_owned_are_those_owns_accepts_asked_once_per_run(
    reads: list[tuple[str, int, int]], epochs: dict[tuple[str, int], int]
) -> None:
    consumer = Consumer(
        load({"NOTIFSVC_KAFKA_BOOTSTRAP": "127.0.0.1:9"}),
        group_id="g",
        topics=["a", "b"],
        client_id="test",
    )
    consumer.assignment = {tp for tp, epoch in epochs.items() if epoch}  # 0: revoked since
    consumer._epochs = dict(epochs)
    records = [Record(t, p, i, None, b"", (), 0, epoch) for i, (t, p, epoch) in enumerate(reads)]
    assert consumer.owned(records) == [r for r in records if consumer.owns(r)]
