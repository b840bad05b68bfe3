"""Webhook providers on 127.0.0.1 that record what they really delivered.

A request counts as delivered only when the sink answered 2xx on a connection that was still
open, i.e. the notificator was alive to read the answer. A request whose sender died while the
sink was working on it (a notificator killed mid-send) is counted as ``aborted`` instead, so
that a notification whose only send was cut off shows up as lost unless it is sent again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from notifsvc.process import free_port

log = logging.getLogger(__name__)

TURNS = ("500", "429", "hang", "ok")


@dataclass
class Sink:
    """An aiohttp server at ``url``; ``delay`` seconds of work per request before answering."""

    delay: float = 0.0
    flaky: bool = False
    hang: float = 5.0
    port: int = field(default_factory=free_port)
    delivered: Counter[str] = field(default_factory=Counter)
    first: dict[str, float] = field(default_factory=dict)  # uuid -> time of its first delivery
    aborted: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    _tries: Counter[str] = field(default_factory=Counter)
    _runner: web.AppRunner | None = None
    _start_turn: itertools.count[int] = field(default_factory=itertools.count)
    _turn_of: dict[str, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _hook(self, request: web.Request) -> web.Response:
        uid = str(orjson.loads(await request.read())["uuid"])
        turn = self._turn(uid) if self.flaky else "ok"
        self.answers[turn] += 1
        if turn == "500":
            return web.Response(status=500, text="chaos: internal error")
        if turn == "429":
            return web.Response(status=429, text="chaos: slow down", headers={"Retry-After": "1"})
        await asyncio.sleep(self.hang if turn == "hang" else self.delay)
        if request.transport is None or request.transport.is_closing():
            self.aborted += 1
            return web.Response(status=503)
        self.delivered[uid] += 1
        self.first.setdefault(uid, time.time())
        return web.json_response({"ok": True})

    def _turn(self, uid: str) -> str:
        """500, 429, a hang and success in turns; each UUID starts at a different failure."""
        start = self._turn_of.setdefault(uid, next(self._start_turn) % (len(TURNS) - 1))
        attempt = self._tries[uid]
        self._tries[uid] += 1
        return TURNS[min(start + attempt, len(TURNS) - 1)]
