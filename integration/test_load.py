"""Plain load must not stop a stage either: receiver, router and two log notificators
writing the same rows at the same moment (the router marking them forwarded while a
notificator records them sent) once deadlocked (SQLSTATE 40P01) and ended the process."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp

from integration.helpers import eventually, notification, running
from notifsvc.channels.log import LogChannel
from notifsvc.config import Settings
from notifsvc.db.store import Store
from notifsvc.notificator import Notificator
from notifsvc.router import Router

COUNT = 4_000
PER_REQUEST = 250


async def test_concurrent_router_and_notificators_deliver_everything(
    settings: Settings, api: aiohttp.ClientSession, store: Store
) -> None:
    bodies = [notification("log", txt=f"load {i}") for i in range(COUNT)]
    chunks = [bodies[i : i + PER_REQUEST] for i in range(0, COUNT, PER_REQUEST)]

    async def post(chunk: list[dict[str, object]]) -> int:
        async with api.post("/notifications", json=chunk) as resp:
            accepted: int = (await resp.json())["accepted"]
            return accepted

    notificators = [Notificator(settings, LogChannel(settings)) for _ in range(2)]
    async with (
        running(Router(settings)),
        running(notificators[0]),
        running(notificators[1]),
    ):
        assert sum(await asyncio.gather(*(post(c) for c in chunks))) == COUNT

        async def all_sent() -> bool:
            rows = await store.lookup([uuid.UUID(str(b["uuid"])) for b in bodies])
            return len(rows) == COUNT and all(r.state.value == "sent" for r in rows.values())

        await eventually(all_sent, within=120, interval=0.5)
    assert sum(n.sent for n in notificators) >= COUNT
