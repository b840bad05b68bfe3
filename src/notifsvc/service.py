"""Running a long-lived stage: uvloop, signal handling, start/stop around a run loop."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Protocol

log = logging.getLogger(__name__)


class Stage(Protocol):
    async def start(self) -> None: ...
    async def run(self, stopping: asyncio.Event) -> None: ...
    async def stop(self) -> None: ...


async def run_stage(stage: Stage, stopping: asyncio.Event) -> None:
    """Start ``stage``, run it until ``stopping`` is set, and always stop it."""
    try:
        await stage.start()
        settle_heap()
        await stage.run(stopping)
    finally:
        await stage.stop()


def settle_heap() -> None:
    """Collect start-up's garbage, then freeze what is left (modules, clients, settings: it
    lives as long as the process) out of the cyclic collector's reach.

    The batch stages keep hundreds of objects alive per batch, which get promoted and soon
    trigger full collections; each one walked the whole start-up heap again. Freezing it cut
    the router's and the notificator's CPU per notification by about 15 %, the receiver's
    on arrays of 500 by 20 % (``make bench-cost``; docs/performance.md). Process-wide, like
    the collector; thresholds stay CPython's (raising them added nothing measurable)."""
    gc.collect()
    gc.freeze()


def serve(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stopping)`` on uvloop; SIGTERM and SIGINT set ``stopping``."""

    async def wrapper() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _request_stop, stopping, sig)
        await main(stopping)

    try:
        import uvloop  # noqa: PLC0415 - optional on platforms without it

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(wrapper())


def _request_stop(stopping: asyncio.Event, sig: signal.Signals) -> None:
    if not stopping.is_set():
        log.info("received %s: finishing the current batch, then stopping", sig.name)
    stopping.set()
