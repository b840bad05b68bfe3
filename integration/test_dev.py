"""``notifsvc dev`` as a person uses it: every channel delivered to its local stand-in, a
banner only once every stage owns its partitions, a clear message instead of a traceback;
and the receiver's answer for a notification accepted but not stored yet."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil
from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient

from integration.helpers import eventually
from notifsvc import topics
from notifsvc.channels import REGISTRY, push
from notifsvc.config import Settings
from notifsvc.dev.infra import OWNER_FILE, remove_leftovers
from notifsvc.process import free_port

NOTIFSVC = [sys.executable, "-m", "notifsvc"]
READY = "notifsvc dev is ready"
CHANNELS = tuple(REGISTRY)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFSVC_")}
    return env | extra


class Output:
    """Every line the process prints, read as it comes (a full pipe would stall it)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.lines: list[str] = []
        self._proc = proc
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._proc.stdout is not None
        async for raw in self._proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    async def wait_for(self, marker: str, within: float = 60.0) -> int:
        """The index of the first line holding ``marker``."""

        async def printed() -> int:
            found = next((i for i, line in enumerate(self.lines) if marker in line), -1)
            assert found >= 0 or not self._task.done(), "\n".join(self.lines[-40:])
            return found + 1  # truthy once found

        return await eventually(printed, within=within, interval=0.1) - 1

    async def closed(self) -> None:
        await self._task


@asynccontextmanager
async def dev(
    tmp_path: Path, **env: str
) -> AsyncIterator[tuple[Output, asyncio.subprocess.Process]]:
    proc = await asyncio.create_subprocess_exec(
        *NOTIFSVC,
        "dev",
        "--state-dir",
        str(tmp_path / "state"),
        env=clean_env(**env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = Output(proc)
    try:
        yield output, proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await output.closed()


def events(lines: list[str]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        if line.startswith("{"):
            out.append(orjson.loads(line))
    return out


def owned_topics(lines: list[str]) -> set[str]:
    """Topics the consumers said they were assigned, in their own log lines."""
    found = set()
    for event in events(lines):
        if event["logger"] == "notifsvc.kafka" and event["msg"].startswith("assigned ["):
            found |= {part.split("'")[1] for part in event["msg"].split("(")[1:]}
    return found


def group_states(bootstrap: str, groups: list[str]) -> dict[str, Any]:
    """The broker's view: the state of each consumer group."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    described = admin.describe_consumer_groups(groups, request_timeout=10)
    states = {}
    for group, future in described.items():
        description: Any = future.result(timeout=10)  # the stubs say otherwise
        states[group] = description.state
    return states


def banner_value(lines: list[str], name: str) -> str:
    line = next(line for line in lines if line.startswith(f"  {name} "))
    return line.split()[1]


def requests_for(webhook_url: str, lines: list[str]) -> dict[str, dict[str, str]]:
    """One notification per channel, each with a text of its own; the push recipients are
    the ones the banner shows."""
    tos = {
        "log": "ops",
        "webhook": webhook_url,
        "email": "ada@example.com",
        "sms": "+14155552671",
        "slack": "#ops-alerts",
    }
    for name in push():
        line = next(line for line in lines if line.startswith(f"  {name} "))
        tos[name] = line.split("to: ", 1)[1]
    return {
        c: {"uuid": str(uuid.uuid4()), "destination": c.upper(), "to": tos[c], "txt": f"to {c}"}
        for c in CHANNELS
    }


async def outbox(http: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    async with http.get(f"{url}/outbox.json") as resp:
        assert resp.status == 200
        deliveries: list[dict[str, Any]] = (await resp.json())["deliveries"]
        return deliveries


async def test_dev_delivers_every_channel_to_its_stand_in(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "NOTIFSVC_HTTP_PORT": str(port),
        "NOTIFSVC_TOPIC_PARTITIONS": "2",
        "NOTIFSVC_KAFKA_SESSION_TIMEOUT_MS": "6000",
    }
    async with dev(tmp_path, **env) as (output, proc):
        ready = await output.wait_for(READY)
        await output.wait_for("Ctrl-C stops everything.")
        before = output.lines[:ready]
        settings = Settings(topic_partitions=2)
        groups = [topics.router_group(settings)] + [
            topics.notificator_group(settings, c, lane) for c in CHANNELS for lane in topics.LANES
        ]
        bootstrap = next(x for x in before if x.startswith("NOTIFSVC_KAFKA_BOOTSTRAP="))
        states = group_states(bootstrap.split("=", 1)[1], groups)
        assert set(states.values()) == {ConsumerGroupState.STABLE}, states
        lanes = {topics.channel(settings, c, lane) for c in CHANNELS for lane in topics.LANES}
        assert owned_topics(before) >= {topics.outstanding(settings), *lanes}

        outbox_url = banner_value(output.lines, "outbox").rstrip("/")
        sent = requests_for(f"{outbox_url}/hooks/orders", output.lines)
        sent["email"] |= {"subject": "<b>hi</b>", "txt": "to email <script>alert(1)</script>"}
        sent["log"] |= {"callback_url": f"{outbox_url}/callbacks/log"}
        async with aiohttp.ClientSession() as http:
            for body in sent.values():
                async with http.post(f"http://127.0.0.1:{port}/notification", json=body) as resp:
                    assert resp.status == 202, await resp.text()

            async def captured() -> dict[str, dict[str, Any]]:
                got = {d["channel"]: d for d in await outbox(http, outbox_url)}
                return got if set(got) == {*CHANNELS, "callback"} else {}

            got = await eventually(captured, within=30)
            callback = got.pop("callback")  # the log notification's notification.sent event
            assert callback["to"] == sent["log"]["callback_url"]
            event = orjson.loads(callback["text"])
            assert event["type"] == "notification.sent"
            assert event["data"]["uuid"] == sent["log"]["uuid"]
            assert {c: d["to"] for c, d in got.items()} == {c: b["to"] for c, b in sent.items()}
            for channel in ("log", "email", "sms", "slack"):
                assert got[channel]["text"].strip() == sent[channel]["txt"]
            assert orjson.loads(got["webhook"]["text"])["txt"] == "to webhook"
            assert got["email"]["subject"] == "<b>hi</b>"
            for channel in ("log", "webhook", "email"):
                assert got[channel]["uuid"] == sent[channel]["uuid"]
            async with http.get(f"{outbox_url}/") as resp:
                page = await resp.text()
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
        await stop_cleanly(output, proc)


async def stop_cleanly(output: Output, proc: asyncio.subprocess.Process) -> None:
    children = psutil.Process(proc.pid).children(recursive=True)
    assert len(children) >= 2 + 2 + len(CHANNELS)  # broker, database, receiver, router, ...
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(60):
        await output.closed()
        assert await proc.wait() == 0
    alive = [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    assert not any("Traceback" in line for line in output.lines), "\n".join(output.lines)


async def test_a_taken_receiver_port_is_said_plainly(tmp_path: Path) -> None:
    with socket.socket() as taken:  # as a running receiver holds it (SO_REUSEPORT)
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with dev(tmp_path, NOTIFSVC_HTTP_PORT=str(port)) as (output, proc):
            async with asyncio.timeout(30):
                await output.closed()
                code = await proc.wait()
    text = "\n".join(output.lines)
    assert code == 2, text
    assert f"127.0.0.1:{port} (the receiver) is already in use" in text
    assert f"NOTIFSVC_HTTP_PORT={port + 1} make run" in text
    assert "Traceback" not in text
    assert not (tmp_path / "state").exists()  # it started nothing


def test_database_folders_of_killed_runs_are_removed(tmp_path: Path) -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()
    dead_pid = finished.pid  # a run that is gone
    killed, running, kept = (tmp_path / f"notifsvc-pg-{n}" for n in ("a", "b", "c"))
    for folder in (killed, running, kept):
        (folder / "data").mkdir(parents=True)
    (killed / OWNER_FILE).write_text(str(dead_pid))
    (running / OWNER_FILE).write_text(str(os.getppid()))
    assert remove_leftovers(tmp_path) == [killed]
    assert not killed.exists() and running.exists() and kept.exists()


async def test_an_accepted_notification_not_stored_yet_is_in_flight(
    api: aiohttp.ClientSession,
) -> None:
    """No router runs here: what the receiver accepted is not stored."""
    one = {"uuid": str(uuid.uuid4()), "destination": "LOG", "to": "ops", "txt": "one"}
    two = {**one, "uuid": str(uuid.uuid4())}
    async with api.post("/notification", json=one) as resp:
        assert resp.status == 202
    async with api.post("/notifications", json=[two]) as resp:
        assert resp.status == 200 and (await resp.json())["accepted"] == 1
    for body in (one, two):
        async with api.get(f"/notification/{body['uuid']}") as resp:
            problem = await resp.json(content_type=None)
            assert resp.status == 404 and resp.headers["Retry-After"] == "1"
            assert problem["state"] == "accepted" and problem["uuid"] == body["uuid"]
            assert "in flight, not lost" in problem["detail"]
    unknown = str(uuid.uuid4())
    async with api.get(f"/notification/{unknown}") as resp:
        problem = await resp.json(content_type=None)
        assert resp.status == 404 and "Retry-After" not in resp.headers
        assert "state" not in problem and problem["detail"].startswith(f"no notification {unknown}")
