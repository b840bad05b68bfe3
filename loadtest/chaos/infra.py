"""The broker and database, owned by the harness process so that a scenario can stop them.

Every scenario gets a :class:`Lane` of its own: a fresh database, a topic prefix (which also
namespaces the consumer groups) and a folder for logs and the log channel's file, so that
scenarios never see each other's messages even though they share one broker and one server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from notifsvc import channels, config, kafka, topics
from notifsvc.channels.log import LogSettings
from notifsvc.config import Settings
from notifsvc.db.migrate import migrate
from notifsvc.dev.broker import TansuBroker
from notifsvc.dev.postgres import EmbeddedPostgres
from notifsvc.process import free_port

log = logging.getLogger(__name__)

SESSION_TIMEOUT_MS = 6000
PARTITIONS = 4


@dataclass(frozen=True)
class Lane:
    """One scenario's slice of the infrastructure."""

    name: str
    env: dict[str, str]
    settings: Settings
    folder: Path

    @property
    def log_channel(self) -> Path:
        return self.settings.section(LogSettings).path or self.folder / "log-channel.jsonl"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.http_port}"

    @classmethod
    def for_settings(cls, name: str, settings: Settings, folder: Path) -> Lane:
        """A lane for infrastructure started elsewhere (e.g. the integration-test fixtures)."""
        folder.mkdir(parents=True, exist_ok=True)
        return cls(name, config.to_env(settings), settings, folder)

    def stage_env(self, **extra: str) -> dict[str, str]:
        """The environment of a stage process: ours, minus any inherited NOTIFSVC_* setting."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(config.PREFIX)}
        return inherited | self.env | {config.env_name(k): v for k, v in extra.items()}


class ChaosInfra:
    """A Tansu broker and a PostgreSQL server that scenarios may stop and start again.

    Both are started and stopped on one long-lived thread of ours: their processes are
    spawned with a parent-death signal, which Linux ties to the *thread* that spawned them,
    so a server started from a short-lived worker thread would die with that thread.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.broker = TansuBroker(folder / "tansu.log")
        self.postgres = EmbeddedPostgres()
        self._owner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chaos-infra")
        self._stopped = False

    def start(self) -> None:
        """Start both (blocking); on failure whatever did start is stopped again."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._owner.submit(self._start).result()

    def _start(self) -> None:
        try:
            self.postgres.start()
            self.broker.start()
        except BaseException:
            self._stop()
            raise

    def stop(self) -> None:
        """Stop both and delete the database; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self._owner.submit(self._stop).result()
        self._owner.shutdown()

    def _stop(self) -> None:
        self.broker.stop()
        self.postgres.close()

    async def _on_owner(self, fn: Callable[[], None]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._owner, fn)

    async def stop_database(self) -> None:
        await self._on_owner(self.postgres.stop)

    async def start_database(self) -> None:
        await self._on_owner(self.postgres.start)

    async def stop_broker(self) -> None:
        await self._on_owner(self.broker.stop)

    async def start_broker(self, *lanes: Lane) -> None:
        """Start the broker again on its port; being in memory, it needs these topics again."""
        await self._on_owner(self.broker.start)
        for lane in lanes:
            await create_topics(lane.settings)

    async def lane(self, name: str, **overrides: str) -> Lane:
        """A fresh database, topics and folder for one scenario; ``overrides`` are settings."""
        tag = f"{name.replace('-', '_')}_{uuid.uuid4().hex[:6]}"
        conn = await asyncpg.connect(self.postgres.dsn("postgres"))
        try:
            await conn.execute(f'CREATE DATABASE "{tag}"')
        finally:
            await conn.close()
        dsn = self.postgres.dsn(tag)
        await migrate(dsn)
        folder = self.folder / name
        folder.mkdir(parents=True, exist_ok=True)
        values = {
            "kafka_bootstrap": self.broker.bootstrap,
            "database_url": dsn,
            "topic_prefix": f"{tag}.",
            "topic_partitions": str(PARTITIONS),
            "kafka_session_timeout_ms": str(SESSION_TIMEOUT_MS),
            "http_port": str(free_port()),
            "log_path": str(folder / "log-channel.jsonl"),
            "webhook_allowed_hosts": "127.0.0.1",
            "produce_timeout_ms": "2000",
            "max_attempts": "5",
            "send_timeout_ms": "2000",
        } | overrides
        env = {config.env_name(k): v for k, v in values.items()}
        lane = Lane(name, env, config.load(env), folder)
        await create_topics(lane.settings)
        return lane


async def create_topics(settings: Settings) -> None:
    names = topics.all_topics(settings, list(channels.REGISTRY))
    await asyncio.to_thread(kafka.create_topics, settings, names)
