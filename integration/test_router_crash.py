"""The router as a real process, SIGKILLed at random moments of a 10,000-notification run.

Every notification must end up forwarded (at least once) to its channel topic and marked
``forwarded``; how many were forwarded more than once is printed, not asserted.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from integration.helpers import eventually
from loadtest.chaos.infra import Lane
from loadtest.chaos.procs import ASSIGNED, StageProcess
from notifsvc import topics
from notifsvc.config import Settings
from notifsvc.kafka import Consumer, Producer
from notifsvc.model import Notification

TOTAL = 10_000
KILLS = 5


async def _preload(settings: Settings) -> set[str]:
    producer = Producer(settings, client_id="test-preload")
    await producer.start()
    batch = [
        Notification(uuid.uuid4(), "log", "ops", f"crash {i}", accepted_at=time.time())
        for i in range(TOTAL)
    ]
    try:
        await producer.send_all(
            [(topics.outstanding(settings), n.encode(), n.key, ()) for n in batch]
        )
    finally:
        await producer.stop()
    return {str(n.uuid) for n in batch}


async def _counts(conn: asyncpg.Connection) -> tuple[int, int]:
    """(rows stored, rows forwarded)."""
    row = await conn.fetchrow(
        "SELECT count(*) AS stored, count(*) FILTER (WHERE state = 'forwarded') AS forwarded"
        " FROM notifications"
    )
    assert row is not None
    return int(row["stored"]), int(row["forwarded"])


async def _kill_during_run(router: StageProcess, conn: asyncpg.Connection) -> list[int]:
    """Kill the router once stored rows pass a random mark, ``KILLS`` times; restart it."""
    rng = random.Random()
    marks = []
    for left in range(KILLS, 0, -1):
        assert await router.logged(ASSIGNED, within=60), f"run {router.runs} got no partitions"
        stored, _ = await _counts(conn)
        mark = stored + rng.randint(1, max(1, (TOTAL - stored) // (left + 1)))

        async def passed(mark: int = mark) -> bool:
            assert not router.crashed, f"router exited by itself: see {router.log_path}"
            return (await _counts(conn))[0] >= mark

        await eventually(passed, within=60, interval=0.005)
        router.kill()
        marks.append((await _counts(conn))[0])
        router.start()
    return marks


async def _forwarded(settings: Settings, wanted: set[str]) -> Counter[str]:
    """How often each UUID is on the log channel's topic (read to its end)."""
    reader = Consumer(
        settings,
        group_id=f"reader-{uuid.uuid4()}",
        topics=[topics.channel(settings, "log")],
        client_id="test-reader",
    )
    await reader.start()
    seen: Counter[str] = Counter()
    try:

        async def complete() -> bool:
            records = await reader.consume(1000, 1.0)
            seen.update(str(Notification.decode(r.value).uuid) for r in records)
            return not records and wanted <= seen.keys()

        await eventually(complete, within=120, interval=0)
    finally:
        await reader.stop()
    return seen


@pytest.mark.slow
async def test_router_killed_five_times_forwards_every_notification(
    settings: Settings, tmp_path: Path
) -> None:
    wanted = await _preload(settings)
    lane = Lane.for_settings("router-crash", settings, tmp_path)
    router = StageProcess(lane, "router", ["router"], batch_size="100")
    conn = await asyncpg.connect(settings.dsn)
    try:
        router.start()
        marks = await _kill_during_run(router, conn)

        async def all_forwarded() -> bool:
            assert not router.crashed, f"router exited by itself: see {router.log_path}"
            return await _counts(conn) == (TOTAL, TOTAL)

        await eventually(all_forwarded, within=120, interval=0.2)
    finally:
        router.stop()
        await conn.close()
    seen = await _forwarded(settings, wanted)
    assert len(seen) == TOTAL
    twice = sum(1 for n in seen.values() if n > 1)
    print(f"\nrouter killed at {marks} stored rows; forwarded more than once: {twice}")
    assert router.unexpected_exits == []
