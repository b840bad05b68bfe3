"""The ``notifsvc`` command as a user runs it: real processes, real signals."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import asyncpg
import psutil

from integration.helpers import deliveries, eventually, notification, stage_env
from notifsvc.config import Settings
from notifsvc.kafka import wait_ready
from notifsvc.process import free_port

NOTIFSVC = [sys.executable, "-m", "notifsvc"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFSVC_")}
    env.update(extra)
    return env


@asynccontextmanager
async def started(
    args: list[str], env: dict[str, str]
) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        *NOTIFSVC, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def read_until(proc: asyncio.subprocess.Process, marker: str, lines: list[str]) -> None:
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        while marker not in (line := (await proc.stdout.readline()).decode()):
            assert line, f"process ended before printing {marker!r}:\n{''.join(lines)}"
            lines.append(line)
        lines.append(line)


async def stop_and_check_clean(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM must stop the process and every process it started, exit code 0."""
    family = psutil.Process(proc.pid).children(recursive=True)
    assert family, "expected child processes (broker, database, stages)"
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        await proc.stdout.read()
        assert await proc.wait() == 0
    alive = [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == []


async def test_dev_runs_the_whole_pipeline_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "log.jsonl"
    env = clean_env(
        NOTIFSVC_HTTP_PORT=str(port),
        NOTIFSVC_LOG_PATH=str(log_path),
        NOTIFSVC_KAFKA_SESSION_TIMEOUT_MS="6000",
    )
    lines: list[str] = []
    async with started(["dev", "--state-dir", str(tmp_path / "state")], env) as proc:
        await read_until(proc, "receiver on", lines)
        uid = str(uuid.uuid4())
        body = {"uuid": uid, "destination": "LOG", "to": "ops", "txt": "hello"}
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            async with http.post("/notification", json=body) as resp:
                assert resp.status == 202
                assert await resp.json() == {"uuid": uid, "status": "accepted"}

            async def delivered() -> bool:
                return deliveries(log_path)[uid] >= 1

            await eventually(delivered)

            async def marked_sent() -> bool:  # recorded right after the batch's sends
                async with http.get(f"/notification/{uid}") as resp:
                    return resp.status == 200 and (await resp.json())["state"] == "sent"

            await eventually(marked_sent)
        await stop_and_check_clean(proc)
    found = re.search(r"host=(/[^&\s]+)", "".join(lines))
    assert found, "notifsvc dev should log where its database lives"
    database_dir = Path(found.group(1))
    assert database_dir.name.startswith("notifsvc-pg-")
    assert not database_dir.exists()


async def test_infra_only_prints_settings_for_separate_stages(tmp_path: Path) -> None:
    lines: list[str] = []
    async with started(["dev", "--infra-only", "--state-dir", str(tmp_path)], clean_env()) as proc:
        await read_until(proc, "NOTIFSVC_DATABASE_URL=", lines)
        printed = dict(line.strip().split("=", 1) for line in lines if line.startswith("NOTIFSVC_"))
        await asyncio.to_thread(wait_ready, printed["NOTIFSVC_KAFKA_BOOTSTRAP"], 10.0)
        conn = await asyncpg.connect(printed["NOTIFSVC_DATABASE_URL"])
        try:
            assert await conn.fetchval("SELECT count(*) FROM notifications") == 0
        finally:
            await conn.close()
        await stop_and_check_clean(proc)


async def run(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *NOTIFSVC, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_malformed_configuration_names_the_variable() -> None:
    code, out = await run(["router"], clean_env(NOTIFSVC_HTTP_PORT="eighty"))
    assert code == 2
    assert "NOTIFSVC_HTTP_PORT='eighty'" in out


async def test_missing_configuration_names_the_variable() -> None:
    code, out = await run(["router"], clean_env())
    assert code == 2
    assert "NOTIFSVC_KAFKA_BOOTSTRAP is required" in out


async def test_disabled_channel_is_refused_with_its_reason() -> None:
    env = clean_env(
        NOTIFSVC_KAFKA_BOOTSTRAP="127.0.0.1:1", NOTIFSVC_DATABASE_URL="postgresql://x/y"
    )
    code, out = await run(["notificator", "--channel", "webhook"], env)
    assert code == 2
    assert "NOTIFSVC_WEBHOOK_ALLOWED_HOSTS is not set" in out


async def test_receiver_workers_share_one_port(settings: Settings) -> None:
    env = stage_env(settings)
    async with started(["receiver", "--workers", "2"], env) as proc:

        async def listening() -> bool:
            workers = psutil.Process(proc.pid).children()
            return len(workers) == 2 and all(
                any(c.status == psutil.CONN_LISTEN for c in w.net_connections()) for w in workers
            )

        await eventually(listening, within=30, interval=0.1)
        workers = psutil.Process(proc.pid).children()
        url = f"http://127.0.0.1:{settings.http_port}"
        async with aiohttp.ClientSession(url) as http:
            for _ in range(20):
                async with http.post("/notification", json=notification()) as resp:
                    assert resp.status == 202
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await proc.wait() == 0
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]


async def test_receiver_refuses_to_start_without_its_topic(settings: Settings) -> None:
    """It must not answer 202 for writes that can never succeed: exit 2, naming the fix."""
    env = stage_env(settings) | {"NOTIFSVC_TOPIC_PREFIX": "never-created."}
    code, out = await run(["receiver"], env)
    assert code == 2
    assert "missing topics: never-created.outstanding-notifications" in out
    assert "notifsvc topics create" in out


async def test_receiver_workers_exit_2_when_a_worker_refuses_to_start(settings: Settings) -> None:
    env = stage_env(settings) | {"NOTIFSVC_TOPIC_PREFIX": "never-created."}
    code, _ = await run(["receiver", "--workers", "2"], env)
    assert code == 2
