"""The receiver: an aiohttp API that answers 202 only once the broker holds the notification.

This module assembles the application; its parts live in :mod:`notifsvc.api` (HTTP
plumbing, validation, handlers).
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from aiohttp import web

from notifsvc import openapi, preflight, topics, tracing
from notifsvc.api import console, handlers, operations, replays
from notifsvc.api.context import (
    DOCS,
    GATE,
    INGRESS,
    PRODUCER,
    RECENT,
    SETTINGS,
    STORE,
    TRACING,
    VALIDATOR,
    Ingress,
)
from notifsvc.api.plumbing import add_route, add_unmatched
from notifsvc.api.recent import RecentlyAccepted
from notifsvc.api.validation import Validator
from notifsvc.auth import Gate
from notifsvc.config import Settings
from notifsvc.db.store import Store
from notifsvc.kafka import Producer

log = logging.getLogger(__name__)

#: How long the receiver's producer holds a message for a fuller batch. Longer costs less
#: CPU per request at high concurrency but waits more per request (docs/performance.md).
LINGER_MS = 2

_PAGES = (
    ("/healthz", handlers.healthz),
    ("/readyz", handlers.readyz),
    ("/metrics", handlers.metrics_page),
    ("/openapi.json", handlers.openapi_json),
    ("/docs", handlers.docs_page),
)


def create_app(settings: Settings) -> web.Application:
    """The receiver's application; its producer and store start with the app."""
    gate = Gate(
        settings.api_keys,
        rate_per_second=settings.rate_limit_per_key,
        replicas=settings.receiver_replicas,
        workers=settings.receiver_workers,
    )
    largest = max(settings.max_body_bytes, settings.max_batch_bytes)
    app = web.Application(client_max_size=largest)
    app[SETTINGS] = settings
    app[PRODUCER] = Producer(
        settings,
        client_id="notifsvc-receiver",
        linger_ms=LINGER_MS,
        timeout_ms=settings.produce_timeout_ms,
    )
    app[STORE] = Store(settings.database, max_connections=4, attempts=2)
    app[VALIDATOR] = validator = Validator.from_settings(settings)
    app[GATE] = gate
    app[RECENT] = RecentlyAccepted()
    app[TRACING] = tracing.Tracing(settings, "notifsvc-receiver")
    app[INGRESS] = Ingress.of(app)
    burst = gate.burst if gate.enabled else None
    extra = (operations.openapi, replays.openapi, console.openapi)
    doc = openapi.document(settings, validator, burst=burst, extra=extra)
    app[DOCS] = {"json": orjson.dumps(doc), "html": openapi.render_html(doc).encode()}
    add_route(app, "POST", "/notification", handlers.post_notification)
    add_route(app, "POST", "/notifications", handlers.post_notifications)
    add_route(app, "GET", "/notification/{uuid}", handlers.get_notification)
    add_route(app, "GET", "/notification/{uuid}/attempts", handlers.get_attempts)
    operations.add_routes(app)
    replays.add_routes(app)
    console.add_routes(app)
    for path, handler in _PAGES:
        add_route(app, "GET", path, handler)
    add_unmatched(app)
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
    return app


async def _start(app: web.Application) -> None:
    app[TRACING].start()
    # A missing topic, or a broker refusing our TLS or credentials, is a stage error: the
    # receiver must not answer 202s it cannot keep (a broker merely away is waited for).
    await preflight.check_topics(app[SETTINGS], [topics.outstanding(app[SETTINGS])])
    await app[PRODUCER].start()
    await app[STORE].start()
    for name, reason in app[VALIDATOR].disabled.items():
        log.info("channel %s disabled: %s", name, reason)


async def _stop(app: web.Application) -> None:
    await app[PRODUCER].stop()
    await app[STORE].stop()
    await app[TRACING].stop()


class ReceiverServer:
    """The receiver as a stage: listens (with SO_REUSEPORT) until asked to stop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        if self._runner is not None:
            return
        self._runner = web.AppRunner(create_app(self.settings), access_log=None)
        await self._runner.setup()
        host, port = self.settings.http_host, self.settings.http_port
        await web.TCPSite(self._runner, host, port, reuse_port=True).start()
        log.info("receiver listening on http://%s:%d", host, port)

    async def run(self, stopping: asyncio.Event) -> None:
        await stopping.wait()

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
