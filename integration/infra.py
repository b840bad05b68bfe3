"""The infrastructure integration tests run on, chosen by ``TEST_INFRA``.

``embedded`` (the default): the Tansu broker and embedded PostgreSQL, started by the same
code as ``notifsvc dev``; no Docker needed. ``containers``: Apache Kafka and CockroachDB
images through testcontainers, where a Docker engine exists.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import asyncpg

from notifsvc.dev.broker import TansuBroker
from notifsvc.dev.postgres import EmbeddedPostgres


class Infra(Protocol):
    bootstrap: str

    def dsn(self, database: str) -> str: ...
    def stop(self) -> None: ...


async def create_database(infra: Infra, name: str) -> str:
    """A fresh database for one test; returns its DSN."""
    conn = await asyncpg.connect(
        infra.dsn("postgres" if isinstance(infra, Embedded) else "defaultdb")
    )
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return infra.dsn(name)


class Embedded:
    def __init__(self, state_dir: Path) -> None:
        self.postgres = EmbeddedPostgres()
        self.broker = TansuBroker(state_dir / "tansu.log")
        self.postgres.start()
        try:
            self.broker.start()
        except BaseException:
            self.postgres.close()
            raise
        self.bootstrap = self.broker.bootstrap

    def dsn(self, database: str) -> str:
        return self.postgres.dsn(database)

    def stop(self) -> None:
        self.broker.stop()
        self.postgres.close()


class Containers:  # pragma: no cover - needs a Docker engine
    def __init__(self) -> None:
        from testcontainers.cockroachdb import CockroachDBContainer  # noqa: PLC0415
        from testcontainers.kafka import KafkaContainer  # noqa: PLC0415

        self.kafka = KafkaContainer(
            os.environ.get("TEST_KAFKA_IMAGE", "confluentinc/cp-kafka:7.6.0")
        )
        self.crdb = CockroachDBContainer(
            os.environ.get("TEST_COCKROACH_IMAGE", "cockroachdb/cockroach:v24.1.1")
        )
        self.kafka.start()
        self.crdb.start()
        self.bootstrap = self.kafka.get_bootstrap_server()
        host = self.crdb.get_container_host_ip()
        port = self.crdb.get_exposed_port(26257)
        self._base = f"postgresql://{self.crdb.username}:{self.crdb.password}@{host}:{port}"

    def dsn(self, database: str) -> str:
        return f"{self._base}/{database}?sslmode=require"

    def stop(self) -> None:
        self.kafka.stop()
        self.crdb.stop()


def start(state_dir: Path) -> Infra:
    kind = os.environ.get("TEST_INFRA", "embedded")
    if kind == "embedded":
        return Embedded(state_dir)
    if kind == "containers":
        return Containers()
    raise ValueError(f"TEST_INFRA={kind!r}: expected embedded or containers")
