"""Webhook providers on 127.0.0.1 that record what they really delivered.

A request counts as delivered only when the sink answered 2xx on a connection that was still
open, i.e. the notificator was alive to read the answer. A request whose sender died while the
sink was working on it (a notificator killed mid-send) is counted as ``aborted`` instead, so
that a notification whose only send was cut off shows up as lost unless it is sent again.

:class:`CallbackSink` receives status callbacks the same way, and checks each request's
Standard Webhooks signature with the spec's own library (``standardwebhooks`` from PyPI).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import orjson
import standardwebhooks
from aiohttp import web

from loadtest.chaos.report import Deliveries
from notifsvc.process import free_port

log = logging.getLogger(__name__)

TURNS = ("500", "429", "hang", "ok")


class CutOff(Protocol):
    """A sink that takes ``delay`` seconds per request, knows how many it is working on
    (``in_flight``: a kill now lands mid-send; ``busy`` is set while any) and counts the
    requests whose sender died meanwhile (``aborted``)."""

    @property
    def delay(self) -> float: ...

    @property
    def in_flight(self) -> int: ...

    @property
    def busy(self) -> asyncio.Event: ...

    @property
    def aborted(self) -> int: ...


@dataclass
class Sink:
    """An aiohttp server at ``url``; ``delay`` seconds of work per request before answering."""

    delay: float = 0.0
    flaky: bool = False
    hang: float = 5.0
    port: int = field(default_factory=free_port)
    delivered: Counter[str] = field(default_factory=Counter)
    first: dict[str, float] = field(default_factory=dict)  # uuid -> time of its first delivery
    aborted: int = 0  # requests whose sender died while the sink worked on them
    in_flight: int = 0  # requests being worked on now
    busy: asyncio.Event = field(default_factory=asyncio.Event)  # set while in_flight > 0
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
        self.in_flight += 1
        self.busy.set()
        try:
            await asyncio.sleep(self.hang if turn == "hang" else self.delay)
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self.busy.clear()
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


#: ``Retry-After`` values no provider should send: non-ASCII digits, exponents, overflowing
#: numbers, dates past the year 9999 or long gone, words, nothing at all.
ODD_RETRY_AFTER = (
    *("1", "0", "-5", "\u00b2", "\u0663", "1e9", "99999999999999999999", "soon", ""),
    *("Sat, 01 Jan 10000 00:00:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT", "Wed, 21 Oct 2015"),
)
#: What the hostile provider does with a request, and how often (weights).
HOSTILE_KINDS = {
    "2xx": 34,
    "429": 12,
    "5xx": 14,
    "4xx": 10,
    "huge": 8,
    "hang": 6,
    "odd": 10,
    "cut": 6,
}
HUGE_BODY = b'{"ok": true, "pad": "' + b"x" * (1 << 20) + b'"}'


@dataclass
class HostileSink:
    """A webhook provider that answers at random (seeded per UUID and try): 2xx, 429 with
    odd ``Retry-After`` values, 5xx, 3xx/4xx, megabyte bodies, odd bodies, hangs longer than
    the send timeout and connections cut without an answer."""

    seed: int
    hang: float = 2.5
    port: int = field(default_factory=free_port)
    answers: Counter[str] = field(default_factory=Counter)
    ok: Counter[str] = field(default_factory=Counter)  # uuid -> 2xx answers given
    _tries: Counter[str] = field(default_factory=Counter)
    _first: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def __aenter__(self) -> HostileSink:
        app = web.Application(client_max_size=1 << 22)
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _hook(self, request: web.Request) -> web.StreamResponse:
        try:
            uid = str(orjson.loads(await request.read())["uuid"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            uid = "?"
        rng = random.Random(f"{self.seed}:{uid}:{self._tries[uid]}")
        self._tries[uid] += 1
        kind = self._kind(rng)
        self.answers[kind] += 1
        if kind == "hang":
            await asyncio.sleep(self.hang)
        if kind == "cut" and request.transport is not None:
            request.transport.abort()  # no answer at all: the connection just drops
        response = _hostile_answer(kind, rng)
        if 200 <= response.status < 300 and kind not in ("hang", "cut"):
            self.ok[uid] += 1
        return response

    def _kind(self, rng: random.Random) -> str:
        """Each kind once first (in a seeded order), so that a short run meets them all;
        then at random, by :data:`HOSTILE_KINDS`' weights."""
        if not self._first:
            self._first = random.Random(self.seed).sample(list(HOSTILE_KINDS), len(HOSTILE_KINDS))
        given = sum(self.answers.values())
        if given < len(self._first):
            return self._first[given]
        return rng.choices(list(HOSTILE_KINDS), weights=list(HOSTILE_KINDS.values()))[0]


def _hostile_answer(kind: str, rng: random.Random) -> web.Response:
    retry_after = {"Retry-After": rng.choice(ODD_RETRY_AFTER)} if rng.random() < 0.8 else {}
    if kind == "429":
        return web.Response(status=429, text="slow down", headers=retry_after)
    if kind == "5xx":
        status = rng.choice((500, 502, 503, 504, 599))
        return web.Response(status=status, text="\u2028broken\x00", headers=retry_after)
    if kind == "4xx":
        status = rng.choice((301, 400, 404, 408, 410, 418))
        return web.Response(status=status, headers={"Location": "http://example.invalid/"})
    if kind == "huge":
        status = rng.choice((200, 400, 500))
        return web.Response(status=status, body=HUGE_BODY, content_type="application/json")
    if kind == "odd":
        body = rng.choice((b"", b"not json", b"\xff\xfe\x00", "\u2028".encode(), b'{"ok":false}'))
        return web.Response(status=rng.choice((200, 202)), body=body)
    status = rng.choice((200, 201, 202, 204))
    return web.Response(status=status, body=None if status == 204 else b'{"ok": true}')


#: The type of the event that ends a notification's delivery successfully.
SENT_EVENT = "notification.sent"


@dataclass(frozen=True, slots=True)
class Callback:
    """One request the callback sink got, and what it answered."""

    webhook_id: str  # "" when the header was missing
    body: bytes
    verified: bool  # its signature verifies with the secret (standardwebhooks)
    status: int  # what the sink answered (or would have, had the sender still been there)
    completed: bool  # answered on a connection that was still open
    at: float  # time.time() of the answer
    uuid: str  # from the body ("" if it has none)
    type: str
    version: int  # data.state_version (-1 if it has none)

    @property
    def received(self) -> bool:
        """Delivered: a 2xx reached a dispatcher that was alive to read it."""
        return self.completed and 200 <= self.status < 300


def _event_of(body: bytes) -> tuple[str, str, int]:
    """The uuid, type and state_version a callback body says it is about."""
    try:
        value = orjson.loads(body)
        data = value["data"]
        version = data["state_version"]
        return str(data["uuid"]), str(value["type"]), version if isinstance(version, int) else -1
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "", "", -1


@dataclass
class CallbackSink:
    """A status-callback receiver that records every request: its ``webhook-id``, body, and
    whether its signature verifies with ``secret``. It works ``delay`` seconds on each, then
    answers 200, or 500 (to send the event through the dispatcher's retry lane): each try of
    an event fails with probability ``fail_ratio`` (seeded by ``seed``, the id and the try),
    at most ``max_failures`` times per event, so that no event exhausts its attempts."""

    secret: str
    seed: int
    delay: float = 0.3
    fail_ratio: float = 0.2
    max_failures: int = 2
    port: int = field(default_factory=free_port)
    requests: list[Callback] = field(default_factory=list)
    aborted: int = 0  # requests whose sender died while the sink worked on them
    in_flight: int = 0  # requests being worked on now
    busy: asyncio.Event = field(default_factory=asyncio.Event)  # set while in_flight > 0
    sent: Counter[str] = field(default_factory=Counter)  # uuid -> notification.sent received
    sent_first: dict[str, float] = field(default_factory=dict)  # uuid -> first one received
    _tries: Counter[str] = field(default_factory=Counter)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/callbacks"

    async def __aenter__(self) -> CallbackSink:
        app = web.Application()
        app.router.add_post("/callbacks", self._hook)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def deliveries(self) -> Deliveries:
        """Per notification: how often its ``notification.sent`` event was received."""
        return Deliveries(self.sent.copy(), dict(self.sent_first))

    def _verifies(self, body: bytes, sent_headers: Mapping[str, str]) -> bool:
        try:
            standardwebhooks.Webhook(self.secret).verify(body, dict(sent_headers), json_parse=False)
        except standardwebhooks.WebhookVerificationError:
            return False
        return True

    def _fails(self, webhook_id: str) -> bool:
        tries = self._tries[webhook_id]
        self._tries[webhook_id] += 1
        rng = random.Random(f"{self.seed}:{webhook_id}:{tries}")
        return tries < self.max_failures and rng.random() < self.fail_ratio

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        webhook_id = request.headers.get("webhook-id", "")
        verified = self._verifies(body, request.headers)
        status = 500 if self._fails(webhook_id) else 200
        self.in_flight += 1
        self.busy.set()
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self.busy.clear()
        completed = request.transport is not None and not request.transport.is_closing()
        uid, kind, version = _event_of(body)
        call = Callback(
            webhook_id, body, verified, status, completed, time.time(), uid, kind, version
        )
        self.requests.append(call)
        if not completed:
            self.aborted += 1
            return web.Response(status=503)
        if call.received and kind == SENT_EVENT:
            self.sent[uid] += 1
            self.sent_first.setdefault(uid, call.at)
        if status == 500:
            return web.Response(status=500, text="chaos: callback receiver error")
        return web.json_response({"ok": True})
