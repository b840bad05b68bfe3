"""The metrics move when notifications flow and when they fail."""

from __future__ import annotations

import uuid

import aiohttp
from prometheus_client import REGISTRY

from integration.helpers import eventually, notification, running
from notifsvc import topics
from notifsvc.channels.log import LogChannel
from notifsvc.channels.webhook import WebhookChannel
from notifsvc.config import Settings
from notifsvc.db.store import Store
from notifsvc.dev.fakes.script import Reply
from notifsvc.dev.fakes.webhook import WebhookSink
from notifsvc.notificator import Notificator
from notifsvc.router import Router

SAMPLES = {
    "accepted": ("notifsvc_http_requests_total", {"route": "/notification", "status": "202"}),
    "rejected": ("notifsvc_http_requests_total", {"route": "/notification", "status": "422"}),
    "forwarded_log": ("notifsvc_forwarded_total", {"channel": "log"}),
    "sent_log": ("notifsvc_sends_total", {"channel": "log", "outcome": "sent"}),
    "failed_webhook": ("notifsvc_sends_total", {"channel": "webhook", "outcome": "failed"}),
    "dlq": ("notifsvc_dlq_total", {"stage": "notificator[webhook]"}),
    "dedupe": ("notifsvc_dedupe_hits_total", {}),
    "e2e_count": ("notifsvc_end_to_end_seconds_count", {"channel": "log"}),
    "router_batches": ("notifsvc_batch_size_count", {"stage": "router"}),
}


def snapshot() -> dict[str, float]:
    return {
        k: REGISTRY.get_sample_value(name, labels) or 0.0 for k, (name, labels) in SAMPLES.items()
    }


async def test_metrics_follow_deliveries_and_failures(
    settings: Settings, api: aiohttp.ClientSession, store: Store
) -> None:
    before = snapshot()
    async with WebhookSink() as sink:
        sink.script.push(Reply(400, {"error": "gone"}))
        ok = notification()
        bad = notification("webhook", to=sink.hook_url())
        async with (
            running(Router(settings)),
            running(Notificator(settings, LogChannel(settings))),
            running(Notificator(settings, WebhookChannel(settings))),
        ):
            for body in (ok, ok, bad):
                async with api.post("/notification", json=body) as resp:
                    assert resp.status == 202
            async with api.post("/notification", json={"uuid": "nope"}) as resp:
                assert resp.status == 422

            async def settled() -> bool:
                rows = [await store.get(uuid.UUID(str(b["uuid"]))) for b in (ok, bad)]
                return [r["state"] if r else None for r in rows] == ["sent", "failed"]

            await eventually(settled)

            async def lag_sampled() -> bool:  # members sample the partitions they have read
                labels = {
                    "group": settings.topic("notifsvc-router"),
                    "topic": topics.outstanding(settings),
                }
                values = [
                    REGISTRY.get_sample_value(
                        "notifsvc_consumer_lag", {**labels, "partition": str(p)}
                    )
                    for p in range(settings.topic_partitions)
                ]
                return any(v is not None and v >= 0 for v in values)

            await eventually(lag_sampled, within=20)
    moved = {k: v - before[k] for k, v in snapshot().items()}
    assert moved["accepted"] == 3 and moved["rejected"] == 1
    assert moved["forwarded_log"] == 1 and moved["sent_log"] == 1 and moved["e2e_count"] == 1
    assert moved["failed_webhook"] == 1 and moved["dlq"] == 1
    assert moved["dedupe"] >= 1 and moved["router_batches"] >= 1
