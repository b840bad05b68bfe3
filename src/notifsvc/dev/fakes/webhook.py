"""A webhook sink: records every request's headers and body, answers as scripted."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from notifsvc.dev.fakes.http import HttpFake


class WebhookSink(HttpFake):
    """Accepts POSTs on any path; ``seen`` holds them all, ``delivered`` those answered 200.

    Its route takes every ``POST``: on a server shared with other fakes, add it last."""

    def settings(self) -> dict[str, Any]:
        """``Settings`` fields that let the webhook channel target this fake."""
        return {"webhook_allowed_hosts": frozenset({"127.0.0.1"})}

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
