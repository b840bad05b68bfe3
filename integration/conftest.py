"""Shared fixtures: the real broker and database start once per session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from integration.helpers import running
from integration.infra import choose
from notifsvc.config import Settings
from notifsvc.db.store import Store
from notifsvc.dev.infra import Infra
from notifsvc.receiver import ReceiverServer


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    started = choose(tmp_path_factory.mktemp("infra"))
    started.start()
    yield started
    started.stop()


@pytest.fixture
async def settings(infra: Infra, tmp_path: Path) -> Settings:
    """Settings for one test: its own database, its own topics and consumer groups, the log
    channel writing to ``tmp_path / "log-channel.jsonl"``."""
    lane = await infra.lane(
        "t",
        tmp_path,
        topic_partitions=4,
        kafka_session_timeout_ms=6000,
        max_attempts=3,
        send_timeout_ms=2000,
        webhook_allowed_hosts="127.0.0.1,localhost",
    )
    return lane.settings


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    s = Store(settings.dsn)
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[aiohttp.ClientSession]:
    """A client session on a running receiver."""
    base = f"http://{settings.http_host}:{settings.http_port}"
    async with running(ReceiverServer(settings)), aiohttp.ClientSession(base) as session:
        yield session
