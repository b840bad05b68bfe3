"""The walking skeleton end to end: HTTP receiver → router → notificators, all real."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter

import aiohttp
from aiohttp import web

from integration.helpers import deliveries, eventually, notification, running
from notifsvc.channels.log import LogChannel, LogSettings
from notifsvc.channels.webhook import WebhookChannel
from notifsvc.config import Settings
from notifsvc.db.store import Store
from notifsvc.notificator import Notificator
from notifsvc.process import free_port
from notifsvc.router import Router


async def post_all(api: aiohttp.ClientSession, bodies: list[dict[str, object]]) -> Counter[int]:
    limit = asyncio.Semaphore(64)

    async def post(body: dict[str, object]) -> int:
        async with limit, api.post("/notification", json=body) as resp:
            return resp.status

    return Counter(await asyncio.gather(*(post(b) for b in bodies)))


async def test_concurrent_posts_with_retries_are_each_delivered(
    settings: Settings, api: aiohttp.ClientSession, store: Store
) -> None:
    bodies = [notification() for _ in range(1000)]
    reposts = random.sample(bodies, 200)
    statuses = await post_all(api, bodies + reposts)
    assert statuses == Counter({202: 1200})

    async with running(Router(settings)), running(Notificator(settings, LogChannel(settings))):
        wanted = {str(b["uuid"]) for b in bodies}
        delivered = await eventually(lambda: _delivered_all(settings, wanted), within=120)
    assert set(delivered) == wanted
    rows = [await store.get(uuid.UUID(str(b["uuid"]))) for b in bodies[:50]]
    assert [r["state"] if r else None for r in rows] == ["sent"] * 50
    print(f"\nduplicate deliveries: {sum(delivered.values()) - len(wanted)}")


async def _delivered_all(settings: Settings, wanted: set[str]) -> Counter[str]:
    """The delivery counts once every wanted UUID was delivered, else an empty Counter."""
    path = settings.section(LogSettings).path
    assert path is not None
    seen = deliveries(path)
    return seen if wanted <= seen.keys() else Counter()


async def test_uuid_posted_again_after_delivery_is_not_delivered_again(
    settings: Settings, api: aiohttp.ClientSession
) -> None:
    body = notification()
    path = settings.section(LogSettings).path
    assert path is not None
    router = Router(settings)
    async with running(router), running(Notificator(settings, LogChannel(settings))):
        async with api.post("/notification", json=body) as resp:
            assert resp.status == 202
        await eventually(lambda: _delivered_all(settings, {str(body["uuid"])}))
        async with api.post("/notification", json=body) as resp:
            assert resp.status == 202

        async def router_saw_repost() -> bool:
            return router.duplicates >= 1

        await eventually(router_saw_repost)
    assert deliveries(path)[str(body["uuid"])] == 1


async def test_webhook_delivery_reaches_a_real_http_server(
    settings: Settings, api: aiohttp.ClientSession
) -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    body = notification("WEBHOOK", to=f"http://127.0.0.1:{port}/hook", txt="deploy finished")
    try:
        async with (
            running(Router(settings)),
            running(Notificator(settings, WebhookChannel(settings))),
        ):
            async with api.post("/notification", json=body) as resp:
                assert resp.status == 202

            async def got() -> bool:
                return bool(received)

            await eventually(got)
    finally:
        await runner.cleanup()
    headers, payload = received[0]
    assert headers["Idempotency-Key"] == body["uuid"]
    assert b'"txt":"deploy finished"' in payload
