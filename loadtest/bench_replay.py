"""``python -m loadtest.bench_replay``: a replay of many failed notifications against fresh
traffic. Prints the replay's rate and the fresh notifications' end-to-end latency (p50/p99)
without and with a replay running.

One lane (:meth:`notifsvc.dev.infra.Infra.lane`: its own database and topics) on a local
broker and database; the receiver, the router and the webhook notificator run as their own
processes, as in production, with their default settings unless given (``--replay-rate`` is
``NOTIFSVC_REPLAY_RATE``, ``--send-rate`` the channel's ``NOTIFSVC_SEND_RATE``). The
provider is a webhook sink in this process answering after ``--sink-delay-ms``; it notes
when each notification arrives.

1. ``--failed`` rows are stored ``failed`` (as a provider outage leaves them).
2. Fresh traffic alone: ``POST /notification`` at ``--fresh-rate`` per second for
   ``--seconds``.
3. The same fresh traffic, and ``POST /replays {"channel": "webhook"}``; it goes on until
   the sink has every replayed notification.

Latency = the sink's arrival time - the receiver's ``accepted_at`` (one machine, one
clock), for the fresh notifications of each phase. Replay rate = replayed rows delivered
over the span from the job's creation to the last one's arrival; the job's own requeue
rate (its rows over creation to ``finished_at``) is shown beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import asyncpg

from loadtest import harness, stats
from loadtest.harness import Sink
from notifsvc.dev.infra import Lane

#: Text of the seeded failed rows and of each phase's fresh ones (told apart by it).
REPLAYED, ALONE, BESIDE = "replayed", "fresh alone", "fresh beside a replay"
_SEED = """
INSERT INTO notifications
    (uuid, channel, recipient, body, priority, fingerprint, state, attempts, last_error,
     accepted_at, received_at, failed_at, updated_at)
SELECT gen_random_uuid(), 'webhook', $1, $2, 'normal', '\\x00', 'failed', 1,
       'webhook to 127.0.0.1 answered HTTP 503', now() - INTERVAL '10 minutes',
       now() - INTERVAL '10 minutes' + i * INTERVAL '1 millisecond', now(), now()
FROM generate_series(1, $3) AS i
"""
_ACCEPTED = "SELECT uuid, body, extract(epoch FROM accepted_at) AS at FROM notifications"


@dataclass
class Traffic:
    """Fresh notifications posted at a fixed rate until stopped."""

    session: aiohttp.ClientSession
    rate: float
    to: str
    statuses: list[int] = field(default_factory=list)

    async def run(self, text: str, until: Callable[[], Awaitable[bool]]) -> None:
        """Post at ``rate`` per second (never waiting for an answer to send the next one)
        until ``until()`` says so; then wait for the answers."""
        posts: set[asyncio.Task[None]] = set()
        began, sent = time.monotonic(), 0
        while not await until():
            due = began + sent / self.rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            task = asyncio.create_task(self._post(text))
            posts.add(task)
            task.add_done_callback(posts.discard)
            sent += 1
        await asyncio.gather(*posts)

    async def _post(self, text: str) -> None:
        body = {"uuid": str(uuid.uuid4()), "destination": "webhook", "to": self.to, "txt": text}
        async with self.session.post("/notification", json=body) as resp:
            self.statuses.append(resp.status)


async def _fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def measure(lane: Lane, sink: Sink, args: argparse.Namespace) -> dict[str, Any]:
    """The three steps on a running pipeline (see the module's docstring)."""
    dsn = lane.settings.dsn
    await _fetch(dsn, _SEED, sink.url, REPLAYED, args.failed)
    print(f"  {args.failed:,} failed rows stored; fresh traffic alone for {args.seconds:g}s")
    async with aiohttp.ClientSession(lane.base_url) as session:
        traffic = Traffic(session, args.fresh_rate, sink.url)
        ends: float = time.monotonic() + args.seconds

        async def phase_over() -> bool:
            return time.monotonic() >= ends

        await traffic.run(ALONE, phase_over)
        job_id, replayed_at, replayed = await _replay(session, dsn)
        print(f"  replay {job_id} of {args.failed:,}, fresh traffic beside it", flush=True)

        async def replay_delivered() -> bool:
            return all(u in sink.arrivals for u in replayed)

        budget = 60 + 3 * args.failed / (args.replay_rate or 1000.0)
        await asyncio.wait_for(traffic.run(BESIDE, replay_delivered), budget)
        job = await _finished(session, job_id)
    assert set(traffic.statuses) == {202}, f"the receiver refused: {set(traffic.statuses)}"
    accepted = await _accepted(dsn)
    fresh = {t: [u for u, (text, _) in accepted.items() if text == t] for t in (ALONE, BESIDE)}

    def fresh_delivered() -> bool:
        return all(u in sink.arrivals for us in fresh.values() for u in us)

    await harness.eventually(fresh_delivered, 60, "every fresh notification delivered")
    return _result(
        args, sink, job, replayed=replayed, replayed_at=replayed_at, accepted=accepted, fresh=fresh
    )


async def _replay(session: aiohttp.ClientSession, dsn: str) -> tuple[str, float, set[str]]:
    """Ask for the replay; its job id, when it was asked, the UUIDs it is to deliver."""
    replayed = await _replayed_rows(dsn)
    asked = time.time()
    async with session.post("/replays", json={"channel": "webhook"}) as resp:
        assert resp.status == 202, await resp.text()
        job_id = str((await resp.json())["id"])
    return job_id, asked, replayed


async def _finished(session: aiohttp.ClientSession, job_id: str) -> dict[str, Any]:
    """The job once it is done (its last page, an empty one, may come after the last send)."""
    job: dict[str, Any] = {}

    async def done() -> bool:
        nonlocal job
        async with session.get(f"/replays/{job_id}") as resp:
            job = await resp.json()
        return bool(job["state"] == "done")

    await harness.eventually(done, 30, f"replay {job_id} done")
    return job


async def _replayed_rows(dsn: str) -> set[str]:
    rows = await _fetch(dsn, "SELECT uuid FROM notifications WHERE body = $1", REPLAYED)
    return {str(r["uuid"]) for r in rows}


async def _accepted(dsn: str) -> dict[str, tuple[str, float]]:
    return {str(r["uuid"]): (r["body"], float(r["at"])) for r in await _fetch(dsn, _ACCEPTED)}


def _result(
    args: argparse.Namespace,
    sink: Sink,
    job: dict[str, Any],
    *,
    replayed: set[str],
    replayed_at: float,
    accepted: dict[str, tuple[str, float]],
    fresh: dict[str, list[str]],
) -> dict[str, Any]:
    created = datetime.fromisoformat(job["created_at"]).timestamp()
    finished = job["finished_at"]
    requeue_span = datetime.fromisoformat(finished).timestamp() - created if finished else math.nan
    last = max((sink.arrivals[u] for u in replayed), default=math.nan)

    def latency(uuids: list[str]) -> dict[str, float]:
        ms = [(sink.arrivals[u] - accepted[u][1]) * 1000 for u in uuids]
        return stats.latency(ms).as_dict()

    return {
        "config": vars(args),
        "job": job,
        "replay_rows_per_s": stats.rate(len(replayed), last - created),
        "requeue_rows_per_s": stats.rate(int(job["requeued"]), requeue_span),
        "replay_seconds": last - replayed_at,
        "fresh_alone_ms": latency(fresh[ALONE]),
        "fresh_beside_replay_ms": latency(fresh[BESIDE]),
        "sink_requests": sink.requests,
        "sink_duplicates": sink.requests - len(sink.arrivals),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sink = Sink(args.sink_delay_ms / 1000)
    lane_values = {"replay_rate": args.replay_rate, "send_rate": args.send_rate}
    async with (
        harness.webhook_lane("replay", sink, **lane_values) as (lane, workdir),
        harness.pipeline(lane, workdir, sink),
    ):
        return await measure(lane, sink, args) | {"workdir": str(workdir)}


def text(result: dict[str, Any]) -> str:
    c, job = result["config"], result["job"]
    alone, beside = result["fresh_alone_ms"], result["fresh_beside_replay_ms"]

    def ms(lat: dict[str, float]) -> str:
        return f"p50 {lat['p50']:.0f} ms  p99 {lat['p99']:.0f} ms  ({lat['count']:.0f} sent)"

    return "\n".join(
        [
            f"replay of {c['failed']:,} failed webhooks "
            f"(NOTIFSVC_REPLAY_RATE={c['replay_rate']:g}, "
            f"send rate {c['send_rate'] or 'unlimited'}, sink delay {c['sink_delay_ms']:g} ms), "
            f"fresh traffic {c['fresh_rate']:g}/s",
            f"  replay delivered    {result['replay_rows_per_s']:,.0f} rows/s "
            f"(requeued {result['requeue_rows_per_s']:,.0f} rows/s; job: matched {job['matched']:,}"
            f", requeued {job['requeued']:,}, skipped {job['skipped']:,})",
            f"  fresh, alone        {ms(alone)}",
            f"  fresh, with replay  {ms(beside)}",
            f"  duplicates at the provider: {result['sink_duplicates']}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_replay", description=__doc__)
    parser.add_argument("--failed", type=int, default=20_000, help="failed rows to replay")
    parser.add_argument("--fresh-rate", type=float, default=50.0, help="fresh posts per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="fresh traffic alone, first")
    parser.add_argument("--replay-rate", type=float, default=200.0, help="NOTIFSVC_REPLAY_RATE")
    parser.add_argument("--send-rate", type=float, default=0.0, help="NOTIFSVC_SEND_RATE")
    parser.add_argument("--sink-delay-ms", type=float, default=10.0, help="provider latency")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    harness.report("bench-replay", result, text(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
