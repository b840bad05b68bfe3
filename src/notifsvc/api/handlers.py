"""The receiver's routes: one function each."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid as uuid_mod
from typing import Any

import msgspec
import prometheus_client
from aiohttp import web

from notifsvc import tracing
from notifsvc.api import recent
from notifsvc.api.context import (
    API_KEY,
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
from notifsvc.api.plumbing import (
    RETRY_LATER,
    TALLY,
    Reject,
    json_response,
    problem,
    read_json,
    route_of,
    too_many_requests,
)
from notifsvc.auth import RateLimited
from notifsvc.config import Settings
from notifsvc.db.store import StoreUnavailable
from notifsvc.kafka import KafkaError
from notifsvc.model import FieldError, InvalidNotification, Notification, uuid_text

log = logging.getLogger(__name__)

#: An accepted batch item: its result entry, its produce future and its UUID's integer.
Pending = list[tuple[dict[str, Any], asyncio.Future[None], int]]


async def _store(ingress: Ingress, key: bytes, value: bytes, trace: tracing.Headers) -> None:
    """Wait until the broker holds ``value`` (keyed by the UUID's text ``key``);
    :class:`Reject` with 503 otherwise (at the latest after the produce timeout)."""
    started = time.perf_counter()
    try:
        within, topic = ingress.within, ingress.topic
        await ingress.producer.send_within(within, topic, value, key=key, headers=trace)
    except KafkaError as exc:
        _not_acknowledged(key.decode(), exc)
        raise Reject(_unavailable()) from None
    TALLY.produced(time.perf_counter() - started)


def _not_acknowledged(uid: str, exc: KafkaError) -> None:
    log.warning("not accepted %s: broker did not acknowledge: %r", uid, exc, extra={"uuid": uid})


def _unavailable() -> web.Response:
    detail = "the notification could not be stored; retry with the same uuid"
    return problem(503, "Service Unavailable", detail, headers=RETRY_LATER)


def _server_span(request: web.Request, tracer: tracing.Tracing) -> tracing.Span | None:
    """The request's span (None while tracing is off), continuing the client's trace."""
    if not tracer.enabled:
        return None
    name = f"{request.method} {route_of(request)}"
    return tracer.begin(name, parent=request.headers, kind=tracing.SpanKind.SERVER)


async def post_notification(request: web.Request) -> web.Response:
    ingress = request.app[INGRESS]
    span = _server_span(request, ingress.tracing)
    response = await _accept_one(request, ingress, span)
    tracing.end_http(span, response.status)
    return response


async def _accept_one(
    request: web.Request, ingress: Ingress, span: tracing.Span | None
) -> web.Response:
    try:
        data = await read_json(request, ingress.max_body_bytes)
        text, number, value = _accepted(request, ingress, data, span, API_KEY in request)
        key = text.encode()
        await _store(ingress, key, value, tracing.headers(span))
    except Reject as reject:
        return reject.response
    except InvalidNotification as exc:
        return problem(422, "Invalid notification", str(exc), errors=exc.errors)
    ingress.recent.add_ints((number,))
    body = b'{"uuid":"' + key + b'","status":"accepted"}'
    return web.Response(status=202, body=body, content_type="application/json")


def _accepted(
    request: web.Request,
    ingress: Ingress,
    data: object,
    span: tracing.Span | None,
    keyed: bool,
) -> tuple[str, int, bytes]:
    """The accepted notification's UUID (canonical text, integer) and the value to write.
    An ordinary request with no API key to stamp and no span to annotate needs no
    :class:`Notification` or UUID object (:meth:`Validator.plain_record`: the same value,
    which unit/api/test_accept_plain.py checks); anything else is validated in full.
    ``keyed``: whether the request came with an API key (``request`` is a Python-level
    mapping, so a batch asks once, not per item)."""
    if span is None and not keyed:
        plain = ingress.validator.plain_record(data)
        if plain is not None:
            return plain
    n = ingress.validator.validate(data)
    if keyed:
        n = _stamp(request, n)
    text = uuid_text(n.uuid)
    if span is not None:
        tracing.annotate(span, uuid=text, channel=n.channel)
    return text, n.uuid.int, n.encode()


def _stamp(request: web.Request, n: Notification) -> Notification:
    """The API key's id on ``n`` (its callbacks are signed with the key's secrets), and the
    key's default callback URL when ``n`` names none. Only for a request with a key."""
    client = request[API_KEY][:8].hex()
    clients = request.app[SETTINGS].callback_clients
    url = n.callback_url or (clients.url(client) if clients is not None else None)
    return msgspec.structs.replace(n, client=client, callback_url=url)


async def post_notifications(request: web.Request) -> web.Response:
    """Up to ``max_batch_items`` notifications; each item is accepted or rejected on its own.
    With tracing on, the items share the request's trace."""
    span = _server_span(request, request.app[TRACING])
    response = await _accept_batch(request, tracing.headers(span))
    tracing.end_http(span, response.status)
    return response


async def _accept_batch(request: web.Request, trace: tracing.Headers) -> web.Response:
    app = request.app
    settings = app[SETTINGS]
    try:
        items = _batch_items(settings, await read_json(request, settings.max_batch_bytes))
        if API_KEY in request:  # authenticate() took one unit already
            await app[GATE].admit(request[API_KEY], len(items), prepaid=1)
    except Reject as reject:
        return reject.response
    except RateLimited as exc:
        return too_many_requests(exc)
    results: list[dict[str, Any]] = []
    pending: Pending = []
    ingress = app[INGRESS]
    send = ingress.producer.send
    keyed = API_KEY in request
    for index, item in enumerate(items):
        try:
            text, number, value = _accepted(request, ingress, item, None, keyed)
        except InvalidNotification as exc:
            errors = [e.as_dict() for e in exc.errors]
            results.append({"index": index, "status": "rejected", "errors": errors})
            continue
        result = {"index": index, "uuid": text, "status": "accepted"}
        results.append(result)
        future = send(ingress.topic, value, key=text.encode(), headers=trace)
        pending.append((result, future, number))
    await _settle_batch(settings, pending)
    ingress.recent.add_ints(number for r, _, number in pending if r["status"] == "accepted")
    return _batch_response(results, stored=len(pending))


def _batch_items(settings: Settings, data: object) -> list[object]:
    if not isinstance(data, list) or not data:
        error = FieldError("", "expected a non-empty JSON array of notifications")
        raise Reject(problem(422, "Invalid batch", error.message, errors=[error]))
    if len(data) > settings.max_batch_items:
        detail = f"a batch holds at most {settings.max_batch_items} notifications, got {len(data)}"
        raise Reject(problem(422, "Invalid batch", detail, errors=[FieldError("", detail)]))
    return data


async def _settle_batch(settings: Settings, pending: Pending) -> None:
    """Wait for every acknowledgement up to the produce timeout; mark the rest unavailable."""
    if not pending:
        return
    futures = [f for _, f, _ in pending]
    await asyncio.wait(futures, timeout=settings.produce_timeout_ms / 1000)
    for result, future, _ in pending:
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
        return json_response(503, body, RETRY_LATER)
    return json_response(200, body, RETRY_LATER if counts["unavailable"] else None)


def path_uuid(request: web.Request) -> uuid_mod.UUID:
    """The ``{uuid}`` of the path; :class:`Reject` with 422 when it is not one."""
    uid = request.app[VALIDATOR].parse_uuid(request.match_info["uuid"])
    if uid is None:
        error = FieldError("uuid", "must be a UUID")
        raise Reject(
            problem(422, "Invalid uuid", "the path must name a notification's UUID", errors=[error])
        )
    return uid


def database_down() -> web.Response:
    return problem(503, "Service Unavailable", "the database is unreachable", headers=RETRY_LATER)


async def get_notification(request: web.Request) -> web.Response:
    try:
        uid = path_uuid(request)
        state = await request.app[STORE].get(uid)
    except Reject as reject:
        return reject.response
    except StoreUnavailable:
        return database_down()
    if state is None:
        return not_stored(request.app, uid)
    return json_response(200, state)


async def get_attempts(request: web.Request) -> web.Response:
    """Every send attempt of one notification, oldest first (see :mod:`notifsvc.attempts`)."""
    try:
        uid = path_uuid(request)
        attempts = await request.app[STORE].attempts(uid)
    except Reject as reject:
        return reject.response
    except StoreUnavailable:
        return database_down()
    if attempts is None:
        return not_stored(request.app, uid)
    return json_response(200, {"uuid": str(uid), "attempts": attempts})


def not_stored(app: web.Application, uid: uuid_mod.UUID) -> web.Response:
    """404 either way; one this receiver accepted lately says it is in flight, not lost."""
    age = app[RECENT].age(uid)
    if age is None:
        window = f"{recent.WINDOW_SECONDS / 60:.0f} minutes"
        detail = f"no notification {uid} is stored (nor accepted here in the last {window})"
        return problem(404, "Not Found", detail)
    detail = (
        f"notification {uid} was accepted {age:.1f} s ago and is not stored yet: it is in "
        "flight, not lost; ask again in a moment"
    )
    extra = {"uuid": str(uid), "state": "accepted"}
    return problem(404, "Not Found", detail, headers=RETRY_LATER, extra=extra)


async def healthz(_request: web.Request) -> web.Response:
    return json_response(200, {"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness, open to anyone: says "unavailable" for a dependency that is down, never
    why (that is logged at WARNING): error text may name hosts, users and databases."""
    checks: dict[str, str] = {}
    try:
        await asyncio.to_thread(request.app[PRODUCER].ping, 2.0)
        checks["broker"] = "ok"
    except KafkaError as exc:
        log.warning("not ready: the broker is unavailable: %s", exc)
        checks["broker"] = "unavailable"
    try:
        await request.app[STORE].ping()
        checks["database"] = "ok"
    except StoreUnavailable as exc:
        log.warning("degraded: the database is unavailable: %s", exc)
        checks["database"] = "unavailable"
    # Accepting needs only the broker; a database outage degrades GET /notification/{uuid}
    # but must not take the receiver out of rotation.
    ready = checks["broker"] == "ok"
    status = "unavailable" if not ready else "ready" if checks["database"] == "ok" else "degraded"
    return json_response(200 if ready else 503, {"status": status, **checks})


async def metrics_page(_request: web.Request) -> web.Response:
    body = prometheus_client.generate_latest()
    return web.Response(body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=request.app[DOCS]["json"], content_type="application/json")


async def docs_page(request: web.Request) -> web.Response:
    return web.Response(body=request.app[DOCS]["html"], content_type="text/html")
