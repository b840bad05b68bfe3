"""``notifsvc status`` against a pipeline that has delivered and dead-lettered."""

from __future__ import annotations

import uuid

import aiohttp

from integration.helpers import eventually, notification, running
from notifsvc.channels.log import LogChannel
from notifsvc.config import Settings
from notifsvc.db.store import Store
from notifsvc.notificator import Notificator
from notifsvc.router import Router
from notifsvc.status import collect, render


async def test_status_shows_states_rates_and_consumer_groups(
    settings: Settings, api: aiohttp.ClientSession, store: Store
) -> None:
    bodies = [notification() for _ in range(5)]
    async with running(Router(settings)), running(Notificator(settings, LogChannel(settings))):
        for body in bodies:
            async with api.post("/notification", json=body) as resp:
                assert resp.status == 202

        async def all_sent() -> bool:
            rows = [await store.get(uuid.UUID(str(b["uuid"]))) for b in bodies]
            return all(r is not None and r["state"] == "sent" for r in rows)

        await eventually(all_sent)
        snap = await collect(settings)
    print("\n" + render(snap))
    assert snap.problems == []
    assert snap.states["log"]["sent"] == 5
    assert snap.per_second["log"] == 5 / 60
    router_group = settings.topic("notifsvc-router")
    assert {p.partition for p in snap.lag[router_group]} == set(range(settings.topic_partitions))
    assert "log" in render(snap) and "dead letters" in render(snap)
