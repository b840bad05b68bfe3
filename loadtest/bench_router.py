"""``make bench-router``: drain rate of the real router against the naive baseline.

A lane of its own (topic prefix and an empty database, :meth:`notifsvc.dev.infra.Infra.lane`)
is preloaded with notifications (the product's ``Producer``, values ``Notification.encode()``,
keys the UUIDs), then the stage runs as its own process (``python -m notifsvc router``) until
every row is forwarded.
The rate is measured on the database's own clock: rows / (last ``forwarded_at`` - first
``received_at``), so the consumer group's join time is left out and the first batch's
full cost is in. The baseline (``loadtest/naive_router.py``) is measured the same way on
its first ``BENCH_BASELINE_COUNT`` messages or ``BENCH_BASELINE_SECONDS``, whichever ends
first, from its own preloaded topic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest import harness, stats
from notifsvc import topics
from notifsvc.dev.infra import Lane, LocalInfra

log = logging.getLogger(__name__)

_ROUTER_PROGRESS = """
SELECT count(*) FILTER (WHERE state = 'forwarded') AS done,
       min(received_at) AS first, max(forwarded_at) AS last
FROM notifications
"""
_NAIVE_PROGRESS = """
SELECT count(*) AS done, min(received_at) AS first, max(received_at) AS last FROM notifications
"""


@dataclass
class Drain:
    """One measured drain of a preloaded backlog."""

    stage: str
    queued: int
    done: int = 0
    seconds: float = float("nan")  # first stored to last forwarded, database clock
    preload_seconds: float = 0.0
    rss: list[tuple[float, int]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        if self.stage == "naive":  # n rows span n - 1 gaps
            return stats.rate(self.done - 1, self.seconds)
        return stats.rate(self.done, self.seconds)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "stage": self.stage,
            "queued": self.queued,
            "done": self.done,
            "seconds": self.seconds,
            "rate_per_s": self.rate,
            "preload_seconds": self.preload_seconds,
        }
        if len(self.rss) >= 3:
            g = stats.growth([r for _, r in self.rss])
            out["rss_mib"] = {"start": g.first / 2**20, "end": g.last / 2**20}
            out["rss_mib"] |= {"peak": g.peak / 2**20, "relative": g.relative, "flat": g.flat}
        return out


async def _prepare(infra: LocalInfra, label: str, count: int, workdir: Path) -> tuple[Lane, float]:
    """A lane of its own (topics, an empty database), ``count`` notifications queued;
    returns (lane, seconds of preloading)."""
    lane = await infra.lane(label, workdir / label, log_level="WARNING")
    started = time.monotonic()
    settings = lane.settings
    await harness.preload(settings, topics.outstanding(settings), harness.notifications(count))
    return lane, time.monotonic() - started


async def drain_router(infra: LocalInfra, count: int, workdir: Path) -> Drain:
    """Preload ``count``, run the real router until all are forwarded, sampling its RSS."""
    result = Drain("router", count)
    lane, result.preload_seconds = await _prepare(infra, f"router{count}", count, workdir)
    print(f"  router: {count:,} queued in {result.preload_seconds:.1f}s; draining", flush=True)
    env, log_path = harness.stage_env(lane.settings), workdir / f"router-{count}.log"
    proc = harness.start_process(["-m", "notifsvc", "router"], env, log_path)
    sampler = harness.RssSampler(proc.pid)
    sampler.start()
    try:
        row = await _poll(lane, _ROUTER_PROGRESS, proc, until=count, budget=60 + count / 500)
    finally:
        await sampler.stop()
        harness.stop_process(proc)
        await infra.drop(lane)
    result.done, result.seconds = row["done"], _span(row)
    first = row["first"].timestamp() if row["first"] is not None else 0.0
    result.rss = [s for s in sampler.samples if s[0] >= first]
    return result


async def drain_naive(infra: LocalInfra, count: int, seconds: float, workdir: Path) -> Drain:
    """The baseline on its own preloaded topic: ``count`` messages or ``seconds``, first ends."""
    result = Drain("naive", count)
    lane, result.preload_seconds = await _prepare(infra, "naive", count, workdir)
    print(f"  baseline: {count:,} queued; draining one at a time (<= {seconds:.0f}s)", flush=True)
    args, env = ["-m", "loadtest.naive_router"], harness.stage_env(lane.settings)
    proc = harness.start_process(args, env, workdir / "naive-router.log")
    try:
        budget = 60 + seconds
        row = await _poll(lane, _NAIVE_PROGRESS, proc, until=count, budget=budget, cap=seconds)
    finally:
        harness.stop_process(proc)
        await infra.drop(lane)
    result.done, result.seconds = row["done"], _span(row)
    return result


def _span(row: Any) -> float:
    if row["first"] is None or row["last"] is None:
        return float("nan")
    return float((row["last"] - row["first"]).total_seconds())


async def _poll(
    lane: Lane,
    sql: str,
    proc: Any,
    *,
    until: int,
    budget: float,
    cap: float | None = None,
) -> Any:
    """Poll progress until ``until`` rows are done, ``cap`` seconds after the first, or fail."""
    dsn = lane.settings.dsn
    deadline = time.monotonic() + budget
    began: float | None = None
    last_print = time.monotonic()
    while True:
        row = await harness.fetch_one(dsn, sql)
        now = time.monotonic()
        if row["done"] and began is None:
            began = now
        if row["done"] >= until or (cap is not None and began is not None and now - began >= cap):
            return row
        if proc.poll() is not None:
            raise harness.Deadline(f"the stage exited with {proc.returncode} at {row['done']} rows")
        if now > deadline:
            raise harness.Deadline(f"only {row['done']:,} of {until:,} rows done in {budget:.0f}s")
        if now - last_print >= 5:
            last_print = now
            print(f"    ... {row['done']:,}/{until:,}", flush=True)
        await asyncio.sleep(2.0 if until > 50_000 else 0.25)
