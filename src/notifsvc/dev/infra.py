"""The local infrastructure as one unit: broker and database started, migrated, topics made."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shutil
import tempfile
from pathlib import Path

from notifsvc import channels, config, kafka, topics
from notifsvc.config import Settings
from notifsvc.db.migrate import migrate
from notifsvc.dev.broker import TansuBroker
from notifsvc.dev.postgres import EmbeddedPostgres

log = logging.getLogger(__name__)

#: In a database folder of ``notifsvc dev``: the pid of the run that will delete it.
OWNER_FILE = "notifsvc-dev.pid"


class LocalInfra:
    def __init__(self, state_dir: Path, *, keep: bool = False) -> None:
        # Their own process groups: Ctrl-C stops the stages first, then these.
        self.broker = TansuBroker(state_dir / "tansu.log", own_process_group=True)
        self.postgres = EmbeddedPostgres(keep=keep, own_process_group=True)

    def start(self, settings: Settings) -> Settings:
        """Start both, migrate, create every topic; return ``settings`` pointed at them."""
        remove_leftovers()
        try:
            self.postgres.start()
            self._claim()
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

    def _claim(self) -> None:
        """Mark the database folder as this run's, to be deleted unless ``keep``."""
        if self.postgres.base_dir is not None and not self.postgres.keep:
            (self.postgres.base_dir / OWNER_FILE).write_text(str(os.getpid()))

    @property
    def env(self) -> dict[str, str]:
        return {
            config.env_name("kafka_bootstrap"): self.broker.bootstrap,
            config.env_name("database_url"): self.postgres.dsn(),
        }

    def stop(self) -> None:
        self.broker.stop()
        self.postgres.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's
        return True
    return True


def _pid_in(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _abandoned(folder: Path) -> int | None:
    """The pid of the run that should have deleted ``folder``, if it is gone (and so is
    the database server it started)."""
    owner = _pid_in(folder / OWNER_FILE)
    if owner is None or owner == os.getpid() or pid_alive(owner):
        return None
    server = _pid_in(folder / "data" / "postmaster.pid")
    return None if server is not None and pid_alive(server) else owner


def remove_leftovers(tmp: Path | None = None) -> list[Path]:
    """Delete the database folders of earlier runs that were killed before they could
    (their owner file names a process that is gone); kept folders have no owner file, and
    other users of :class:`EmbeddedPostgres` (tests) write none."""
    removed = []
    for folder in sorted(Path(tmp or tempfile.gettempdir()).glob("notifsvc-pg-*")):
        owner = _abandoned(folder)
        if owner is None:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
        log.info("removed %s, the database folder of a run (pid %d) that was killed", folder, owner)
    return removed
