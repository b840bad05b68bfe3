"""The compose stack's provider stand-ins (deploy/compose/provider_fakes.py) accept what the
real sms, slack and webhook channels send, with the settings docker-compose.yml gives them."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any
from urllib.parse import unquote_plus

import aiohttp
import pytest
from aiohttp import web

from notifsvc import channels, config
from notifsvc.model import Notification
from unit.deploy.support import ROOT, compose_env, load_yaml

FAKES = ROOT / "deploy" / "compose" / "provider_fakes.py"


def load_fakes() -> ModuleType:
    spec = importlib.util.spec_from_file_location("provider_fakes", FAKES)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def fakes() -> AsyncIterator[str]:
    """The fakes on 127.0.0.1; yields their base URL."""
    runner = web.AppRunner(load_fakes().create_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def settings_for(base: str) -> config.Settings:
    """The compose stack's settings, with the fakes' host name swapped for 127.0.0.1."""
    env = compose_env(load_yaml(ROOT / "docker-compose.yml")["services"]["notificator-sms"])
    port = base.rpartition(":")[2]
    env = {k: v.replace("provider-fakes:8070", f"127.0.0.1:{port}") for k, v in env.items()}
    env["NOTIFSVC_WEBHOOK_ALLOWED_HOSTS"] = "127.0.0.1"
    return config.load(env)


async def recorded(base: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/requests") as resp:
        assert resp.status == 200
        entries: list[dict[str, Any]] = await resp.json()
        return entries


async def deliver(settings: config.Settings, notification: Notification) -> None:
    channel = channels.REGISTRY[notification.channel](settings)
    assert channel.validate(notification) == []
    await channel.start()
    try:
        await channel.send(notification)
    finally:
        await channel.stop()


@pytest.mark.parametrize(
    ("name", "to", "path"),
    [
        (
            "sms",
            "+14155552671",
            "/2010-04-01/Accounts/AC00000000000000000000000000000000/Messages.json",
        ),
        ("slack", "#alerts", "/api/chat.postMessage"),
        ("webhook", "{base}/hooks/orders", "/hooks/orders"),
    ],
)
async def test_real_channels_deliver_to_the_fakes(
    fakes: str, name: str, to: str, path: str
) -> None:
    settings = settings_for(fakes)
    notification = Notification(
        uuid=uuid.uuid4(), channel=name, to=to.format(base=fakes), txt="hello from compose"
    )
    await deliver(settings, notification)
    (entry,) = await recorded(fakes)
    assert entry["path"] == path
    assert entry["status"] in {200, 201}
    assert "hello from compose" in unquote_plus(entry["body"])
    if name != "webhook":
        assert entry["authorized"] and "Authorization" not in entry["headers"]
    else:
        assert entry["headers"]["Idempotency-Key"] == str(notification.uuid)


async def test_requests_are_kept_newest_last_and_bounded(fakes: str) -> None:
    keep = load_fakes().KEEP
    async with aiohttp.ClientSession() as session:
        for i in range(3):
            async with session.post(f"{fakes}/hook/{i}", data=b"{}") as resp:
                assert resp.status == 200
                assert await resp.json() == {"ok": True}
    assert [e["path"] for e in await recorded(fakes)] == ["/hook/0", "/hook/1", "/hook/2"]
    assert keep >= 100
