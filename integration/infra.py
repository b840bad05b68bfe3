"""The infrastructure integration tests run on, chosen by ``TEST_INFRA``.

``embedded`` (the default): :class:`~notifsvc.dev.infra.LocalInfra`, the Tansu broker and
embedded PostgreSQL started by the same code as ``notifsvc dev``; no Docker needed.
``containers``: Apache Kafka and CockroachDB images through testcontainers, where a Docker
engine exists. Either way each test gets a lane of its own (:meth:`Infra.lane`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from notifsvc.dev.infra import Infra, LocalInfra


class Containers(Infra):  # pragma: no cover - needs a Docker engine
    admin_database = "defaultdb"

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir)
        self.kafka: Any = None
        self.crdb: Any = None
        self._base = ""
        self._bootstrap = ""

    def start(self) -> None:
        from testcontainers.cockroachdb import CockroachDBContainer  # noqa: PLC0415
        from testcontainers.kafka import KafkaContainer  # noqa: PLC0415

        self.kafka = KafkaContainer(
            os.environ.get("TEST_KAFKA_IMAGE", "confluentinc/cp-kafka:7.6.0")
        )
        self.crdb = CockroachDBContainer(
            os.environ.get("TEST_COCKROACH_IMAGE", "cockroachdb/cockroach:v24.1.1")
        )
        try:
            self.kafka.start()
            self.crdb.start()
        except BaseException:
            self.stop()
            raise
        self._bootstrap = self.kafka.get_bootstrap_server()
        host = self.crdb.get_container_host_ip()
        port = self.crdb.get_exposed_port(26257)
        self._base = f"postgresql://{self.crdb.username}:{self.crdb.password}@{host}:{port}"

    @property
    def bootstrap(self) -> str:
        return self._bootstrap

    def dsn(self, database: str) -> str:
        return f"{self._base}/{database}?sslmode=require"

    def stop(self) -> None:
        kafka, crdb, self.kafka, self.crdb = self.kafka, self.crdb, None, None
        for container in (kafka, crdb):
            if container is not None:
                container.stop()


def choose(state_dir: Path) -> Infra:
    """The infrastructure ``TEST_INFRA`` names, not started yet."""
    kind = os.environ.get("TEST_INFRA", "embedded")
    if kind == "embedded":
        return LocalInfra(state_dir)
    if kind == "containers":
        return Containers(state_dir)
    raise ValueError(f"TEST_INFRA={kind!r}: expected embedded or containers")
