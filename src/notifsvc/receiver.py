"""The receiver: an aiohttp API that answers 202 only once the broker holds the notification."""

from __future__ import annotations

import asyncio
import logging
import uuid as uuid_mod
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from notifsvc import channels, topics
from notifsvc.config import Settings
from notifsvc.db.store import Store, StoreUnavailable
from notifsvc.kafka import KafkaError, Producer
from notifsvc.model import FieldError, InvalidNotification, Notification, parse

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
SETTINGS = web.AppKey("settings", Settings)
PRODUCER = web.AppKey("producer", Producer)
STORE = web.AppKey("store", Store)
CHANNELS = web.AppKey("channels", dict[str, channels.Channel])


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An RFC 9457 problem details response."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = [e.as_dict() for e in errors]
    return web.Response(
        status=status, body=orjson.dumps(body), content_type=PROBLEM_JSON, headers=headers
    )


def _json(status: int, body: object) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn aiohttp's own HTTP errors (404, 405, 413, ...) and crashes into problem+json."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in {"allow", "retry-after"}}
        return problem(exc.status, exc.reason, exc.text or exc.reason, headers=headers)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, "Internal Server Error", "unexpected error; nothing was accepted")


async def _read_json(request: web.Request) -> object:
    settings = request.app[SETTINGS]
    if request.content_type != "application/json":
        raise _Reject(problem(415, "Unsupported Media Type", "send Content-Type: application/json"))
    if request.content_length is not None and request.content_length > settings.max_body_bytes:
        raise _Reject(_too_large(settings))
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _Reject(_too_large(settings)) from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _Reject(
            problem(400, "Malformed JSON", f"the body is not valid JSON: {exc}")
        ) from None


def _too_large(settings: Settings) -> web.Response:
    limit = settings.max_body_bytes
    return problem(413, "Payload Too Large", f"the body is larger than {limit} bytes")


class _Reject(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


def validate(app: web.Application, data: object) -> Notification:
    """A notification that the pipeline can deliver, or :class:`InvalidNotification`."""
    notification = parse(data)
    enabled: dict[str, channels.Channel] = app[CHANNELS]
    channel = enabled.get(notification.channel)
    if channel is None:
        known = ", ".join(sorted(enabled)) or "none"
        reason = channels.disabled(app[SETTINGS]).get(notification.channel)
        why = (
            f"channel {notification.channel!r} is disabled: {reason}"
            if reason
            else (f"unknown destination {notification.channel!r}")
        )
        raise InvalidNotification([FieldError("destination", f"{why} (enabled: {known})")])
    errors = channel.validate(notification)
    if errors:
        raise InvalidNotification(errors)
    return notification


async def post_notification(request: web.Request) -> web.Response:
    try:
        notification = validate(request.app, await _read_json(request))
    except _Reject as reject:
        return reject.response
    except InvalidNotification as exc:
        return problem(422, "Invalid notification", str(exc), errors=exc.errors)
    settings = request.app[SETTINGS]
    producer = request.app[PRODUCER]
    try:
        future = producer.send(
            topics.outstanding(settings), notification.encode(), key=notification.key
        )
        await asyncio.wait_for(future, settings.produce_timeout_ms / 1000)
    except (KafkaError, TimeoutError) as exc:
        log.warning("not accepted %s: broker did not acknowledge: %r", notification.uuid, exc)
        return problem(
            503,
            "Service Unavailable",
            "the notification could not be stored; retry with the same uuid",
            headers={"Retry-After": "1"},
        )
    return _json(202, {"uuid": str(notification.uuid), "status": "accepted"})


async def get_notification(request: web.Request) -> web.Response:
    try:
        uid = uuid_mod.UUID(request.match_info["uuid"])
    except ValueError:
        return problem(
            422,
            "Invalid uuid",
            "the path must end with a UUID",
            errors=[FieldError("uuid", "must be a UUID")],
        )
    try:
        state = await request.app[STORE].get(uid)
    except StoreUnavailable:
        return problem(
            503, "Service Unavailable", "the database is unreachable", headers={"Retry-After": "1"}
        )
    if state is None:
        return problem(404, "Not Found", f"no notification {uid} is stored (yet)")
    return _json(200, state)


async def healthz(_request: web.Request) -> web.Response:
    return _json(200, {"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}
    try:
        await asyncio.to_thread(request.app[PRODUCER].ping, 2.0)
        checks["broker"] = "ok"
    except KafkaError as exc:
        checks["broker"] = str(exc)
    try:
        await request.app[STORE].ping()
        checks["database"] = "ok"
    except StoreUnavailable as exc:
        checks["database"] = str(exc)
    ready = all(v == "ok" for v in checks.values())
    return _json(200 if ready else 503, {"status": "ready" if ready else "unavailable", **checks})


def create_app(settings: Settings) -> web.Application:
    """The receiver's application; its producer and store start with the app."""
    app = web.Application(middlewares=[problems], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[PRODUCER] = Producer(
        settings, client_id="notifsvc-receiver", linger_ms=2, timeout_ms=settings.produce_timeout_ms
    )
    app[STORE] = Store(settings.dsn, max_connections=4, attempts=2)
    app[CHANNELS] = channels.enabled(settings)
    app.router.add_post("/notification", post_notification)
    app.router.add_get("/notification/{uuid}", get_notification)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
    return app


async def _start(app: web.Application) -> None:
    await app[PRODUCER].start()
    await app[STORE].start()
    off = channels.disabled(app[SETTINGS])
    for name, reason in off.items():
        log.info("channel %s disabled: %s", name, reason)


async def _stop(app: web.Application) -> None:
    await app[PRODUCER].stop()
    await app[STORE].stop()


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
        site = web.TCPSite(
            self._runner, self.settings.http_host, self.settings.http_port, reuse_port=True
        )
        await site.start()
        log.info(
            "receiver listening on http://%s:%d", self.settings.http_host, self.settings.http_port
        )

    async def run(self, stopping: asyncio.Event) -> None:
        await stopping.wait()

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
