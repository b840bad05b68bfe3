"""``make bench-rates``: limits that hold across replicas, measured (issue 18).

1. **Send rate.** Two ``notifsvc notificator --channel webhook`` processes share one
   ``NOTIFSVC_SEND_RATE`` (``--rate``, default 50/s) over a backlog large enough that the
   rate, not the provider, bounds them. The provider is a webhook sink in this process that
   notes when each request arrives. Measured: arrivals over ``--seconds`` (default 20) once
   both logged their shares (adding up to 1), then ``kill -9`` of one of them, the time until
   the survivor logs a share of 1, and arrivals over the next ``--seconds``.
2. **Per-key limit.** Two ``notifsvc receiver`` processes on one port (SO_REUSEPORT) with
   ``NOTIFSVC_RATE_LIMIT_PER_KEY`` (``--key-rate``, default 100/s) and
   ``NOTIFSVC_RECEIVER_REPLICAS=2``; one API key posts at ``--offer`` (default 3 x the limit)
   for ``--seconds`` over fresh connections (spread over both processes). Measured: 202s and
   429s per second, in aggregate.

Each window skips its first 2 s, so that the buckets saved up before it are spent.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import aiohttp

from loadtest import harness
from loadtest.bench_notificator import store_forwarded
from notifsvc import topics
from notifsvc.dev.fakes.webhook import WebhookSink
from notifsvc.dev.infra import Lane

#: Seconds skipped at the start of a window (a full bucket is spent in them).
SETTLE = 2.0
_SHARE = re.compile(rb"send share ([0-9.]+) \(")
_KEY = "bench-key"


def _between(sink: WebhookSink, start: float, end: float) -> int:
    """Requests that arrived at ``sink`` in [start, end) (monotonic seconds)."""
    return sum(start <= seen.at < end for seen in sink.seen)


def last_share(path: Path) -> float | None:
    found = _SHARE.findall(path.read_bytes()) if path.exists() else []
    return float(found[-1]) if found else None


async def _window(sink: WebhookSink, seconds: float) -> dict[str, float]:
    """Arrivals over ``seconds`` after :data:`SETTLE`: their rate and busiest second."""
    await asyncio.sleep(SETTLE)
    start = time.monotonic()
    await asyncio.sleep(seconds)
    per_second = [_between(sink, start + i, start + i + 1) for i in range(int(seconds))]
    count = _between(sink, start, start + seconds)
    return {"count": count, "per_s": count / seconds, "busiest_s": max(per_second, default=0)}


async def send_rate(
    lane: Lane, sink: WebhookSink, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    """Part 1 (see the module's docstring)."""
    settings = lane.settings
    count = int(args.rate * (2 * args.seconds + 4 * SETTLE + 40))
    batch = list(harness.notifications(count, "webhook", sink.hook_url()))
    await store_forwarded(settings.dsn, batch)
    await harness.preload(settings, topics.channel(settings, "webhook"), batch)
    env = harness.stage_env(settings, log_format="text", log_level="INFO")
    cmd = ["-m", "notifsvc", "notificator", "--channel", "webhook"]
    logs = [workdir / f"notificator-{i}.log" for i in (1, 2)]
    procs = [harness.start_process(cmd, env, path) for path in logs]
    try:

        def split() -> bool:
            shares = [last_share(p) for p in logs]
            held = all(s is not None and 0 < s < 1 for s in shares)
            return held and abs(sum(s or 0 for s in shares) - 1) < 1e-3

        await harness.eventually(split, 120, "both notificators holding a share", every=0.05)
        shares = [last_share(p) for p in logs]
        print(f"  two notificators, shares {shares}; measuring {args.seconds:g}s", flush=True)
        both = await _window(sink, args.seconds)
        killed = time.monotonic()
        procs[1].send_signal(signal.SIGKILL)
        alone = await harness.eventually(
            lambda: last_share(logs[0]) == 1, 120, "the survivor's share of 1", every=0.05
        )
        gap = {"seconds": alone - killed, "per_s": _between(sink, killed, alone) / (alone - killed)}
        print(f"  killed one; the survivor took it all after {gap['seconds']:.1f}s", flush=True)
        survivor = await _window(sink, args.seconds)
    finally:
        await harness.stop_processes(procs)
    return {"shares": shares, "both": both, "rebalance": gap, "survivor": survivor}


async def key_limit(
    lane: Lane, sink: WebhookSink, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    """Part 2 (see the module's docstring)."""
    env = harness.stage_env(
        lane.settings,
        api_keys=_KEY,
        rate_limit_per_key=args.key_rate,
        receiver_replicas=2,
        log_level="WARNING",
    )
    procs = [
        harness.start_process(["-m", "notifsvc", "receiver"], env, workdir / f"receiver-{i}.log")
        for i in (1, 2)
    ]
    try:
        for proc in procs:
            await harness.wait_http(f"{lane.base_url}/healthz", proc)
        statuses = await _offer(lane.base_url, sink, args.offer, args.seconds)
    finally:
        await harness.stop_processes(procs)
    steady = [s for t, s in statuses if t >= SETTLE]
    span = args.seconds - SETTLE
    return {
        "offered_per_s": args.offer,
        "accepted_per_s": steady.count(202) / span,
        "refused_per_s": steady.count(429) / span,
        "other": sorted({s for s in steady if s not in (202, 429)}),
    }


async def _offer(
    base_url: str, sink: WebhookSink, rate: float, seconds: float
) -> list[tuple[float, int]]:
    """Post at ``rate`` per second for ``seconds``, each over a new connection (so that the
    kernel spreads them over both processes); (time since the start, status) of each."""
    out: list[tuple[float, int]] = []
    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    headers = {"Authorization": f"Bearer {_KEY}"}
    to = sink.hook_url()
    async with aiohttp.ClientSession(base_url, connector=connector, headers=headers) as session:
        began = time.monotonic()

        async def post(at: float) -> None:
            body = {"uuid": str(uuid.uuid4()), "destination": "webhook", "to": to, "txt": "r"}
            async with session.post("/notification", json=body) as resp:
                await resp.read()
                out.append((at, resp.status))

        posts: list[Awaitable[None]] = []
        sent = 0
        while (at := sent / rate) < seconds:
            await asyncio.sleep(max(0.0, began + at - time.monotonic()))
            posts.append(asyncio.ensure_future(post(at)))
            sent += 1
        await asyncio.gather(*posts)
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sink = WebhookSink()
    lane_values = {"send_rate": args.rate, "kafka_session_timeout_ms": 6000}
    async with harness.webhook_lane("rates", sink, **lane_values) as (lane, workdir):
        sends = await send_rate(lane, sink, args, workdir)
        keys = await key_limit(lane, sink, args, workdir)
        return {"config": vars(args), "send_rate": sends, "key_limit": keys}


def text(result: dict[str, Any]) -> str:
    c, s, k = result["config"], result["send_rate"], result["key_limit"]

    def window(w: dict[str, float]) -> str:
        return f"{w['per_s']:.1f}/s ({w['count']:.0f} sends; busiest second {w['busiest_s']:.0f})"

    return "\n".join(
        [
            f"NOTIFSVC_SEND_RATE={c['rate']:g} over two notificators, {c['seconds']:g}s windows",
            f"  both running        {window(s['both'])}  shares {s['shares']}",
            f"  one killed          {s['rebalance']['per_s']:.1f}/s for "
            f"{s['rebalance']['seconds']:.1f}s until the survivor's share was 1",
            f"  survivor alone      {window(s['survivor'])}",
            f"NOTIFSVC_RATE_LIMIT_PER_KEY={c['key_rate']:g} over two receivers "
            f"(NOTIFSVC_RECEIVER_REPLICAS=2), one key offering {k['offered_per_s']:g}/s",
            f"  accepted (202)      {k['accepted_per_s']:.1f}/s",
            f"  refused (429)       {k['refused_per_s']:.1f}/s"
            + (f"   other statuses: {k['other']}" if k["other"] else ""),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_rates", description=__doc__)
    parser.add_argument("--rate", type=float, default=50.0, help="NOTIFSVC_SEND_RATE")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each window")
    parser.add_argument("--key-rate", type=float, default=100.0, help="per-key limit")
    parser.add_argument("--offer", type=float, default=300.0, help="posts per second offered")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    harness.report("bench-rates", result, text(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
