"""Garbage on the topics, and what the dead-letter topic made of it."""

from __future__ import annotations

import os
import time
import uuid

from notifsvc import topics
from notifsvc.config import Settings
from notifsvc.kafka import Consumer, Producer

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
