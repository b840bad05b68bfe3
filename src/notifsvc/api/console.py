"""The operator's web console: a static shell at ``/console`` and its ``GET /stats`` figures.

The shell (HTML, one stylesheet, JavaScript modules from :mod:`notifsvc.console`) holds no
data, so it is public; every figure it shows comes from the protected JSON routes, called
by the page with the operator's API key. The files are served from a fixed list (nothing
else can be named, so no path can reach outside it) under a Content-Security-Policy that
allows scripts and styles from this origin only: the page inserts every field as text, and
even a mistake there could not run an inline script.

``GET /stats`` is what the console polls (every two seconds): notifications by channel and
state and sends of the last minute from the database, the DLQ's size and consumer lag from
the broker, computed as ``notifsvc status`` computes them. Either part is ``null`` when its
source fails or is slow, never a 500: the console keeps drawing what it has. One
collection is shared by every request within :attr:`Stats.max_age` (a second), and the
broker is read at most every :data:`BROKER_EVERY` seconds, so many open consoles cost the
database and the broker no more than one. (The counts are one ``GROUP BY`` over the table,
as in ``notifsvc status``.)
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from aiohttp import web

from notifsvc import errors, status
from notifsvc.api.context import SETTINGS, STORE
from notifsvc.api.plumbing import add_route, json_response, problem
from notifsvc.api.validation import Validator
from notifsvc.config import Settings
from notifsvc.db.store import Store
from notifsvc.model import State
from notifsvc.openapi import answer_json, answer_problems

log = logging.getLogger(__name__)

#: The console's files and their media types: the only names ``/console/{asset}`` serves.
ASSETS = {
    "index.html": "text/html",
    "console.css": "text/css",
    "console.js": "text/javascript",
    "api.js": "text/javascript",
    "charts.js": "text/javascript",
    "dom.js": "text/javascript",
}
INDEX = "index.html"
#: Scripts, styles, images and requests from this origin only; no inline script or style,
#: no plugins, no framing, no <base> rewriting.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'none'"
)
#: Revalidated on every load (an upgraded receiver serves its own console at once); a 304
#: answers an unchanged file.
CACHE_CONTROL = "no-cache"
#: Seconds a ``/stats`` collection is shared by the requests that follow it.
STATS_MAX_AGE = 1.0
#: Seconds a request waits for the database part.
DATABASE_TIMEOUT = 3.0
#: The broker part (see :class:`BrokerFigures`): read at most every BROKER_EVERY seconds,
#: served without waiting while younger than BROKER_FRESH, waited for at most
#: BROKER_TIMEOUT seconds otherwise.
BROKER_EVERY = 5.0
BROKER_FRESH = 15.0
BROKER_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def _load_assets() -> dict[str, Asset]:
    """The console's files, read once (at start-up, off the event loop)."""
    folder = resources.files("notifsvc") / "console"
    out: dict[str, Asset] = {}
    for name, kind in ASSETS.items():
        body = (folder / name).read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        out[name] = Asset(body, kind, etag)
    return out


#: The broker part: DLQ size and lag per consumer group (None: the broker did not answer).
BrokerPart = tuple[int | None, dict[str, int] | None]


class BrokerFigures:
    """The broker part of ``/stats``. Reading it takes blocking admin calls (about a second
    for every consumer group of every channel's lanes), so it runs in a thread, one read at a
    time and at most every ``every`` seconds. A request gets the last figures at once while
    they are younger than ``fresh`` seconds; otherwise it waits for the read under way, at
    most ``timeout`` seconds, and gets ``None`` parts after that."""

    def __init__(
        self,
        settings: Settings,
        read: Callable[[Settings], BrokerPart],
        *,
        clock: Callable[[], float] = time.monotonic,
        every: float = BROKER_EVERY,
        fresh: float = BROKER_FRESH,
        timeout: float = BROKER_TIMEOUT,
    ) -> None:
        self.settings = settings
        self.every, self.fresh, self.timeout = every, fresh, timeout
        self._read = read
        self._clock = clock
        self._pending: asyncio.Future[BrokerPart] | None = None
        self._asked: float | None = None
        self._kept: BrokerPart | None = None
        self._kept_at = 0.0

    async def get(self) -> BrokerPart:
        now = self._clock()
        idle = self._pending is None or self._pending.done()
        if idle and (self._asked is None or now - self._asked >= self.every):
            self._asked = now
            loop = asyncio.get_running_loop()
            self._pending = loop.run_in_executor(None, self._read, self.settings)
            self._pending.add_done_callback(self._keep)
        if self._kept is not None and now - self._kept_at < self.fresh:
            return self._kept
        assert self._pending is not None
        try:
            return await asyncio.wait_for(asyncio.shield(self._pending), self.timeout)
        except TimeoutError:
            log.warning("stats: the broker part took over %.1f s", self.timeout)
            return None, None

    def _keep(self, done: asyncio.Future[BrokerPart]) -> None:
        failed = done.cancelled() or done.exception() is not None
        self._kept = (None, None) if failed else done.result()
        self._kept_at = self._clock()


class Stats:
    """``GET /stats`` figures: the database part and the broker part (see
    :class:`BrokerFigures`), each ``None`` when its source fails or is slow. One collection
    serves every request within ``max_age`` seconds."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        max_age: float = STATS_MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
        broker: BrokerFigures | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.max_age = max_age
        self._clock = clock
        self.broker = broker or BrokerFigures(settings, read_broker, clock=clock)
        self._taken = 0.0
        self._latest: asyncio.Task[dict[str, Any]] | None = None

    async def read(self) -> dict[str, Any]:
        """The latest figures, collected now unless a collection younger than ``max_age``
        exists (or is under way)."""
        latest = self._latest
        if latest is None or (latest.done() and self._clock() - self._taken >= self.max_age):
            self._taken = self._clock()
            latest = self._latest = asyncio.create_task(self._collect())
        return await asyncio.shield(latest)

    async def stop(self) -> None:
        """Cancel a collection under way (the thread of a broker read ends on its own)."""
        latest, self._latest = self._latest, None
        if latest is not None and not latest.done():
            latest.cancel()

    async def _collect(self) -> dict[str, Any]:
        (counts, sent), (dlq, lag) = await asyncio.gather(self._database(), self.broker.get())
        at = datetime.now(UTC).isoformat()
        messages = None if dlq is None else {"messages": dlq}
        return {"counts": counts, "sent_last_minute": sent, "dlq": messages, "lag": lag, "at": at}

    async def _database(self) -> tuple[dict[str, dict[str, int]] | None, dict[str, int] | None]:
        try:
            async with asyncio.timeout(DATABASE_TIMEOUT):
                by_state = await self.store.counts_by_state()
                sent = await self.store.sent_last_minute()
        except (errors.PipelineError, TimeoutError) as exc:
            log.warning("stats: the database part is unavailable: %r", exc)
            return None, None
        counts = {c: {s.value: by.get(s, 0) for s in State} for c, by in sorted(by_state.items())}
        return counts, sent


def read_broker(settings: Settings) -> BrokerPart:
    """The DLQ's size and the lag of each consumer group that has read anything (or has
    something to read), as ``notifsvc status`` reads them (blocking); None where it failed."""
    snap = status.Snapshot()
    status.read_kafka(settings, snap)  # the same figures, read the same way
    if snap.problems:
        log.warning("stats: the broker part is unavailable: %s", "; ".join(snap.problems))
        return snap.dlq, None
    # A committed offset past the end read (transaction markers, a broker's view of the
    # last stable offset) is no backlog: never below zero.
    lag = {
        group: sum(max(p.lag, 0) for p in parts)
        for group, parts in snap.lag.items()
        if any(p.committed is not None or p.lag for p in parts)
    }
    return snap.dlq, lag


STATS = web.AppKey("console_stats", Stats)
FILES = web.AppKey("console_files", dict[str, Asset])


async def console_page(request: web.Request) -> web.Response:
    return _serve(request, INDEX)


async def console_asset(request: web.Request) -> web.Response:
    return _serve(request, request.match_info["asset"] or INDEX)


def _serve(request: web.Request, name: str) -> web.Response:
    asset = request.app[FILES].get(name)
    if asset is None:
        return problem(404, "Not Found", f"the console has no file {name!r}")
    headers = {
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cache-Control": CACHE_CONTROL,
        "ETag": asset.etag,
    }
    if asset.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(
        body=asset.body, content_type=asset.content_type, charset="utf-8", headers=headers
    )


async def get_stats(request: web.Request) -> web.Response:
    figures = await request.app[STATS].read()
    return json_response(200, figures, headers={"Cache-Control": "no-store"})


async def _start(app: web.Application) -> None:
    app[FILES] = await asyncio.to_thread(_load_assets)


async def _stop(app: web.Application) -> None:
    await app[STATS].stop()


def add_routes(app: web.Application) -> None:
    """Register this module's routes on the receiver's application."""
    app[STATS] = Stats(app[SETTINGS], app[STORE])
    add_route(app, "GET", "/console", console_page)
    # {asset} may be empty ("/console/"): the page itself.
    add_route(app, "GET", "/console/{asset:[^/]*}", console_asset)
    add_route(app, "GET", "/stats", get_stats)
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)


def _stats_schema() -> dict[str, Any]:
    count = {"type": "integer", "minimum": 0}
    states = {"type": "object", "properties": {s.value: count for s in State}}
    nullable = {"type": ["object", "null"]}
    return {
        "type": "object",
        "required": ["counts", "sent_last_minute", "dlq", "lag", "at"],
        "properties": {
            "counts": nullable
            | {
                "additionalProperties": states,
                "description": "Notifications by channel and state; null when the database "
                "did not answer.",
            },
            "sent_last_minute": nullable
            | {"additionalProperties": count, "description": "Sends per channel, last 60 s."},
            "dlq": nullable
            | {
                "properties": {"messages": count},
                "description": "Messages in the dead-letter topic; null when the broker "
                "did not answer.",
            },
            "lag": nullable
            | {
                "additionalProperties": count,
                "description": "Messages not yet consumed, per consumer group that has read "
                "or has something to read; null when the broker did not answer.",
            },
            "at": {"type": "string", "format": "date-time"},
        },
    }


def openapi(
    settings: Settings, validator: Validator, errors: dict[str, tuple[str, str]]
) -> dict[str, Any]:
    """This module's paths in the receiver's OpenAPI document (see ``openapi.PathsOf``)."""
    keyed = [errors[k] for k in ("401", "429") if k in errors]
    html = {"200": {"description": "the console", "content": {"text/html": {"schema": {}}}}}
    stats = {
        "summary": "Live figures for the console: counts by channel and state, sends of the "
        "last minute, DLQ size, consumer lag (a part the database or broker could not give "
        "is null)",
        "responses": answer_json("200", "figures", _stats_schema()) | answer_problems(*keyed),
    }
    return {
        "/console": {"get": {"summary": "The operator's web console", "responses": html}},
        "/stats": {"get": stats},
    }
