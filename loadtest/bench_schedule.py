"""``python -m loadtest.bench_schedule``: how late scheduled sends arrive (p50/p99 lateness).

One lane (:meth:`notifsvc.dev.infra.Infra.lane`) on a local broker and database; the
receiver, the router (whose duty the scheduler's delay tiers are) and the webhook
notificator run as their own processes with their default settings. ``--count``
notifications are posted at ``--rate`` per second, each with a ``send_at`` spread evenly
over ``--spread`` seconds starting ``--lead`` seconds after the first post: so they wait in
the tiers, hopping from the 1 min tier down to the 1 s one, and come due over a minute.
The provider is a webhook sink in this process (``--sink-delay-ms``) noting each arrival.

Lateness = the sink's arrival time - the notification's ``send_at`` (one machine, one
clock). Early = arrivals before their ``send_at`` (must be 0); duplicates at the sink too.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp

from loadtest import harness, stats
from loadtest.harness import Sink
from notifsvc.dev.infra import Lane


async def _post_all(lane: Lane, sink: Sink, args: argparse.Namespace) -> dict[str, float]:
    """Post the scheduled notifications at ``args.rate``; their uuid -> send_at."""
    first = time.time() + args.lead
    dues = {
        str(uuid.uuid4()): first + args.spread * i / max(1, args.count - 1)
        for i in range(args.count)
    }
    async with aiohttp.ClientSession(lane.base_url) as session:
        began = time.monotonic()
        for sent, (uid, due) in enumerate(dues.items()):
            await asyncio.sleep(max(0.0, began + sent / args.rate - time.monotonic()))
            body = {
                "uuid": uid,
                "destination": "webhook",
                "to": sink.url,
                "txt": "scheduled",
                "send_at": datetime.fromtimestamp(due, UTC).isoformat(),
            }
            async with session.post("/notification", json=body) as resp:
                assert resp.status == 202, await resp.text()
    return dues


async def measure(lane: Lane, sink: Sink, args: argparse.Namespace) -> dict[str, Any]:
    dues = await _post_all(lane, sink, args)
    print(f"  {len(dues):,} scheduled over {args.spread:g}s; waiting for them")

    def all_arrived() -> bool:
        return dues.keys() <= sink.arrivals.keys()

    await harness.eventually(all_arrived, args.lead + args.spread + 120, "every scheduled send")
    late = [sink.arrivals[u] - due for u, due in dues.items()]
    summary = stats.latency([max(0.0, x) * 1000 for x in late])
    return {
        "config": vars(args),
        "lateness_ms": summary.as_dict() | {"max": summary.max},
        "early": sum(1 for x in late if x < 0),
        "max_early_ms": -min(0.0, *late) * 1000,
        "sink_duplicates": sink.requests - len(sink.arrivals),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sink = Sink(args.sink_delay_ms / 1000)
    async with (
        harness.webhook_lane("schedule", sink) as (lane, workdir),
        harness.pipeline(lane, workdir, sink),
    ):
        return await measure(lane, sink, args) | {"workdir": str(workdir)}


def text(result: dict[str, Any]) -> str:
    c, late = result["config"], result["lateness_ms"]
    return "\n".join(
        [
            f"{c['count']:,} scheduled webhooks due over {c['spread']:g}s "
            f"(sink delay {c['sink_delay_ms']:g} ms)",
            f"  lateness  p50 {late['p50']:.0f} ms  p99 {late['p99']:.0f} ms  "
            f"max {late['max']:.0f} ms",
            f"  early: {result['early']}  duplicates at the provider: {result['sink_duplicates']}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_schedule", description=__doc__)
    parser.add_argument("--count", type=int, default=1_000, help="scheduled notifications")
    parser.add_argument("--spread", type=float, default=60.0, help="seconds their dues span")
    parser.add_argument("--lead", type=float, default=30.0, help="seconds to the first due")
    parser.add_argument("--rate", type=float, default=100.0, help="posts per second")
    parser.add_argument("--sink-delay-ms", type=float, default=10.0, help="provider latency")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    harness.report("bench-schedule", result, text(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
