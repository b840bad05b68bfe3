"""A webhook sink: records every request's headers and body, answers as scripted."""

from __future__ import annotations

import orjson
from aiohttp import web

from notifsvc.channels.webhook import WebhookSettings
from notifsvc.dev.fakes.captured import Delivery, pretty
from notifsvc.dev.fakes.http import HttpFake, Seen


class WebhookSink(HttpFake):
    """Accepts POSTs on any path; ``seen`` holds them all, ``delivered`` those answered 200.

    Its route takes every ``POST``: on a server shared with other fakes, add it last."""

    def config(self) -> WebhookSettings:
        """The webhook channel's settings that let it target this fake."""
        return WebhookSettings(allowed_hosts=frozenset({"127.0.0.1"}))

    def recipient(self) -> str:
        """A recipient this fake delivers to (for the shared fake tests and benchmarks)."""
        return self.hook_url()

    def deliveries(self) -> list[Delivery]:
        """What was posted, for the outbox of ``notifsvc dev``."""
        return [_delivery(seen, self.url) for seen in self.delivered]

    def hook_url(self, path: str = "/hook") -> str:
        return f"{self.url}{path}"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/{tail:.*}", self._hook)

    async def _hook(self, request: web.Request) -> web.StreamResponse:
        seen = await self.record(request)
        scripted = await self.scripted()
        if scripted is not None:
            return scripted
        self.deliver(seen)
        return web.json_response({"ok": True})


def _delivery(seen: Seen, base_url: str) -> Delivery:
    try:
        text = pretty(seen.json())
    except orjson.JSONDecodeError:
        text = seen.body.decode(errors="replace")
    uid = seen.headers.get("Idempotency-Key")
    details = {k: v for k, v in seen.headers.items() if k.lower().startswith("x-notifsvc")}
    return Delivery("webhook", seen.wall, base_url + seen.path, text, None, uid, details)
