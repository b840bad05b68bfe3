"""The receiver while its broker is down: 503 every time, never 202; 202 again once back."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import aiohttp

from integration.helpers import eventually, notification, running
from notifsvc import channels, kafka, topics
from notifsvc.config import Settings
from notifsvc.dev.broker import TansuBroker
from notifsvc.receiver import ReceiverServer


async def post(api: aiohttp.ClientSession) -> int:
    async with api.post("/notification", json=notification()) as resp:
        return resp.status


async def test_no_202_while_the_broker_is_down_and_202_once_it_is_back(
    settings: Settings, tmp_path: Path
) -> None:
    broker = TansuBroker(tmp_path / "tansu.log")
    broker.start()  # not via to_thread: the child dies with its spawning thread
    own = dataclasses.replace(settings, kafka_bootstrap=broker.bootstrap, produce_timeout_ms=1000)

    async def create_topics() -> None:
        names = topics.all_topics(own, list(channels.REGISTRY))
        await asyncio.to_thread(kafka.create_topics, own, names)

    try:
        await create_topics()
        base = f"http://127.0.0.1:{own.http_port}"
        async with running(ReceiverServer(own)), aiohttp.ClientSession(base) as api:

            async def accepted() -> bool:
                return await post(api) == 202

            await eventually(accepted, within=30, interval=0.2)
            broker.stop()
            assert await asyncio.gather(*(post(api) for _ in range(5))) == [503] * 5
            broker.start()  # not via to_thread: the child dies with its spawning thread
            await create_topics()
            await eventually(accepted, within=60, interval=0.2)
    finally:
        broker.stop()
