"""The push channels in ``make bench-notificator``: sends per second of each against its
provider fake (``Channel.fake``) at the pipeline's default concurrency, next to the same
channel one send at a time.

The fake runs in this process, on its real protocol (HTTP/1.1 for FCM and Web Push with
their OAuth2 and VAPID checks and, for Web Push, decryption of every payload; HTTP/2 over TLS
for APNs); the notificator is its own process, as in production. Rows are stored as
``forwarded`` and the channel topic preloaded, as for the webhook figure. Rate = sent rows
over the span from the fake's first to its last delivery, as the provider saw them (the
notificator records outcomes once a second, so ``sent_at`` is too coarse for a rate).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loadtest import harness, stats
from loadtest.bench_notificator import store_forwarded, wait_sent
from notifsvc import channels, topics
from notifsvc.config import Settings
from notifsvc.dev.infra import LocalInfra
from notifsvc.dev.standins import make_fake
from notifsvc.model import Notification


async def push_sends(
    infra: LocalInfra, name: str, *, count: int, concurrency: int, workdir: Path
) -> dict[str, Any]:
    """Preload ``count`` notifications of channel ``name`` and time the notificator."""
    label = f"{name}{concurrency}"
    async with make_fake(name, keep=None) as fake:
        lane = await infra.lane(
            label,
            workdir / label,
            send_concurrency=concurrency,
            channels=name,
            log_level="WARNING",
        )
        try:
            env = harness.stage_env(lane.settings.with_sections(fake.config()))
            batch = [_note(n, fake.recipient()) for n in harness.notifications(count, name)]
            result = await _run(lane.settings, name, env, batch, workdir / label)
            times = sorted(d.at for d in fake.deliveries())
            first, last = (times[0], times[-1]) if times else (float("nan"), float("nan"))
            rate = stats.span_rate(len(times), first, last)
            return result | {"delivered": len(times), "sends_per_s": rate}
        finally:
            await infra.drop(lane)


def _note(n: Notification, to: str) -> Notification:
    return Notification(n.uuid, n.channel, to, n.txt, accepted_at=n.accepted_at)


async def _run(
    settings: Settings, name: str, env: dict[str, str], batch: list[Notification], folder: Path
) -> dict[str, Any]:
    count, concurrency = len(batch), settings.send_concurrency
    await store_forwarded(settings.dsn, batch)
    await harness.preload(settings, topics.channel(settings, name), batch)
    print(f"  {name}: {count:,} queued, concurrency {concurrency}", flush=True)
    args = ["-m", "notifsvc", "notificator", "--channel", name]
    proc = harness.start_process(args, env, folder / "notificator.log")
    try:
        row = await wait_sent(settings.dsn, proc, count, budget=60 + count / 50)
    finally:
        await harness.stop_processes([proc])
    return {
        "channel": name,
        "count": count,
        "concurrency": concurrency,
        "sent": row["done"],
        "failed": row["failed"],
    }


async def bench_push(
    infra: LocalInfra,
    names: list[str],
    *,
    count: int,
    concurrency: int,
    baseline_count: int,
    workdir: Path,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        main = await push_sends(infra, name, count=count, concurrency=concurrency, workdir=workdir)
        base = await push_sends(infra, name, count=baseline_count, concurrency=1, workdir=workdir)
        ratio = stats.ratio(main["sends_per_s"], base["sends_per_s"])
        out[name] = {"main": main, "baseline": base, "ratio": ratio}
    return out


def registered() -> list[str]:
    """The registered push channels that have a fake to measure against."""
    return [n for n in channels.push() if channels.REGISTRY[n].fake is not None]
