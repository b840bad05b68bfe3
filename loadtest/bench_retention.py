"""``make bench-retention``: how fast one router replica's retention deletes a backlog, and
what each deleted notification costs.

One embedded PostgreSQL, a fresh migrated database per round holding ``--rows`` delivered
notifications with their attempts (:mod:`loadtest.prefill`), and ``--fresh`` more received
since the cutoff, which must stay. One :class:`notifsvc.retention.Retention` pass (unpaced,
pages of ``--batch``, owning every slice) runs with its clock 31 days ahead, so that the
prefilled rows are past the default retention. It prints rows deleted per second, and the
CPU milliseconds per deleted row of PostgreSQL (postmaster and backends) and of this
process (the duty's share of a router). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import time
import uuid

from loadtest import bench_store, harness
from notifsvc import config
from notifsvc.db.store import Store
from notifsvc.dev.postgres import EmbeddedPostgres
from notifsvc.model import Notification
from notifsvc.retention import DAY, Retention


async def _database(pg: EmbeddedPostgres, rows: int, fresh: int) -> str:
    """:func:`loadtest.bench_store.database` with ``rows`` delivered a day ago, and
    ``fresh`` rows received now (within any retention, whatever the pass's clock says)."""
    dsn = await bench_store.database(pg, "", rows)
    store = Store(dsn)
    await store.start()
    try:
        await store.insert([Notification(uuid.uuid4(), "log", "ops", "new") for _ in range(fresh)])
    finally:
        await store.stop()
    return dsn


async def one_round(pg: EmbeddedPostgres, args: argparse.Namespace) -> dict[str, float]:
    dsn = await _database(pg, args.rows, args.fresh)
    settings = dataclasses.replace(
        config.load({"NOTIFSVC_DATABASE_URL": dsn}), batch_size=args.batch, retention_rate=0.0
    )
    store = Store(dsn)
    await store.start()

    async def one() -> int:
        return 1

    ahead = time.time() + 31 * DAY
    duty = Retention(settings, store, owns=lambda n: True, slices=one, clock=lambda: ahead)
    try:
        server, own = harness.cpu_seconds([pg.pid]), time.process_time()
        began = time.monotonic()
        deleted = await duty.run_pass()
        wall = time.monotonic() - began
        server = harness.cpu_seconds([pg.pid]) - server
        own = time.process_time() - own  # this process alone (the server is its child)
        left = await store.counts_by_state()
    finally:
        await store.stop()
    if deleted != args.rows or sum(left.get("log", {}).values()) != args.fresh:
        raise RuntimeError(f"deleted {deleted} of {args.rows}; left {left}")
    return {
        "rows/s": deleted / wall,
        "postgres ms/row": 1000 * server / deleted,
        "duty ms/row": 1000 * own / deleted,
    }


async def run(args: argparse.Namespace) -> list[dict[str, float]]:
    pg = EmbeddedPostgres()
    await asyncio.to_thread(pg.start)
    rounds = []
    try:
        for i in range(args.rounds):
            one = await one_round(pg, args)
            rounds.append(one)
            figures = ", ".join(f"{k} {v:,.4f}" for k, v in one.items())
            print(f"round {i + 1}: {figures}", flush=True)
    finally:
        await asyncio.to_thread(pg.close)
    return rounds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench_retention", description=__doc__)
    p.add_argument("--rows", type=int, default=200_000, help="rows past retention")
    p.add_argument("--fresh", type=int, default=10_000, help="rows within it (kept)")
    p.add_argument("--batch", type=int, default=1_000, help="rows per page")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    rounds = asyncio.run(run(args))
    print(f"\nretention, one replica, pages of {args.batch}, median of {args.rounds} rounds:")
    for key in rounds[0]:
        print(f"  {key}: {statistics.median(r[key] for r in rounds):,.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
