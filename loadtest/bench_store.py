"""``make bench-store``: PostgreSQL's CPU per notification for the writes of a delivery.

One embedded PostgreSQL (:class:`notifsvc.dev.postgres.EmbeddedPostgres`), a fresh database
per round, migrated as the stages migrate it. Each round runs the store's calls of one
delivery over ``--count`` notifications in batches of ``--batch``, one after the other as
the router and a notificator make them: insert, mark forwarded, claim, record the outcome
with its attempt; then retention's delete of the batch, as a router does once the rows are
past ``NOTIFSVC_RETENTION_DAYS`` (here the cutoff is in the future, and its keyset starts
at the round's own rows). It prints the database server's CPU (postmaster and backends) per
notification: a delivery's four calls in all and each call's share, and the delete apart.

``--variant FILE`` runs the rounds again with the SQL of FILE applied after the migrations
(e.g. dropping or adding an index; ``loadtest/sql/``; ``A+B``: the files in that order),
interleaved with the plain rounds so that both see the same machine. ``--prefill N`` writes
N delivered notifications into each round's table first (:mod:`loadtest.prefill`): a
deployment's table is not empty. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from loadtest import harness, prefill
from notifsvc.attempts import Attempt, AttemptOutcome
from notifsvc.db import migrate
from notifsvc.db.store import Outcome, Store
from notifsvc.dev.postgres import EmbeddedPostgres
from notifsvc.model import Notification, State

CHANNELS = ("log", "email", "sms", "webhook", "slack")
CALLS = ("insert", "forward", "claim", "record")
#: Retention's delete, reported apart from a delivery's calls.
RETAIN = "retain"


async def database(pg: EmbeddedPostgres, extra: str, rows: int) -> str:
    """A fresh database, migrated, then ``extra`` applied and ``rows`` prefilled; its DSN."""
    name = f"bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(pg.dsn())
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    await migrate.migrate(pg.dsn(name))
    conn = await asyncpg.connect(pg.dsn(name))
    try:
        for statement in migrate.split_statements(extra):
            await conn.execute(statement)
        await prefill.prefill(conn, rows)
    finally:
        await conn.close()
    return pg.dsn(name)


class Retained:
    """Retention's keyset over the round's own rows (the prefilled ones come before)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.cursor = (datetime.now(UTC) - timedelta(minutes=1), uuid.UUID(int=0))

    async def warm(self) -> None:
        """Prepare the statement (no row of the round is sent yet: nothing goes)."""
        await self.store.delete_finished(
            State.SENT, before=datetime.now(UTC), after=self.cursor, slices=1, owned=[0], limit=1
        )

    async def delete(self, size: int) -> None:
        future = datetime.now(UTC) + timedelta(days=1)
        page = await self.store.delete_finished(
            State.SENT, before=future, after=self.cursor, slices=1, owned=[0], limit=size
        )
        if page.rows != size or page.last is None:
            raise RuntimeError(f"retention deleted {page.rows} of a batch of {size}")
        self.cursor = page.last


async def _batch(
    pid: int, store: Store, retained: Retained, batch: list[Notification]
) -> list[float]:
    """The calls of one batch, then its deletion; the server's CPU seconds of each."""
    uuids = [n.uuid for n in batch]
    now = time.time()
    sent = [Attempt(u, 1, 0, AttemptOutcome.SENT, now, now, "log") for u in uuids]
    calls = (
        lambda: store.insert(batch),
        lambda: store.mark_forwarded(uuids),
        lambda: store.claim(uuids),
        lambda: store.record([Outcome(u, State.SENT, 1, None) for u in uuids], attempts=sent),
        lambda: retained.delete(len(batch)),
    )
    spent = []
    for call in calls:
        before = harness.cpu_seconds([pid])
        await call()
        spent.append(harness.cpu_seconds([pid]) - before)
    return spent


async def one_round(pg: EmbeddedPostgres, extra: str, args: argparse.Namespace) -> dict[str, float]:
    """ms of CPU per notification, in all and per call."""
    count, size = args.count, args.batch
    store = Store(await database(pg, extra, args.prefill))
    await store.start()
    try:
        notes = [
            Notification(uuid.uuid4(), CHANNELS[i % 5], "someone@example.com", "hello " * 10)
            for i in range(count + size)
        ]
        await store.insert(notes[:size])  # connections and prepared statements warm
        retained = Retained(store)
        await retained.warm()
        totals = [0.0] * (len(CALLS) + 1)
        for start in range(size, count + size, size):
            spent = await _batch(pg.pid, store, retained, notes[start : start + size])
            totals = [t + s for t, s in zip(totals, spent, strict=True)]
    finally:
        await store.stop()
    out = {call: 1000 * t / count for call, t in zip((*CALLS, RETAIN), totals, strict=True)}
    return out | {"total": sum(out[call] for call in CALLS)}


async def run(
    args: argparse.Namespace, variants: dict[str, str]
) -> dict[str, list[dict[str, float]]]:
    pg = EmbeddedPostgres()
    results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    await asyncio.to_thread(pg.start)
    try:
        for i in range(args.rounds):
            for name, extra in variants.items():
                one = await one_round(pg, extra, args)
                results[name].append(one)
                print(f"round {i + 1} {name}: {one['total']:.4f} ms/notification", flush=True)
    finally:
        await asyncio.to_thread(pg.close)
    return results


def variant_sql(spec: str) -> str:
    """The SQL of a ``--variant``: the files of ``spec`` (joined with ``+``), in order."""
    return "\n".join(Path(path).read_text() for path in spec.split("+"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench_store", description=__doc__)
    p.add_argument("--count", type=int, default=30_000, help="notifications per round")
    p.add_argument("--batch", type=int, default=500, help="notifications per call")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--variant", action="append", default=[], help="an SQL file to compare")
    p.add_argument("--prefill", type=int, default=0, help="delivered rows in the table first")
    args = p.parse_args(argv)
    variants = {"plain": ""} | {spec: variant_sql(spec) for spec in args.variant}
    results = asyncio.run(run(args, variants))
    print(
        f"\nPostgreSQL CPU ms per notification, median of {args.rounds} rounds, "
        f"batches of {args.batch}, {args.prefill:,} rows already in the table:"
    )
    for name, rounds in results.items():
        medians = {k: statistics.median(r[k] for r in rounds) for k in (*CALLS, "total")}
        parts = ", ".join(f"{k} {medians[k]:.4f}" for k in CALLS)
        retain = statistics.median(r[RETAIN] for r in rounds)
        print(f"  {name}: {medians['total']:.4f} ({parts}); then retention's delete {retain:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
