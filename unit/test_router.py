from __future__ import annotations

import uuid

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from notifsvc import router, topics
from notifsvc.config import Secret, Settings
from notifsvc.kafka import Record
from notifsvc.model import Notification, Priority
from notifsvc.router import Router
from unit import test_fast_paths

SETTINGS = Settings(kafka_bootstrap="127.0.0.1:1", database_url=Secret("postgresql://x/y"))


def record(value: bytes | None, offset: int = 0) -> Record:
    return Record("outstanding-notifications", 0, offset, None, value, (), 0)


def body(uid: uuid.UUID, txt: str = "hi", destination: str = "log") -> bytes:
    return orjson.dumps({"uuid": str(uid), "destination": destination, "to": "ops", "txt": txt})


def test_plan_keeps_first_of_duplicates_and_counts_conflicts() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    plan = Router(SETTINGS).plan(
        [record(body(a)), record(body(b)), record(body(a)), record(body(a, txt="changed"))]
    )
    assert list(plan.unique) == [a, b]
    assert plan.unique[a].txt == "hi"
    assert plan.duplicates == 2
    assert plan.conflicts == {a: 1}
    assert plan.poison == []


def test_plan_sends_poison_to_the_dlq_with_its_reason() -> None:
    good = uuid.uuid4()
    plan = Router(SETTINGS).plan(
        [
            record(b"\x00garbage", 1),
            record(body(uuid.uuid4(), destination="fax"), 2),
            record(None, 3),
            record(body(good), 4),
        ]
    )
    assert list(plan.unique) == [good]
    topics = {topic for topic, _, _, _ in plan.poison}
    assert topics == {"notifications.dlq"}
    reasons = [dict(headers)["notifsvc-error"] for _, _, _, headers in plan.poison]
    assert b"not JSON" in reasons[0]
    assert b"unknown destination" in reasons[1]
    offsets = [dict(headers)["notifsvc-source-offset"] for _, _, _, headers in plan.poison]
    assert offsets == [b"1", b"2", b"3"]


def test_a_fresh_notification_is_forwarded_as_it_came_a_stored_one_as_stored() -> None:
    a = uuid.uuid4()
    came = body(a, txt="first") + b" "  # not what encode() writes: whitespace after
    plan = Router(SETTINGS).plan([record(came)])
    assert router._value(plan, plan.unique[a]) is came
    stored = Notification(a, "log", "ops", "stored earlier", accepted_at=1.0)
    assert router._value(plan, stored) == stored.encode()  # a re-forward: the first payload


@settings(max_examples=300)
@given(st.one_of(test_fast_paths._WIRE, test_fast_paths._ENCODED, test_fast_paths._NEAR_PLAIN))
def test_a_notificator_reads_from_the_forwarded_value_what_encode_would_write(
    data: dict[str, object],
) -> None:
    """Forwarding the input bytes instead of re-encoding changes nothing downstream:
    whatever the router decodes, the notificator decodes alike from either."""
    try:
        raw = orjson.dumps(data)
    except TypeError:  # (an integer out of JSON's range)
        return
    plan = Router(SETTINGS).plan([record(raw)])
    for n in plan.unique.values():
        forwarded = router._value(plan, n)
        assert Notification.decode(forwarded) == n == Notification.decode(n.encode())


def test_each_notification_goes_to_the_lane_of_its_channel_and_priority() -> None:
    r = Router(SETTINGS)
    for name, priority in [("log", "normal"), ("log", "high"), ("email", "high"), ("log", "low")]:
        n = Notification(uuid.uuid4(), name, "ops", "hi", priority=Priority(priority))
        assert r._lane_topic(n) == topics.channel(SETTINGS, name, priority)
        assert r._lane_topic(n) == topics.channel(SETTINGS, name, priority)  # once built
