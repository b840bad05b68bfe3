"""The local infrastructure as one unit: broker and database started, migrated, topics made."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

from notifsvc import channels, config, kafka, topics
from notifsvc.config import Settings
from notifsvc.db.migrate import migrate
from notifsvc.dev.broker import TansuBroker
from notifsvc.dev.postgres import EmbeddedPostgres

log = logging.getLogger(__name__)


class LocalInfra:
    def __init__(self, state_dir: Path, *, keep: bool = False) -> None:
        self.broker = TansuBroker(state_dir / "tansu.log")
        self.postgres = EmbeddedPostgres(keep=keep)

    def start(self, settings: Settings) -> Settings:
        """Start both, migrate, create every topic; return ``settings`` pointed at them."""
        try:
            self.postgres.start()
            self.broker.start()
            ready = dataclasses.replace(
                settings,
                kafka_bootstrap=self.broker.bootstrap,
                database_url=config.Secret(self.postgres.dsn()),
            )
            asyncio.run(migrate(ready.dsn))
            kafka.create_topics(ready, topics.all_topics(ready, list(channels.REGISTRY)))
        except BaseException:
            self.stop()
            raise
        return ready

    @property
    def env(self) -> dict[str, str]:
        return {
            config.env_name("kafka_bootstrap"): self.broker.bootstrap,
            config.env_name("database_url"): self.postgres.dsn(),
        }

    def stop(self) -> None:
        self.broker.stop()
        self.postgres.close()
