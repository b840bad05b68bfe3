"""``make bench-notificator``: webhook sends per second against a local sink.

The channel topic ``notifications.webhook`` of a prefix of its own is preloaded, and the
matching rows are stored as ``forwarded`` (what the router leaves behind); then
``python -m notifsvc notificator --channel webhook`` runs with
``NOTIFSVC_SEND_CONCURRENCY`` until every row is ``sent``. Rate = rows / (last ``sent_at``
- the sink's first request). The sink answers after ``BENCH_SINK_DELAY_MS`` to stand for a
provider's latency. The baseline is the same stage with a concurrency of 1 on a smaller
sample: one send at a time.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgspec
import orjson

from loadtest import harness, stats
from notifsvc import topics
from notifsvc.db.store import Store
from notifsvc.dev.infra import Lane, LocalInfra
from notifsvc.model import Notification
from notifsvc.process import free_port

_PROGRESS = """
SELECT count(*) FILTER (WHERE state = 'sent') AS done,
       count(*) FILTER (WHERE state = 'failed') AS failed, max(sent_at) AS last,
       min(sent_at) AS first
FROM notifications
"""


def sink_call(url: str, method: str = "GET") -> Any:
    request = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(request, timeout=5) as resp:  # only 127.0.0.1
        body = resp.read()
    return orjson.loads(body) if body else None


async def store_forwarded(dsn: str, batch: list[Notification]) -> None:
    store = Store(dsn, max_connections=2)
    await store.start()
    try:
        for i in range(0, len(batch), 5000):
            chunk = batch[i : i + 5000]
            await store.insert(chunk)
            await store.mark_forwarded([n.uuid for n in chunk])
    finally:
        await store.stop()


async def sends(
    infra: LocalInfra,
    sink: str,
    *,
    count: int,
    concurrency: int,
    workdir: Path,
    callbacks: str | None = None,
    dispatcher: bool = True,
) -> dict[str, Any]:
    """Preload ``count`` webhook notifications and time the notificator sending them all;
    with ``callbacks`` (a second sink), each carries a callback_url there, and with
    ``dispatcher`` the callback dispatcher runs too, on the same cores, delivering their
    events while the sends go on."""
    label = f"notificator{concurrency}" + ("-callbacks" if callbacks else "")
    label += "-dispatcher" if callbacks and dispatcher else ""
    lane = await infra.lane(
        label,
        workdir / label,
        send_concurrency=concurrency,
        webhook_allowed_hosts="127.0.0.1",
        callback_allowed_hosts="127.0.0.1",
        channels="webhook",
        log_level="WARNING",
    )
    try:
        return await _sends(
            lane,
            sink,
            count=count,
            workdir=workdir / label,
            callbacks=callbacks,
            dispatcher=dispatcher,
        )
    finally:
        await infra.drop(lane)


async def _sends(
    lane: Lane, sink: str, *, count: int, workdir: Path, callbacks: str | None, dispatcher: bool
) -> dict[str, Any]:
    settings, concurrency = lane.settings, lane.settings.send_concurrency
    env = harness.stage_env(settings)
    await asyncio.to_thread(sink_call, f"{sink}/reset", "POST")
    batch = list(harness.notifications(count, "webhook", f"{sink}/hook"))
    if callbacks is not None:
        url = f"{callbacks}/callbacks"
        batch = [msgspec.structs.replace(n, callback_url=url) for n in batch]
    stage = None
    if callbacks is not None and dispatcher:
        stage = harness.start_process(["-m", "notifsvc", "callbacks"], env, workdir / "cb.log")
    await store_forwarded(settings.dsn, batch)
    await harness.preload(settings, topics.channel(settings, "webhook"), batch)
    print(f"  notificator: {count:,} queued, concurrency {concurrency}", flush=True)
    args = ["-m", "notifsvc", "notificator", "--channel", "webhook"]
    proc = harness.start_process(args, env, workdir / f"notificator-{concurrency}.log")
    try:
        row = await wait_sent(settings.dsn, proc, count, budget=60 + count / 50)
    finally:
        harness.stop_process(proc)
        if stage is not None:
            harness.stop_process(stage)
    seen = await asyncio.to_thread(sink_call, f"{sink}/stats")
    last = row["last"].timestamp() if row["last"] is not None else float("nan")
    return {
        "count": count,
        "concurrency": concurrency,
        "sent": row["done"],
        "failed": row["failed"],
        "sink_duplicates": seen["duplicates"],
        "seconds": last - seen["first"],
        "sends_per_s": stats.span_rate(row["done"], seen["first"], last),
    }


async def wait_sent(dsn: str, proc: Any, count: int, *, budget: float) -> Any:
    deadline = time.monotonic() + budget
    while True:
        row = await harness.fetch_one(dsn, _PROGRESS)
        if row["done"] + row["failed"] >= count:
            return row
        if proc.poll() is not None:
            raise harness.Deadline(f"the notificator exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise harness.Deadline(f"only {row['done']:,} of {count:,} sent in {budget:.0f}s")
        await asyncio.sleep(0.25)


async def bench_notificator(
    infra: LocalInfra,
    *,
    count: int,
    concurrency: int,
    baseline_count: int,
    delay_ms: float,
    workdir: Path,
) -> dict[str, Any]:
    sink, sink_proc = await _sink(delay_ms, workdir / "sink.log")
    receiver, receiver_proc = await _sink(delay_ms, workdir / "callback-sink.log")
    try:
        main = await sends(infra, sink, count=count, concurrency=concurrency, workdir=workdir)
        base = await sends(infra, sink, count=baseline_count, concurrency=1, workdir=workdir)
        produced = await sends(
            infra,
            sink,
            count=count,
            concurrency=concurrency,
            workdir=workdir,
            callbacks=receiver,
            dispatcher=False,
        )
        with_callbacks = await sends(
            infra, sink, count=count, concurrency=concurrency, workdir=workdir, callbacks=receiver
        )
        heard = await asyncio.to_thread(sink_call, f"{receiver}/stats")
    finally:
        harness.stop_process(sink_proc)
        harness.stop_process(receiver_proc)
    with_callbacks["callbacks_received"] = heard["requests"]
    return {
        "sink_delay_ms": delay_ms,
        "main": main,
        "baseline": base,
        "ratio": stats.ratio(main["sends_per_s"], base["sends_per_s"]),
        "callbacks": with_callbacks,
        "callbacks_ratio": stats.ratio(with_callbacks["sends_per_s"], main["sends_per_s"]),
        "callbacks_produced": produced,
        "callbacks_produced_ratio": stats.ratio(produced["sends_per_s"], main["sends_per_s"]),
    }


async def _sink(delay_ms: float, log_path: Path) -> tuple[str, Any]:
    """A ``loadtest.sink`` process answering after ``delay_ms``, and its URL."""
    port = free_port()
    args = ["-m", "loadtest.sink", "--port", str(port), "--delay-ms", str(delay_ms)]
    proc = harness.start_process(args, harness.stage_env(), log_path)
    url = f"http://127.0.0.1:{port}"
    await harness.wait_http(f"{url}/stats", proc)
    return url, proc
