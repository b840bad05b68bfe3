"""One scenario's running pipeline: its lane, its stage processes, its load and its sink."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

from loadtest.chaos.infra import LANE_SETTINGS, ChaosInfra, Lane
from loadtest.chaos.load import Body, Load
from loadtest.chaos.procs import Fleet
from loadtest.chaos.report import Deliveries, Result, log_deliveries, recovery
from loadtest.chaos.sinks import Sink

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Profile:
    """How hard a run pushes: the full set (``make chaos``) or the shortened CI set."""

    kills: int  # SIGKILLs of the router, and of a notificator
    rate: float  # posts per second
    db_outage: float  # seconds the database is down
    broker_outage: float  # seconds the broker is down
    sigterm_rounds: int  # times every stage is stopped with SIGTERM
    poison: int  # garbage messages per topic
    hostile: int  # hostile notifications posted through the API
    phase: float  # seconds of plain load before and after the faults
    drain: float  # seconds allowed for delivery after the load stops


FULL = Profile(
    kills=10,
    rate=40,
    db_outage=20,
    broker_outage=8,
    sigterm_rounds=3,
    poison=30,
    hostile=400,
    phase=4,
    drain=120,
)
SHORT = Profile(
    kills=3,
    rate=20,
    db_outage=5,
    broker_outage=3,
    sigterm_rounds=1,
    poison=8,
    hostile=80,
    phase=2,
    drain=45,
)


@dataclass(frozen=True)
class Context:
    infra: ChaosInfra
    profile: Profile
    rng: random.Random


async def until(check: Callable[[], Awaitable[bool]], *, within: float) -> bool:
    """Poll ``check`` until it is true (True) or ``within`` seconds passed (False)."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.25)
    return True


class Session:
    def __init__(self, ctx: Context, lane: Lane, sink: Sink | None) -> None:
        self.ctx = ctx
        self.lane = lane
        self.fleet = Fleet(lane)
        self.sink = sink
        self.load: Load | None = None

    def seen(self) -> Deliveries:
        if self.sink is not None:
            return Deliveries(self.sink.delivered.copy(), dict(self.sink.first))
        return log_deliveries(self.lane.log_channel)

    def start_load(self, body: Body, *, rate: float | None = None, retries: int = 3) -> Load:
        rate = rate or self.ctx.profile.rate
        limit = int(rate * 600)  # bounded in count as well as in time
        self.load = Load(self.lane.base_url, body, rate, limit, retries=retries)
        self.load.start()
        return self.load

    async def pause(self, seconds: float | None = None) -> None:
        """Let the load run on (fault timing, not synchronisation)."""
        await asyncio.sleep(self.ctx.profile.phase if seconds is None else seconds)

    async def drain(
        self, accepted: Mapping[str, float], seen: Callable[[], Deliveries] | None = None
    ) -> Deliveries:
        """Wait until every accepted UUID was delivered (by ``seen``, default :meth:`seen`),
        or the drain time ran out."""
        look = seen or self.seen

        async def done() -> bool:
            counts = look().counts
            return all(counts[u] for u in accepted)

        await until(done, within=self.ctx.profile.drain)
        return look()

    async def finish(
        self,
        result: Result,
        healed: float | None,
        accepted: Mapping[str, float] | None = None,
        *,
        seen: Callable[[], Deliveries] | None = None,
    ) -> None:
        """Stop the load, wait for deliveries, and judge them (and the stages' health).

        ``seen`` says what counts as delivered when the sink is not all (default
        :meth:`seen`)."""
        assert self.load is not None
        await self.load.stop()
        wanted = self.load.accepted if accepted is None else accepted
        seen_ = await self.drain(wanted, seen)
        result.judge(wanted, seen_)
        if healed is not None:
            result.recover_s = recovery(wanted, seen_, healed)
        crashes = self.fleet.crashes()
        result.check(not crashes, f"stages exited by themselves: {crashes}")
        result.notes.append(f"HTTP statuses: {dict(sorted(self.load.statuses().items()))}")


@asynccontextmanager
async def session(
    ctx: Context, name: str, *, sink: Sink | None = None, **settings: str
) -> AsyncIterator[Session]:
    """A lane with its sink; every stage process is stopped at the end, however it ends."""
    folder = ctx.infra.state_dir / name
    lane = await ctx.infra.lane(name, folder, **(LANE_SETTINGS | settings))
    s = Session(ctx, lane, sink)
    if sink is not None:
        await sink.start()
    try:
        yield s
    finally:
        if s.load is not None:
            await s.load.abort()
        await asyncio.to_thread(s.fleet.stop)
        if sink is not None:
            await sink.stop()
