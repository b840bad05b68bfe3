"""Shared fixtures: the real broker and database start once per session."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from integration import infra as infra_mod
from integration.helpers import running
from notifsvc import channels, kafka, topics
from notifsvc.channels.log import LogSettings
from notifsvc.channels.webhook import WebhookSettings
from notifsvc.config import Secret, Settings
from notifsvc.db.migrate import migrate
from notifsvc.db.store import Store
from notifsvc.process import free_port
from notifsvc.receiver import ReceiverServer


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[infra_mod.Infra]:
    started = infra_mod.start(tmp_path_factory.mktemp("infra"))
    yield started
    started.stop()


@pytest.fixture
async def settings(infra: infra_mod.Infra, tmp_path: Path) -> Settings:
    """Settings for one test: its own database, its own topics and consumer groups."""
    name = f"t{uuid.uuid4().hex[:12]}"
    dsn = await infra_mod.create_database(infra, name)
    await migrate(dsn)
    result = Settings(
        kafka_bootstrap=infra.bootstrap,
        database_url=Secret(dsn),
        topic_prefix=f"{name}.",
        topic_partitions=4,
        kafka_session_timeout_ms=6000,
        http_port=free_port(),
        max_attempts=3,
        send_timeout_ms=2000,
    ).with_sections(
        LogSettings(path=tmp_path / "log-channel.jsonl"),
        WebhookSettings(allowed_hosts=frozenset({"127.0.0.1", "localhost"})),
    )
    names = topics.all_topics(result, list(channels.REGISTRY))
    await asyncio.to_thread(kafka.create_topics, result, names)
    return result


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
