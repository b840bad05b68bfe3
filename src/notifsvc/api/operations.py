"""Operator routes: list notifications, cancel one, retry a failed one.

Each decision is one conditional statement in the database (:mod:`notifsvc.db.store`),
so two operators, or an operator and the pipeline, racing on one notification never both
win: a cancel takes only a row nothing was sent for (received or forwarded) and the
notificator's claim takes only a row not canceled; a retry takes only a row still failed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web

from notifsvc import channels, headers, metrics, topics
from notifsvc.api.context import PRODUCER, SETTINGS, STORE
from notifsvc.api.handlers import database_down, not_stored, path_uuid
from notifsvc.api.plumbing import Reject, add_route, json_response, problem
from notifsvc.api.validation import Validator
from notifsvc.config import Settings
from notifsvc.db import queries
from notifsvc.db.store import Requeued, StoreUnavailable
from notifsvc.kafka import KafkaError
from notifsvc.model import Priority, Reason, State
from notifsvc.openapi import answer_json, answer_problems

log = logging.getLogger(__name__)

#: Why a cancel is refused (409), by state.
_NOT_CANCELABLE = {
    State.SENDING: "it is being sent: too late to cancel",
    State.SENT: "it was sent: too late to cancel",
    State.FAILED: "it failed for good: nothing more will be sent (unless it is retried)",
}
_NOT_RETRIABLE = "only a failed notification can be retried"


def add_routes(app: web.Application) -> None:
    """Register this module's routes on the receiver's application."""
    add_route(app, "GET", "/notifications", list_notifications)
    add_route(app, "DELETE", "/notification/{uuid}", cancel_notification)
    add_route(app, "POST", "/notification/{uuid}/retry", retry_notification)


async def list_notifications(request: web.Request) -> web.Response:
    """``GET /notifications``: a page, newest first (see :mod:`notifsvc.db.queries`)."""
    try:
        query = queries.parse(request.query.items(), channels.REGISTRY)
        page = await request.app[STORE].list_page(query)
    except queries.InvalidQuery as exc:
        return problem(422, "Invalid query", str(exc), errors=exc.errors)
    except StoreUnavailable:
        return database_down()
    return json_response(200, page.as_json())


async def cancel_notification(request: web.Request) -> web.Response:
    """``DELETE /notification/{uuid}``: 200 canceled (again, if it was already), 409 when
    something may have been sent, 404 unknown."""
    try:
        uid = path_uuid(request)
        row, canceled = await request.app[STORE].cancel(uid)
    except Reject as reject:
        return reject.response
    except StoreUnavailable:
        return database_down()
    if row is None:
        return not_stored(request.app, uid)
    if row["state"] != State.CANCELED:
        return _conflict(row, _NOT_CANCELABLE.get(row["state"], "it cannot be canceled now"))
    if canceled:
        metrics.CANCELED.labels(row["channel"]).inc()
    log.info("canceled %s", uid, extra={"uuid": uid})
    return json_response(200, row)


async def retry_notification(request: web.Request) -> web.Response:
    """``POST /notification/{uuid}/retry``: a failed notification back to ``forwarded``,
    then its message to the channel's low-priority lane; 202 once it is requeued."""
    app = request.app
    try:
        uid = path_uuid(request)
        requeued = await app[STORE].requeue_failed([uid])
        row = requeued[0].view if requeued else await app[STORE].get(uid)
    except Reject as reject:
        return reject.response
    except StoreUnavailable:
        return database_down()
    if row is None:
        return not_stored(app, uid)
    if not requeued:
        return _conflict(row, _NOT_RETRIABLE)
    await _produce(app, requeued[0])
    return json_response(202, row)


async def _produce(app: web.Application, requeued: Requeued) -> None:
    """The retry's message, to the low-priority lane: its attempts so far numbered on, and
    none of them counted against the attempt budget. Should the broker not take it, the
    row is ``forwarded`` and unmoved, so the reconciler sends it after
    ``NOTIFSVC_REDRIVE_AFTER_SECONDS``: the retry is done either way, only later."""
    settings, n = app[SETTINGS], requeued.notification
    done = requeued.attempts
    hop = ((headers.ATTEMPTS, str(done).encode()), *headers.replayed(done, time.time()))
    topic = topics.channel(settings, n.channel, "low")
    try:
        async with asyncio.timeout(settings.produce_timeout_ms / 1000):
            await app[PRODUCER].send(topic, n.encode(), key=n.key, headers=hop)
    except (KafkaError, TimeoutError) as exc:
        log.warning(
            "retry of %s: requeued, but %s did not take its message (%r); the reconciler "
            "sends it within %d s",
            n.uuid,
            topic,
            exc,
            settings.redrive_after_seconds + settings.redrive_period_seconds,
            extra={"uuid": n.uuid},
        )
        return
    metrics.REQUEUED.labels(n.channel, "retry").inc()
    log.info("retry of %s: requeued to %s", n.uuid, topic, extra={"uuid": n.uuid})


def _conflict(row: dict[str, Any], why: str) -> web.Response:
    detail = f"notification {row['uuid']} is {row['state']}: {why}"
    return problem(409, "Conflict", detail, extra={"uuid": row["uuid"], "state": row["state"]})


def openapi(
    settings: Settings, validator: Validator, errors: dict[str, tuple[str, str]]
) -> dict[str, Any]:
    """This module's paths in the receiver's OpenAPI document (see ``openapi.PathsOf``)."""
    keyed = [errors[k] for k in ("401", "429") if k in errors]
    down = ("503", "The database is unreachable")
    return {
        "/notifications": {"get": _list_doc(keyed, down)},
        "/notification/{uuid}": {"delete": _cancel_doc(validator, keyed, down)},
        "/notification/{uuid}/retry": {"post": _retry_doc(validator, keyed, down)},
    }


_STATE = {"$ref": "#/components/schemas/State"}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema, "description": description}


def _list_parameters() -> list[dict[str, Any]]:
    def enum(values: list[str]) -> dict[str, Any]:
        return {"type": "string", "enum": values}

    time = {"type": "string", "format": "date-time"}
    limit = {"type": "integer", "minimum": 1, "maximum": queries.MAX_LIMIT}
    cursor = {"type": "string", "pattern": "^[A-Za-z0-9_-]+$", "maxLength": 512}
    return [
        _query("state", enum([s.value for s in State]), "Only notifications in this state."),
        _query("channel", enum(sorted(channels.REGISTRY)), "Only this channel's."),
        _query("priority", enum([p.value for p in Priority]), "Only this priority's."),
        _query("reason", enum([r.value for r in Reason]), "Only those failed for this reason."),
        _query("since", time, "Received at or after (RFC 3339, offset required: '+' as %2B)."),
        _query("until", time, "Received before."),
        _query("limit", limit | {"default": queries.DEFAULT_LIMIT}, "Items per page."),
        _query(
            "cursor",
            cursor,
            "`next_cursor` of the previous page, as is, with the same filter (anything else "
            "is refused).",
        ),
    ]


def _list_doc(keyed: list[tuple[str, str]], down: tuple[str, str]) -> dict[str, Any]:
    page = {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": _STATE, "maxItems": queries.MAX_LIMIT},
            "next_cursor": {"type": ["string", "null"]},
        },
    }
    invalid = "An unknown or repeated parameter, a bad value, or a cursor that was altered or "
    return {
        "summary": "Notifications newest first, filtered, a page at a time",
        "description": "Keyset pages: each row once, however many arrive meanwhile. "
        "`next_cursor` is null on the last page.",
        "parameters": _list_parameters(),
        "responses": answer_json("200", "A page", page)
        | answer_problems(("422", invalid + "issued for another filter"), down, *keyed),
    }


def _path(validator: Validator) -> list[dict[str, Any]]:
    uuid = validator.rules["uuid"].schema()
    return [{"name": "uuid", "in": "path", "required": True, "schema": uuid}]


def _cancel_doc(
    validator: Validator, keyed: list[tuple[str, str]], down: tuple[str, str]
) -> dict[str, Any]:
    return {
        "summary": "Cancel a notification nothing was sent for yet (received or forwarded)",
        "parameters": _path(validator),
        "responses": answer_json("200", "Canceled (now or before)", _STATE)
        | answer_problems(
            ("404", "Not stored (yet)"),
            ("409", "Being sent, sent or failed: `state` says which"),
            ("422", "Not a UUID"),
            down,
            *keyed,
        ),
    }


def _retry_doc(
    validator: Validator, keyed: list[tuple[str, str]], down: tuple[str, str]
) -> dict[str, Any]:
    return {
        "summary": "Send a failed notification again, through the low-priority lane",
        "description": "Its attempts so far stay on record and do not count against the "
        "attempt budget.",
        "parameters": _path(validator),
        "responses": answer_json("202", "Requeued (state forwarded)", _STATE)
        | answer_problems(
            ("404", "Not stored (yet)"),
            ("409", "Not failed: `state` says what it is"),
            ("422", "Not a UUID"),
            down,
            *keyed,
        ),
    }
