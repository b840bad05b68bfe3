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
