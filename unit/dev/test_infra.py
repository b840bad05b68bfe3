"""The infrastructure module without a broker or a database: lanes, stage environments,
and a LocalInfra that is never started."""

from __future__ import annotations

from pathlib import Path

import pytest

from notifsvc import config
from notifsvc.channels.log import LogSettings
from notifsvc.channels.webhook import WebhookSettings
from notifsvc.config import Secret, Settings
from notifsvc.dev import infra
from notifsvc.dev.infra import LOG_FILE, Infra, Lane, LocalInfra


class FakeInfra(Infra):
    """Records the SQL it is asked to run; nothing is started."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir)
        self.sql: list[str] = []

    @property
    def bootstrap(self) -> str:
        return "127.0.0.1:9"

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host=/nowhere"

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    async def _admin(self, sql: str) -> None:
        self.sql.append(sql)


@pytest.fixture
def prepared(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """What :func:`infra.prepare` was asked to migrate and give topics."""
    calls: list[Settings] = []

    async def prepare(settings: Settings) -> None:
        calls.append(settings)

    monkeypatch.setattr(infra, "prepare", prepare)
    return calls


def test_clean_environ_drops_only_our_variables() -> None:
    env = {"NOTIFSVC_HTTP_PORT": "1", "PATH": "/bin", "NOTIFSVC_LOG_PATH": "x"}
    assert infra.clean_environ(env) == {"PATH": "/bin"}


def test_env_values_name_section_settings_too() -> None:
    values = infra.env_values({"log_path": "/tmp/x", "max_attempts": 3})
    assert values == {LogSettings.env_name("path"): "/tmp/x", "NOTIFSVC_MAX_ATTEMPTS": "3"}


def test_stage_env_is_ours_without_inherited_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFSVC_SEND_CONCURRENCY", "7")
    monkeypatch.setenv("KEEP_ME", "yes")
    settings = Settings(http_port=9001, max_attempts=2).configure(LogSettings, path=Path("/l"))
    env = infra.stage_env(settings, max_attempts=4)
    assert env["KEEP_ME"] == "yes"
    assert "NOTIFSVC_SEND_CONCURRENCY" not in env
    assert env["NOTIFSVC_HTTP_PORT"] == "9001"
    assert env["NOTIFSVC_MAX_ATTEMPTS"] == "4"  # values win over settings
    assert env[LogSettings.env_name("path")] == "/l"
    assert infra.stage_env() == infra.clean_environ()


def test_lane_env_gives_back_its_settings(tmp_path: Path) -> None:
    settings = Settings(database_url=Secret("postgresql://h/db"), topic_prefix="p.")
    lane = Lane.for_settings(
        "x", settings.configure(WebhookSettings, allowed_hosts=frozenset({"a"})), tmp_path
    )
    assert config.load(lane.env) == lane.settings
    assert lane.log_channel == tmp_path / LOG_FILE  # unset: the folder's file
    assert lane.base_url == "http://127.0.0.1:8090"
    assert lane.stage_env(http_port=1)["NOTIFSVC_HTTP_PORT"] == "1"


async def test_a_lane_is_fresh_and_isolated(tmp_path: Path, prepared: list[Settings]) -> None:
    fake = FakeInfra(tmp_path)
    one = await fake.lane("router-kill", tmp_path / "one", webhook_allowed_hosts="127.0.0.1")
    two = await fake.lane("router-kill", tmp_path / "two", topic_partitions=4)
    assert one.database is not None and one.database.startswith("router_kill_")
    assert one.database != two.database
    assert fake.sql == [f'CREATE DATABASE "{one.database}"', f'CREATE DATABASE "{two.database}"']
    assert prepared == [one.settings, two.settings]
    settings = one.settings
    assert settings.kafka_bootstrap == "127.0.0.1:9"
    assert settings.dsn == fake.dsn(one.database)
    assert settings.topic_prefix == f"{one.database}."
    assert settings.section(LogSettings).path == tmp_path / "one" / LOG_FILE == one.log_channel
    assert settings.section(WebhookSettings).allowed_hosts == frozenset({"127.0.0.1"})
    assert two.settings.topic_partitions == 4
    assert one.settings.http_port != two.settings.http_port
    assert (tmp_path / "one").is_dir() and (tmp_path / "two").is_dir()


async def test_drop_deletes_the_lane_database_only(
    tmp_path: Path, prepared: list[Settings]
) -> None:
    fake = FakeInfra(tmp_path)
    lane = await fake.lane("bench", tmp_path)
    await fake.drop(lane)
    await fake.drop(Lane.for_settings("elsewhere", lane.settings, tmp_path))  # not ours: kept
    assert fake.sql[1:] == [f'DROP DATABASE IF EXISTS "{lane.database}" WITH (FORCE)']


def test_local_infra_does_nothing_until_started_and_stops_twice(tmp_path: Path) -> None:
    local = LocalInfra(tmp_path / "state", keep=True, own_process_group=True)
    assert not (tmp_path / "state").exists()  # no I/O before start()
    assert local.broker.own_process_group and local.postgres.own_process_group
    local.stop()
    local.stop()
    assert not local.broker.running
