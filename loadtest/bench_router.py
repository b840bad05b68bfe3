"""``make bench-router``: drain rate of the real router against the naive baseline.

A topic prefix of its own is preloaded with notifications (the product's ``Producer``,
values ``Notification.encode()``, keys the UUIDs), the table is emptied, then the stage
runs as its own process (``python -m notifsvc router``) until every row is forwarded.
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


async def _prepare(
    infra_env: dict[str, str], label: str, count: int
) -> tuple[dict[str, str], float]:
    """Own topics, an empty table and ``count`` notifications queued; returns (env, seconds)."""
    env = harness.stage_env(
        infra_env, topic_prefix=f"{harness.run_id()}-{label}.", log_level="WARNING"
    )
    settings = harness.settings_of(env)
    await harness.create_topics(settings)
    await harness.reset_database(settings.dsn)
    started = time.monotonic()
    await harness.preload(settings, topics.outstanding(settings), harness.notifications(count))
    return env, time.monotonic() - started


async def drain_router(infra_env: dict[str, str], count: int, workdir: Path) -> Drain:
    """Preload ``count``, run the real router until all are forwarded, sampling its RSS."""
    result = Drain("router", count)
    env, result.preload_seconds = await _prepare(infra_env, f"router{count}", count)
    print(f"  router: {count:,} queued in {result.preload_seconds:.1f}s; draining", flush=True)
    proc = harness.start_process(["-m", "notifsvc", "router"], env, workdir / f"router-{count}.log")
    sampler = harness.RssSampler(proc.pid)
    sampler.start()
    try:
        row = await _poll(env, _ROUTER_PROGRESS, proc, until=count, budget=60 + count / 500)
    finally:
        await sampler.stop()
        harness.stop_process(proc)
    result.done, result.seconds = row["done"], _span(row)
    first = row["first"].timestamp() if row["first"] is not None else 0.0
    result.rss = [s for s in sampler.samples if s[0] >= first]
    return result


async def drain_naive(
    infra_env: dict[str, str], count: int, seconds: float, workdir: Path
) -> Drain:
    """The baseline on its own preloaded topic: ``count`` messages or ``seconds``, first ends."""
    result = Drain("naive", count)
    env, result.preload_seconds = await _prepare(infra_env, "naive", count)
    print(f"  baseline: {count:,} queued; draining one at a time (<= {seconds:.0f}s)", flush=True)
    args = ["-m", "loadtest.naive_router"]
    proc = harness.start_process(args, env, workdir / "naive-router.log")
    try:
        row = await _poll(env, _NAIVE_PROGRESS, proc, until=count, budget=60 + seconds, cap=seconds)
    finally:
        harness.stop_process(proc)
    result.done, result.seconds = row["done"], _span(row)
    return result


def _span(row: Any) -> float:
    if row["first"] is None or row["last"] is None:
        return float("nan")
    return float((row["last"] - row["first"]).total_seconds())


async def _poll(
    env: dict[str, str],
    sql: str,
    proc: Any,
    *,
    until: int,
    budget: float,
    cap: float | None = None,
) -> Any:
    """Poll progress until ``until`` rows are done, ``cap`` seconds after the first, or fail."""
    dsn = harness.settings_of(env).dsn
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
