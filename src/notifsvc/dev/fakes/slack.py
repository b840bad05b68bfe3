"""A fake Slack Web API ``chat.postMessage``: checks the bearer token and JSON body."""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from notifsvc.channels.slack import SlackSettings
from notifsvc.config import Secret
from notifsvc.dev.fakes.captured import Delivery
from notifsvc.dev.fakes.http import HttpFake, remember
from notifsvc.dev.fakes.script import Reply, Script

TOKEN = "xoxb-test-token"  # noqa: S105 - the fake's own, not a secret


def slack_error(error: str, *, status: int = 200, retry_after: int | None = None) -> Reply:
    """An ``ok: false`` answer, by default with HTTP 200 as Slack does."""
    headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
    return Reply(status, {"ok": False, "error": error}, headers)


class FakeSlack(HttpFake):
    """``token=None`` takes any bearer token (a stand-in that must not know the real one)."""

    def __init__(
        self, *, token: str | None = TOKEN, script: Script | None = None, keep: int | None = None
    ) -> None:
        super().__init__(script, keep=keep)
        self.token = token
        #: The JSON body of every message posted (answered ``ok: true``).
        self.messages: list[dict[str, Any]] = []

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def config(self) -> SlackSettings:
        """The slack channel's settings that point it at this fake."""
        return SlackSettings(api_url=self.api_url, token=Secret(self.token or TOKEN))

    def recipient(self) -> str:
        """A recipient this fake delivers to (for the shared fake tests and benchmarks)."""
        return "C0123456789"

    def deliveries(self) -> list[Delivery]:
        """What was posted, for the outbox of ``notifsvc dev``."""
        out = []
        for seen in self.delivered:
            body = seen.json()
            out.append(
                Delivery(
                    "slack", seen.wall, str(body.get("channel", "")), str(body.get("text", ""))
                )
            )
        return out

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/chat.postMessage", self._post_message)

    def _invalid(self, request: web.Request, body: object) -> str | None:
        authorization = request.headers.get("Authorization")
        if authorization is None:
            return "not_authed"
        scheme, _, token = authorization.partition(" ")
        if scheme != "Bearer" or not token or self.token not in {None, token}:
            return "invalid_auth"
        if request.content_type != "application/json" or not isinstance(body, dict):
            return "invalid_arguments"
        if not body.get("channel"):
            return "channel_not_found"
        if not body.get("text"):
            return "no_text"
        return None

    async def _post_message(self, request: web.Request) -> web.StreamResponse:
        seen = await self.record(request)
        try:
            body = orjson.loads(seen.body)
        except orjson.JSONDecodeError:
            body = None
        error = self._invalid(request, body)
        if error is not None:
            return web.json_response({"ok": False, "error": error})
        scripted = await self.scripted()
        if scripted is not None:
            return scripted
        remember(self.messages, body, self.keep)
        self.deliver(seen)
        ts = f"{time.time():.6f}"
        return web.json_response({"ok": True, "channel": body["channel"], "ts": ts})
