"""The base of the HTTP fakes: an aiohttp app on 127.0.0.1, a free port, a :class:`Script`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import orjson
from aiohttp import web
from multidict import CIMultiDict

from notifsvc.dev.fakes.base import Service
from notifsvc.dev.fakes.script import Hang, Reply, Script

T = TypeVar("T")


@dataclass(frozen=True)
class Seen:
    """One request as the fake received it."""

    method: str
    path: str
    headers: CIMultiDict[str]
    body: bytes
    at: float = field(default_factory=time.monotonic)  # when it arrived
    wall: float = field(default_factory=time.time)  # the same, as a wall-clock time

    def json(self) -> Any:
        return orjson.loads(self.body)

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True, strict_parsing=True))


def respond(reply: Reply) -> web.Response:
    """The HTTP response for a scripted :class:`Reply`."""
    if reply.body is None:
        return web.Response(status=reply.status, headers=dict(reply.headers))
    if isinstance(reply.body, str):
        return web.Response(status=reply.status, text=reply.body, headers=dict(reply.headers))
    return web.json_response(reply.body, status=reply.status, headers=dict(reply.headers))


def remember(items: list[T], item: T, keep: int | None) -> None:
    """Append ``item``; with ``keep``, forget the oldest beyond that many."""
    items.append(item)
    if keep is not None and len(items) > keep:
        del items[: len(items) - keep]


class HttpFake(Service):
    """Subclasses add routes in :meth:`routes` and call :meth:`record` then :meth:`scripted`
    (and :meth:`deliver` for a request answered normally).

    ``seen`` holds every request, ``delivered`` those answered normally; with ``keep``,
    only the last ``keep`` of each (a fake that runs for days)."""

    def __init__(self, script: Script | None = None, *, keep: int | None = None) -> None:
        self.script = script if script is not None else Script()
        self.keep = keep
        self.seen: list[Seen] = []
        self.delivered: list[Seen] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        """Add this fake's routes to ``app`` (its own, or a server shared with others)."""
        raise NotImplementedError

    def serve_at(self, port: int) -> None:
        """This fake's routes are served by another server, on 127.0.0.1:``port``."""
        self.port = port

    async def start(self, port: int = 0) -> None:
        """Listen on 127.0.0.1:``port`` (default: a free one; a given one, e.g. to come back
        on the same port after :meth:`stop`)."""
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        self.script.release()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def record(self, request: web.Request) -> Seen:
        seen = Seen(
            request.method, request.path, CIMultiDict(request.headers), await request.read()
        )
        remember(self.seen, seen, self.keep)
        return seen

    def deliver(self, seen: Seen) -> None:
        """``seen`` was answered normally: the provider took it."""
        remember(self.delivered, seen, self.keep)

    async def scripted(self) -> web.Response | None:
        """The scripted answer for this request, or None to answer normally.

        A scripted 2xx without a body also means "answer normally".
        """
        step = self.script.next()
        if isinstance(step, Hang):
            await self.script.hang()
            return web.Response(status=503, text="fake stopped while hanging")
        if step is None or (200 <= step.status < 300 and step.body is None):
            return None
        return respond(step)
