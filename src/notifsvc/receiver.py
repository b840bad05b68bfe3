"""The receiver: an aiohttp API that answers 202 only once the broker holds the notification."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid as uuid_mod
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import prometheus_client
from aiohttp import web

from notifsvc import channels, metrics, openapi, topics, tracing
from notifsvc.auth import Gate, RateLimited, Unauthorized
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
GATE = web.AppKey("gate", Gate)
DOCS = web.AppKey("docs", dict[str, bytes])
TRACING = web.AppKey("tracing", tracing.Tracing)
API_KEY = web.RequestKey("api_key", bytes)
PROTECTED = frozenset({"/notification", "/notifications", "/notification/{uuid}"})
RETRY_LATER = {"Retry-After": "1"}


class _Reject(Exception):
    """Stop handling a request with this response."""

    def __init__(self, response: web.Response) -> None:
        self.response = response


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


def _json(status: int, body: object, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every request; turn HTTP errors and crashes into problem+json."""
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        keep = {"allow", "retry-after"}
        headers = {k: v for k, v in exc.headers.items() if k.lower() in keep}
        response = problem(exc.status, exc.reason, exc.text or exc.reason, headers=headers)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        response = problem(500, "Internal Server Error", "unexpected error; nothing was accepted")
    route = _route(request)
    _requests(route, response.status).inc()
    _seconds(route).observe(time.perf_counter() - started)
    return response


@functools.cache  # bounded: canonical routes x statuses
def _requests(route: str, status: int) -> prometheus_client.Counter:
    return metrics.HTTP_REQUESTS.labels(route, str(status))


@functools.cache
def _seconds(route: str) -> prometheus_client.Histogram:
    return metrics.HTTP_SECONDS.labels(route)


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """API keys and the per-key rate limit, on the notification routes only (installed only
    when keys are configured)."""
    gate = request.app[GATE]
    if _route(request) not in PROTECTED:
        return await handler(request)
    try:
        key = gate.identify(request.headers.get("Authorization"))
        await gate.admit(key)
    except Unauthorized as exc:
        return problem(401, "Unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"})
    except RateLimited as exc:
        return problem(
            429, "Too Many Requests", str(exc), headers={"Retry-After": str(exc.retry_after)}
        )
    request[API_KEY] = key
    return await handler(request)


async def _read_json(request: web.Request, limit: int) -> object:
    """The JSON body, refusing one over ``limit`` bytes before reading it whole."""
    if request.content_type != "application/json":
        raise _Reject(problem(415, "Unsupported Media Type", "send Content-Type: application/json"))
    length = request.content_length
    if length is not None:
        if length > limit:
            raise _Reject(_too_large(limit))
        return _loads(await request.read())
    chunks: list[bytes] = []  # chunked: count while reading
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise _Reject(_too_large(limit))
        chunks.append(chunk)
    return _loads(b"".join(chunks))


def _loads(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        detail = f"the body is not valid JSON: {exc}"
        raise _Reject(problem(400, "Malformed JSON", detail)) from None


def _too_large(limit: int) -> web.Response:
    return problem(413, "Payload Too Large", f"the body is over {limit} bytes")


def validate(app: web.Application, data: object) -> Notification:
    """A notification that the pipeline can deliver, or :class:`InvalidNotification`."""
    try:
        notification = parse(data)
    except InvalidNotification as exc:
        raise InvalidNotification(exc.errors + _destination_errors(app, data)) from None
    channel = app[CHANNELS].get(notification.channel)
    errors = channel.validate(notification) if channel else _destination_errors(app, data)
    if errors:
        raise InvalidNotification(errors)
    return notification


def _destination_errors(app: web.Application, data: object) -> list[FieldError]:
    raw = data.get("destination") if isinstance(data, dict) else None
    if not isinstance(raw, str):
        return []
    name = raw.strip().lower()
    enabled: dict[str, channels.Channel] = app[CHANNELS]
    if name in enabled:
        return []
    known = ", ".join(sorted(enabled)) or "none"
    reason = channels.disabled(app[SETTINGS]).get(name)
    why = f"channel {name!r} is disabled: {reason}" if reason else f"unknown destination {name!r}"
    return [FieldError("destination", f"{why} (enabled: {known})")]


def _send(
    app: web.Application, notification: Notification, trace: tracing.Headers
) -> asyncio.Future[None]:
    topic = topics.outstanding(app[SETTINGS])
    return app[PRODUCER].send(topic, notification.encode(), key=notification.key, headers=trace)


async def _store_one(
    app: web.Application, notification: Notification, trace: tracing.Headers
) -> None:
    """Wait until the broker holds ``notification``; :class:`_Reject` with 503 otherwise."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(app[SETTINGS].produce_timeout_ms / 1000):
            await _send(app, notification, trace)
    except (KafkaError, TimeoutError) as exc:
        log.warning(
            "not accepted %s: broker did not acknowledge: %r",
            notification.uuid,
            exc,
            extra={"uuid": notification.uuid},
        )
        raise _Reject(_unavailable()) from None
    metrics.PRODUCE_SECONDS.observe(time.perf_counter() - started)


def _unavailable() -> web.Response:
    detail = "the notification could not be stored; retry with the same uuid"
    return problem(503, "Service Unavailable", detail, headers=RETRY_LATER)


def _server_span(request: web.Request) -> tracing.Span | None:
    """The request's span (None while tracing is off), continuing the client's trace."""
    tracer = request.app[TRACING]
    if not tracer.enabled:
        return None
    name = f"{request.method} {_route(request)}"
    return tracer.begin(name, parent=request.headers, kind=tracing.SpanKind.SERVER)


async def post_notification(request: web.Request) -> web.Response:
    span = _server_span(request)
    response = await _accept_one(request, span)
    tracing.end_http(span, response.status)
    return response


async def _accept_one(request: web.Request, span: tracing.Span | None) -> web.Response:
    limit = request.app[SETTINGS].max_body_bytes
    try:
        notification = validate(request.app, await _read_json(request, limit))
        if span is not None:
            tracing.annotate(span, uuid=str(notification.uuid), channel=notification.channel)
        await _store_one(request.app, notification, tracing.headers(span))
    except _Reject as reject:
        return reject.response
    except InvalidNotification as exc:
        return problem(422, "Invalid notification", str(exc), errors=exc.errors)
    return _json(202, {"uuid": str(notification.uuid), "status": "accepted"})


async def post_notifications(request: web.Request) -> web.Response:
    """Up to ``max_batch_items`` notifications; each item is accepted or rejected on its own.
    With tracing on, the items share the request's trace."""
    span = _server_span(request)
    response = await _accept_batch(request, tracing.headers(span))
    tracing.end_http(span, response.status)
    return response


async def _accept_batch(request: web.Request, trace: tracing.Headers) -> web.Response:
    app = request.app
    settings = app[SETTINGS]
    try:
        items = _batch_items(settings, await _read_json(request, settings.max_batch_bytes))
        if API_KEY in request and len(items) > 1:
            await app[GATE].admit(request[API_KEY], len(items) - 1)
    except _Reject as reject:
        return reject.response
    except RateLimited as exc:
        return problem(
            429, "Too Many Requests", str(exc), headers={"Retry-After": str(exc.retry_after)}
        )
    results: list[dict[str, Any]] = []
    pending: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
    for index, item in enumerate(items):
        try:
            n = validate(app, item)
        except InvalidNotification as exc:
            results.append(
                {"index": index, "status": "rejected", "errors": [e.as_dict() for e in exc.errors]}
            )
            continue
        result = {"index": index, "uuid": str(n.uuid), "status": "accepted"}
        results.append(result)
        pending.append((result, _send(app, n, trace)))
    await _settle_batch(app[SETTINGS], pending)
    return _batch_response(results, stored=len(pending))


def _batch_items(settings: Settings, data: object) -> list[object]:
    if not isinstance(data, list) or not data:
        error = FieldError("", "expected a non-empty JSON array of notifications")
        raise _Reject(problem(422, "Invalid batch", error.message, errors=[error]))
    if len(data) > settings.max_batch_items:
        detail = f"a batch holds at most {settings.max_batch_items} notifications, got {len(data)}"
        raise _Reject(problem(413, "Payload Too Large", detail))
    return data


async def _settle_batch(
    settings: Settings, pending: list[tuple[dict[str, Any], asyncio.Future[None]]]
) -> None:
    """Wait for every acknowledgement up to the produce timeout; mark the rest unavailable."""
    if not pending:
        return
    futures = [f for _, f in pending]
    await asyncio.wait(futures, timeout=settings.produce_timeout_ms / 1000)
    for result, future in pending:
        if not future.done() or future.exception() is not None:
            result["status"] = "unavailable"
            if not future.done():
                future.cancel()


def _batch_response(results: list[dict[str, Any]], *, stored: int) -> web.Response:
    counts = {
        s: sum(r["status"] == s for r in results) for s in ("accepted", "rejected", "unavailable")
    }
    body = {**counts, "results": results}
    if counts["unavailable"] and counts["unavailable"] == stored:
        return _json(503, body, RETRY_LATER)
    return _json(200, body, RETRY_LATER if counts["unavailable"] else None)


async def get_notification(request: web.Request) -> web.Response:
    try:
        uid = uuid_mod.UUID(request.match_info["uuid"])
    except ValueError:
        error = FieldError("uuid", "must be a UUID")
        return problem(422, "Invalid uuid", "the path must end with a UUID", errors=[error])
    try:
        state = await request.app[STORE].get(uid)
    except StoreUnavailable:
        return problem(
            503, "Service Unavailable", "the database is unreachable", headers=RETRY_LATER
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
    # Accepting needs only the broker; a database outage degrades GET /notification/{uuid}
    # but must not take the receiver out of rotation.
    ready = checks["broker"] == "ok"
    status = "unavailable" if not ready else "ready" if checks["database"] == "ok" else "degraded"
    return _json(200 if ready else 503, {"status": status, **checks})


async def metrics_page(_request: web.Request) -> web.Response:
    body = prometheus_client.generate_latest()
    return web.Response(body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=request.app[DOCS]["json"], content_type="application/json")


async def docs_page(request: web.Request) -> web.Response:
    return web.Response(body=request.app[DOCS]["html"], content_type="text/html")


def create_app(settings: Settings) -> web.Application:
    """The receiver's application; its producer and store start with the app."""
    gate = Gate(settings.api_keys, rate_per_second=settings.rate_limit_per_key)
    middlewares = [observe, authenticate] if gate.enabled else [observe]
    app = web.Application(middlewares=middlewares, client_max_size=settings.max_batch_bytes)
    app[SETTINGS] = settings
    app[PRODUCER] = Producer(
        settings, client_id="notifsvc-receiver", linger_ms=2, timeout_ms=settings.produce_timeout_ms
    )
    app[STORE] = Store(settings.dsn, max_connections=4, attempts=2)
    app[CHANNELS] = channels.enabled(settings)
    app[GATE] = gate
    app[TRACING] = tracing.Tracing(settings, "notifsvc-receiver")
    doc = openapi.document(settings, app[CHANNELS])
    app[DOCS] = {"json": orjson.dumps(doc), "html": openapi.render_html(doc).encode()}
    app.router.add_post("/notification", post_notification)
    app.router.add_post("/notifications", post_notifications)
    app.router.add_get("/notification/{uuid}", get_notification)
    for path, handler in (
        ("/healthz", healthz),
        ("/readyz", readyz),
        ("/metrics", metrics_page),
        ("/openapi.json", openapi_json),
        ("/docs", docs_page),
    ):
        app.router.add_get(path, handler)
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
    return app


async def _start(app: web.Application) -> None:
    app[TRACING].start()
    await app[PRODUCER].start()
    await app[STORE].start()
    for name, reason in channels.disabled(app[SETTINGS]).items():
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
