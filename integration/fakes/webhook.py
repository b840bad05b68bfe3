"""A webhook sink: records every request's headers and body, answers as scripted."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from integration.fakes.http import HttpFake, Seen
from integration.fakes.script import Script


class WebhookSink(HttpFake):
    """Accepts POSTs on any path; ``seen`` holds them all, ``delivered`` those answered 200."""

    def __init__(self, script: Script | None = None) -> None:
        super().__init__(script)
        self.delivered: list[Seen] = []

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
        self.delivered.append(seen)
        return web.json_response({"ok": True})
