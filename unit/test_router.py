from __future__ import annotations

import uuid

import orjson

from notifsvc.config import Secret, Settings
from notifsvc.kafka import Record
from notifsvc.router import Router

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
