"""A broker and a database for ``notifsvc dev``, the integration tests, the chaos harness and
the benchmarks: one place that starts them, gives each user a lane and stages a process.

:class:`Infra` is what a user needs of a broker and a database server; :class:`LocalInfra`
runs real ones on this machine (Tansu, embedded PostgreSQL). :meth:`Infra.lane` gives one
user (a test, a scenario, a measurement) a fresh isolated :class:`Lane`: a database created
and migrated, a topic prefix (which also namespaces the consumer groups) with every topic
created, and a folder. :func:`stage_env` is the environment of a stage process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import asyncpg

from notifsvc import channels, config, kafka, topics
from notifsvc.channels.log import LogSettings
from notifsvc.config import Secret, Settings
from notifsvc.db.migrate import migrate
from notifsvc.dev.broker import TansuBroker
from notifsvc.dev.postgres import EmbeddedPostgres
from notifsvc.process import free_port

log = logging.getLogger(__name__)

#: In a database folder of a :class:`LocalInfra`: the pid of the run that will delete it.
OWNER_FILE = "notifsvc-dev.pid"
#: A lane's log channel file, in its folder.
LOG_FILE = "log-channel.jsonl"


def clean_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment (or ``environ``) without any ``NOTIFSVC_*`` variable."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in env.items() if not k.startswith(config.PREFIX)}


def env_values(values: Mapping[str, object]) -> dict[str, str]:
    """``NOTIFSVC_<NAME>`` variables from settings named without the prefix, a section's
    included (``log_path`` is ``NOTIFSVC_LOG_PATH``)."""
    return {config.env_name(k): str(v) for k, v in values.items()}


def stage_env(settings: Settings | None = None, **values: object) -> dict[str, str]:
    """The environment of a stage process: ours minus inherited ``NOTIFSVC_*`` settings,
    plus ``settings`` (:func:`~notifsvc.config.to_env`) and ``values`` (:func:`env_values`)."""
    own = config.to_env(settings) if settings is not None else {}
    return clean_environ() | own | env_values(values)


async def create_topics(settings: Settings) -> None:
    """Every topic of every registered channel under ``settings.topic_prefix``."""
    names = topics.all_topics(settings, list(channels.REGISTRY))
    await asyncio.to_thread(kafka.create_topics, settings, names)


async def prepare(settings: Settings) -> None:
    """Migrate the database of ``settings`` and create its topics."""
    await migrate(settings.database)
    await create_topics(settings)


@dataclass(frozen=True)
class Lane:
    """One user's slice of the infrastructure: database, topic prefix, folder."""

    name: str
    settings: Settings
    folder: Path
    database: str | None = None  # made by :meth:`Infra.lane`, dropped by :meth:`Infra.drop`

    @property
    def env(self) -> dict[str, str]:
        return config.to_env(self.settings)

    @property
    def log_channel(self) -> Path:
        return self.settings.section(LogSettings).path or self.folder / LOG_FILE

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.http_port}"

    @classmethod
    def for_settings(cls, name: str, settings: Settings, folder: Path) -> Lane:
        """A lane for settings prepared elsewhere (e.g. the integration-test fixtures)."""
        folder.mkdir(parents=True, exist_ok=True)
        return cls(name, settings, folder)

    def stage_env(self, **values: object) -> dict[str, str]:
        return stage_env(self.settings, **values)


class Infra(ABC):
    """A broker and a database server: started, stopped, and cut into lanes."""

    #: The database to connect to for ``CREATE DATABASE``.
    admin_database: ClassVar[str] = "postgres"
    #: Settings every lane of this broker needs (as :func:`env_values` names them).
    broker_values: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    @property
    @abstractmethod
    def bootstrap(self) -> str: ...

    @abstractmethod
    def dsn(self, database: str) -> str: ...

    @abstractmethod
    def start(self) -> None:
        """Start both (blocking); on failure whatever did start is stopped again."""

    @abstractmethod
    def stop(self) -> None:
        """Stop both; safe to call twice."""

    async def _admin(self, sql: str) -> None:
        conn = await asyncpg.connect(self.dsn(self.admin_database))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def lane(self, name: str, folder: Path, **values: object) -> Lane:
        """A fresh database (migrated), topic prefix (topics created) and HTTP port, and
        ``folder`` (the log channel writes there). ``values`` are further settings, as
        :func:`env_values` names them."""
        database = f"{name.replace('-', '_')}_{uuid.uuid4().hex[:10]}"
        await self._admin(f'CREATE DATABASE "{database}"')
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        env = {
            config.env_name("kafka_bootstrap"): self.bootstrap,
            config.env_name("database_url"): self.dsn(database),
            config.env_name("topic_prefix"): f"{database}.",
            config.env_name("http_port"): str(free_port()),
            LogSettings.env_name("path"): str(folder / LOG_FILE),
        }
        settings = config.load(env | env_values({**self.broker_values, **values}))
        lane = Lane(name, settings, folder, database)
        await prepare(lane.settings)
        return lane

    async def drop(self, lane: Lane) -> None:
        """Delete the database :meth:`lane` made (its topics stay)."""
        if lane.database is not None:
            await self._admin(f'DROP DATABASE IF EXISTS "{lane.database}" WITH (FORCE)')


class LocalInfra(Infra):
    """A Tansu broker and an embedded PostgreSQL server (the ``notifsvc`` database made).

    Both are started and stopped on one long-lived thread of ours: their processes are
    spawned with a parent-death signal, which Linux ties to the *thread* that spawned them,
    so a server started from a short-lived worker thread would die with that thread.
    ``own_process_group``: out of reach of a terminal's Ctrl-C, so whoever started them
    stops them last. The database folder is deleted on stop unless ``keep``, and by a later
    run if this one was killed (:func:`remove_leftovers`).
    """

    #: Tansu holds every fetch for its full wait even when data arrives meanwhile.
    broker_values: ClassVar[Mapping[str, Any]] = {"kafka_fetch_wait_ms": 50}

    def __init__(
        self,
        state_dir: Path,
        *,
        keep: bool = False,
        own_process_group: bool = False,
        postgres_settings: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(state_dir)
        self.broker = TansuBroker(state_dir / "tansu.log", own_process_group=own_process_group)
        self.postgres = EmbeddedPostgres(
            keep=keep, own_process_group=own_process_group, server_settings=postgres_settings
        )
        self._owner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="infra")
        self._stopped = False

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def dsn(self, database: str | None = None) -> str:
        return self.postgres.dsn(database)

    @property
    def env(self) -> dict[str, str]:
        """The variables that point a stage at the broker and the ``notifsvc`` database."""
        return {
            config.env_name("kafka_bootstrap"): self.bootstrap,
            config.env_name("database_url"): self.dsn(),
        } | env_values(self.broker_values)

    def point(self, settings: Settings) -> Settings:
        """``settings`` pointed at the broker and the ``notifsvc`` database."""
        pointed = replace(settings, kafka_bootstrap=self.bootstrap, database_url=Secret(self.dsn()))
        return replace(pointed, **self.broker_values)

    @property
    def pids(self) -> list[int]:
        """The broker's and the database server's (whose backends are its children)."""
        return [self.broker.pid, self.postgres.pid]

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._owner.submit(self._start).result()

    def _start(self) -> None:
        remove_leftovers()
        try:
            self.postgres.start()
            self._claim()
            self.broker.start()
        except BaseException:
            self._stop()
            raise

    def _claim(self) -> None:
        """Mark the database folder as this run's, to be deleted unless ``keep``."""
        if self.postgres.base_dir is not None and not self.postgres.keep:
            (self.postgres.base_dir / OWNER_FILE).write_text(str(os.getpid()))

    def stop(self) -> None:
        """Stop both and delete the database folder unless ``keep``; safe to call twice."""
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
    users of :class:`EmbeddedPostgres` other than :class:`LocalInfra` write none."""
    removed = []
    for folder in sorted(Path(tmp or tempfile.gettempdir()).glob("notifsvc-pg-*")):
        owner = _abandoned(folder)
        if owner is None:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
        log.info("removed %s, the database folder of a run (pid %d) that was killed", folder, owner)
    return removed
