"""The notificator's next hop and the channel throttle, without a broker (no I/O happens
before start())."""

from __future__ import annotations

import time
import uuid

from notifsvc import deadletter, headers, topics
from notifsvc.channels.log import LogChannel
from notifsvc.config import Secret, Settings
from notifsvc.db.store import Replayed
from notifsvc.delivery import MAX_INLINE_PAUSE, Delivery, Throttle
from notifsvc.kafka import Record
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
