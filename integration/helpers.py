"""Polling, stage running and topic reading for integration tests (no sleeps as sync)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import asyncpg
import orjson
import pytest

from loadtest import harness
from notifsvc import topics
from notifsvc.config import Settings
from notifsvc.db.migrate import is_cockroach
from notifsvc.dev.infra import stage_env as stage_env  # noqa: PLC0414 - tests use it
from notifsvc.kafka import Consumer, Record
from notifsvc.model import Notification
from notifsvc.service import Stage

T = TypeVar("T")
S = TypeVar("S", bound=Stage)


async def eventually(
    check: Callable[[], Awaitable[T]], *, within: float = 60.0, interval: float = 0.05
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s (last value: {value!r})")
        await asyncio.sleep(interval)


@asynccontextmanager
async def running(stage: S) -> AsyncIterator[S]:
    """Start ``stage``, run it as a task for the duration of the block, then stop it."""
    stopping = asyncio.Event()
    await stage.start()
    task = asyncio.create_task(stage.run(stopping))
    try:
        yield stage
    finally:
        stopping.set()
        try:
            await asyncio.wait_for(task, 60)
        finally:
            await stage.stop()


def deliveries(path: Path) -> Counter[str]:
    """How many times the log channel delivered each UUID."""
    if not path.exists():
        return Counter()
    return Counter(orjson.loads(line)["uuid"] for line in path.read_bytes().splitlines() if line)


async def feed(settings: Settings, notifications: list[Notification]) -> None:
    """Put ``notifications`` on the router's topic, as the receiver does."""
    await harness.preload(settings, topics.outstanding(settings), notifications)


async def read_topic(
    settings: Settings, topic: str, count: int, *, within: float = 60.0
) -> list[Record]:
    """At least ``count`` records of ``topic`` from its beginning (fewer fails the test)."""
    reader = Consumer(
        settings, group_id=f"reader-{uuid.uuid4()}", topics=[topic], client_id="test-reader"
    )
    await reader.start()
    records: list[Record] = []
    try:

        async def enough() -> bool:
            records.extend(await reader.consume(1000, 0.2))
            return len(records) >= count

        await eventually(enough, within=within, interval=0)
    finally:
        await reader.stop()
    return records


def notification(channel: str = "log", **overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "uuid": str(uuid.uuid4()),
        "destination": channel,
        "to": "ops-team",
        "txt": "disk almost full",
    }
    body.update(overrides)
    return body


@asynccontextmanager
async def connection(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A connection of its own to the test's database, closed on leaving."""
    conn = await asyncpg.connect(settings.dsn)
    try:
        yield conn
    finally:
        await conn.close()


@asynccontextmanager
async def plan_reader(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """:func:`connection`, for a test that reads query plans: EXPLAIN's output is
    PostgreSQL's, so on CockroachDB the test is skipped."""
    async with connection(settings) as conn:
        if await is_cockroach(conn):
            pytest.skip("EXPLAIN output is PostgreSQL's")
        yield conn


async def set_state(
    settings: Settings,
    uuids: Sequence[uuid.UUID],
    state: str,
    *,
    changed: timedelta,
    received: timedelta,
) -> None:
    """Put stored rows in ``state``, last changed ``changed`` and received ``received`` ago
    by the database's clock (what the reconciler and retention read: time passes by moving
    the rows back)."""
    async with connection(settings) as conn:
        await conn.execute(
            "UPDATE notifications SET state = $2, updated_at = now() - $3::interval,"
            " received_at = now() - $4::interval WHERE uuid = ANY($1)",
            list(uuids),
            state,
            changed,
            received,
        )
