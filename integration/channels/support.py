"""Helpers for running one channel directly against its fake provider."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

from notifsvc.channels import AnyChannel
from notifsvc.model import Notification

C = TypeVar("C", bound=AnyChannel)

#: Small enough that a hanging provider costs a test well under a second.
SHORT_TIMEOUT_MS = 300


@asynccontextmanager
async def started(channel: C) -> AsyncIterator[C]:
    await channel.start()
    try:
        yield channel
    finally:
        await channel.stop()


def note(channel: str, to: str, txt: str = "disk almost full", **kw: object) -> Notification:
    fields: dict[str, object] = {"accepted_at": 1_700_000_000.0}
    fields.update(kw)
    return Notification(uuid.uuid4(), channel, to, txt, **fields)  # type: ignore[arg-type]


#: Where a test's :class:`Clock` starts (unix seconds).
START = 1_800_000_000.0


class Clock:
    """Seconds (wall or monotonic, as the code under test wants) that move only when a
    test moves them."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
