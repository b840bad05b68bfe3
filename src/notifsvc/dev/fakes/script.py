"""Scripted answers shared by every fake provider: fail, throttle or hang on demand.

A :class:`Script` is a queue of steps. Each request (or SMTP ``DATA``) the fake receives
takes the next step; once the queue is empty the fake behaves normally. ``Script(500, 500)``
fails twice and then succeeds; ``Script(HANG)`` never answers the first request (until the
fake stops).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final


@dataclass(frozen=True)
class Reply:
    """An answer to give instead of the normal one.

    ``status`` is an HTTP status or an SMTP reply code; ``body`` is a JSON-able value or a
    string (for SMTP: the reply text); ``headers`` are HTTP response headers.
    """

    status: int
    body: object = None
    headers: Mapping[str, str] = field(default_factory=dict)


class Hang:
    """Never answer (until the fake stops): the client has to time out."""

    def __repr__(self) -> str:
        return "HANG"


HANG: Final = Hang()
Step = Reply | Hang


class Script:
    def __init__(self, *steps: Step | int) -> None:
        self._steps: deque[Step] = deque()
        self._released = asyncio.Event()
        self.push(*steps)

    def push(self, *steps: Step | int) -> None:
        """Append steps; a bare int is ``Reply(status)``."""
        self._steps.extend(Reply(s) if isinstance(s, int) else s for s in steps)

    def next(self) -> Step | None:
        """The step for the request being handled, or None to behave normally."""
        return self._steps.popleft() if self._steps else None

    @property
    def pending(self) -> int:
        return len(self._steps)

    async def hang(self) -> None:
        """Wait until :meth:`release` (the fake stopping)."""
        await self._released.wait()

    def release(self) -> None:
        self._released.set()
