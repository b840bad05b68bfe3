"""A steady, bounded load on the receiver: a fixed rate of posts, each retried a few times."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

log = logging.getLogger(__name__)

Body = Callable[[str], dict[str, object]]


def log_body(uid: str) -> dict[str, object]:
    return {"uuid": uid, "destination": "log", "to": "chaos", "txt": f"chaos {uid}"}


def webhook_body(url: str) -> Body:
    def body(uid: str) -> dict[str, object]:
        return {"uuid": uid, "destination": "webhook", "to": url, "txt": f"chaos {uid}"}

    return body


def with_callback(body: Body, url: str) -> Body:
    """``body`` with a ``callback_url``: every notification asks for status callbacks."""

    def with_url(uid: str) -> dict[str, object]:
        return body(uid) | {"callback_url": url}

    return with_url


@dataclass(frozen=True, slots=True)
class Attempt:
    uuid: str
    started: float  # time.time()
    finished: float
    status: int  # 0: no HTTP answer (connection refused, reset, timed out)


@dataclass
class Load:
    """Posts ``rate`` new notifications per second until stopped or ``limit`` were posted.

    A post that does not get 202 is retried with the same UUID (as a client should) up to
    ``retries`` times, ``retry_wait`` seconds apart.
    """

    base_url: str
    body: Body
    rate: float
    limit: int
    retries: int = 3
    retry_wait: float = 0.5
    attempts: list[Attempt] = field(default_factory=list)
    accepted: dict[str, float] = field(default_factory=dict)  # uuid -> time of its first 202
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop posting new notifications and wait for those under way."""
        self._stopping.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=10)
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(self.base_url, timeout=timeout, connector=connector) as s:
            posts: set[asyncio.Task[None]] = set()
            try:
                await self._schedule(s, posts)
                if posts:
                    await asyncio.gather(*posts)
            finally:
                for task in posts:
                    task.cancel()

    async def _schedule(
        self, session: aiohttp.ClientSession, posts: set[asyncio.Task[None]]
    ) -> None:
        began = time.monotonic()
        for i in range(self.limit):
            delay = began + i / self.rate - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return
            task = asyncio.create_task(self._post(session, str(uuid.uuid4())))
            posts.add(task)
            task.add_done_callback(posts.discard)

    async def _post(self, session: aiohttp.ClientSession, uid: str) -> None:
        payload = self.body(uid)
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.retry_wait)
            started = time.time()
            status = await _send(session, payload)
            self.attempts.append(Attempt(uid, started, time.time(), status))
            if status == 202:
                self.accepted.setdefault(uid, time.time())
                return

    async def abort(self) -> None:
        """Stop at once, posts under way included; safe to call after :meth:`stop`."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def statuses(self) -> Counter[int]:
        return Counter(a.status for a in self.attempts)


async def _send(session: aiohttp.ClientSession, payload: dict[str, object]) -> int:
    try:
        async with session.post("/notification", json=payload) as resp:
            await resp.read()
            return resp.status
    except (aiohttp.ClientError, TimeoutError):
        return 0
