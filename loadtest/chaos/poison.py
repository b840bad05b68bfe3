"""Garbage on the topics, and what the dead-letter topic made of it."""

from __future__ import annotations

import os
import random
import time
import uuid
from dataclasses import dataclass

import orjson

from notifsvc import topics
from notifsvc.config import Settings
from notifsvc.kafka import Consumer, Headers, Producer

STAGE_HEADER = "notifsvc-stage"


def garbage(i: int, *, routable: bool) -> bytes:
    """The ``i``-th bad value: random bytes, empty, not JSON, wrong shapes, bad fields."""
    kinds = [
        os.urandom(24),
        b"",
        b"{not json",
        b"[1, 2, 3]",
        b'{"uuid": "not-a-uuid", "destination": "log", "to": "x", "txt": "y"}',
        b'{"destination": "log"}',
    ]
    if routable:  # the router also refuses destinations that no channel serves
        kinds.append(
            b'{"uuid": "%s", "destination": "pigeon", "to": "x", "txt": "y"}'
            % str(uuid.uuid4()).encode()
        )
    return kinds[i % len(kinds)]


async def inject(settings: Settings, count: int, tag: str) -> dict[bytes, str]:
    """Produce ``count`` bad values to the outstanding topic and to the log channel's topic.

    Returns each message's key and the stage expected to dead-letter it.
    """
    producer = Producer(settings, client_id="chaos-poison")
    await producer.start()
    expected: dict[bytes, str] = {}
    messages = []
    for i in range(count):
        for topic, stage, routable in (
            (topics.outstanding(settings), "router", True),
            (topics.channel(settings, "log"), "notificator[log]", False),
        ):
            key = f"poison-{tag}-{stage}-{i}".encode()
            expected[key] = stage
            messages.append((topic, garbage(i, routable=routable), key, ()))
    try:
        await producer.send_all(messages)
    finally:
        await producer.stop()
    return expected


async def dead_lettered(settings: Settings, keys: set[bytes], within: float) -> dict[bytes, str]:
    """The stage header of every DLQ message whose key is in ``keys`` (reading until all are)."""
    reader = Consumer(
        settings,
        group_id=f"chaos-dlq-{uuid.uuid4()}",
        topics=[topics.dlq(settings)],
        client_id="chaos-dlq",
    )
    await reader.start()
    found: dict[bytes, str] = {}
    deadline = time.monotonic() + within
    try:
        while not keys <= found.keys() and time.monotonic() < deadline:
            for record in await reader.consume(1000, 0.5):
                if record.key in keys:
                    found[record.key] = (record.header(STAGE_HEADER) or b"").decode()
    finally:
        await reader.stop()
    return found


#: Header values no stage writes: empty, not numbers, not finite, overflowing, negative,
#: hexadecimal, padded, non-ASCII digits, NUL, invalid UTF-8, 10 kB.
ODD_HEADER_VALUES = (
    *(b"", b"NaN", b"inf", b"-inf", b"1e309", b"-1", b"99999999999999999999", b"0x10"),
    *(b" 5 ", "\u00b2".encode(), "\u0661".encode(), b"\x00", b"\xff\xfe", b"9" * 10_000),
)
ODD_HEADER_NAMES = (
    *("notifsvc-attempts", "notifsvc-passes", "notifsvc-not-before", "notifsvc-error"),
    *("notifsvc-stage", "notifsvc-source-offset", "notifsvc-\u00e9\x00", "traceparent"),
)


def odd_headers(rng: random.Random) -> Headers:
    """Up to five of the pipeline's own headers (and a trace context) with garbage values."""
    return tuple(
        (rng.choice(ODD_HEADER_NAMES), rng.choice(ODD_HEADER_VALUES))
        for _ in range(rng.randint(0, 5))
    )


def _valid(uid: str, **fields: object) -> dict[str, object]:
    return {"uuid": uid, "destination": "log", "to": "chaos", "txt": f"hostile {uid}"} | fields


def broken_value(rng: random.Random, uid: str, *, routable: bool) -> tuple[bytes, bool]:
    """A value no stage can deliver, and whether its DLQ key is its UUID: a notification
    that only the channel refuses is dead-lettered after it was stored, under its UUID."""
    if rng.random() < 0.15:
        return orjson.dumps(_valid(uid, to=" \u2028 ")), True  # the log channel refuses it
    odd_times: tuple[object, ...] = ("yesterday", -1, 1e300, 5e9, [], "1700000000")
    values: list[object] = [
        *(b"{not json", b'{"uuid": "', b"\xff\xfe\x00", b"null", b"", b"[" * 100_000),
        *(_valid(uid, accepted_at=a) for a in odd_times),
        _valid(uid, txt="a\x00b"),
        _valid(uid, extra=1),
        _valid(uid, txt=5),
        _valid(uid, destination="pigeon" if routable else "webhook"),
    ]
    value = rng.choice(values)
    return (value if isinstance(value, bytes) else orjson.dumps(value)), False


@dataclass(frozen=True)
class Broken:
    """A message written past the receiver; ``stage`` must dead-letter it, or, when empty,
    it is a valid notification (with garbage headers) that must be delivered anyway."""

    topic: str
    value: bytes
    key: bytes
    headers: Headers
    stage: str


def broken(settings: Settings, rng: random.Random, count: int, tag: str) -> list[Broken]:
    """``count`` messages each for the outstanding topic and the log channel's retry lane:
    mostly broken ones, some valid ones; all with garbage headers."""
    out = []
    for i in range(count):
        for topic, stage, routable in (
            (topics.outstanding(settings), "router", True),
            (topics.channel(settings, "log", "retry"), "notificator[log]", False),
        ):
            uid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            headers = odd_headers(rng)
            if rng.random() < 0.2:
                value = orjson.dumps(_valid(uid, accepted_at=rng.choice([0, time.time()])))
                out.append(Broken(topic, value, uid.encode(), headers, ""))
                continue
            value, by_uuid = broken_value(rng, uid, routable=routable)
            key = uid.encode() if by_uuid else b"\xff" + f"broken-{tag}-{i}-{stage}".encode()
            out.append(Broken(topic, value, key, headers, "notificator[log]" if by_uuid else stage))
    return out


async def produce(settings: Settings, messages: list[Broken]) -> None:
    producer = Producer(settings, client_id="chaos-broken")
    await producer.start()
    try:
        await producer.send_all([(m.topic, m.value, m.key, m.headers) for m in messages])
    finally:
        await producer.stop()
