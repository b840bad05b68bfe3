"""The log channel: one JSON line per delivery, in the file ``NOTIFSVC_LOG_PATH`` names."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson

from notifsvc import config
from notifsvc.channels.log import LogChannel, LogSettings
from notifsvc.model import Notification
from unit.channels.contract import Case

CASE = Case(None, (), "ops-team", ("", "   "))


async def test_appends_one_line_per_send_to_the_configured_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "log.jsonl"
    settings = config.load({"NOTIFSVC_LOG_PATH": str(path)})
    channel = LogChannel(settings)
    await channel.start()
    try:
        notes = [Notification(uuid.uuid4(), "log", "ops", f"n{i}") for i in range(3)]
        for n in notes:
            await channel.send(n)
    finally:
        await channel.stop()
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [line["uuid"] for line in lines] == [str(n.uuid) for n in notes]
    assert settings.section(LogSettings).path == path


class Own(LogChannel):
    async def send(self, notification: Notification) -> None:
        raise AssertionError("called")


async def test_its_send_is_offered_as_a_plain_function_unless_replaced(tmp_path: Path) -> None:
    settings = config.load({"NOTIFSVC_LOG_PATH": str(tmp_path / "log.jsonl")})
    channel = LogChannel(settings)
    write = channel.synchronous_send()
    assert write is not None
    await channel.start()
    try:
        n = Notification(uuid.uuid4(), "log", "ops", "disk full", "db-3")
        assert write(n) is None
        await channel.send(n)
    finally:
        await channel.stop()
    lines = (tmp_path / "log.jsonl").read_bytes().splitlines()
    first, second = (orjson.loads(line) for line in lines)
    assert first.pop("time") <= second.pop("time")
    expected = {"uuid": str(n.uuid), "to": "ops", "txt": "disk full", "subject": "db-3"}
    assert first == second == expected
    assert Own(settings).synchronous_send() is None  # a send of its own is called as such
    patched = LogChannel(settings)
    patched.send = Own(settings).send  # type: ignore[method-assign]
    assert patched.synchronous_send() is None
