"""Operator routes: replay jobs (``POST /replays``, ``GET /replays``, ``GET /replays/{id}``).

The receiver only checks the request and stores the job (:mod:`notifsvc.db.replays`); the
routers work on it (:mod:`notifsvc.replays`), so a replay of 100,000 notifications costs the
receiver one insert, and goes on whichever process is restarted.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from notifsvc import channels
from notifsvc import openapi as doc
from notifsvc.api.context import SETTINGS
from notifsvc.api.handlers import database_down
from notifsvc.api.plumbing import Reject, add_route, json_response, problem, read_json
from notifsvc.api.validation import Validator, anycase
from notifsvc.config import Settings
from notifsvc.db.replays import JOB_ID, RECENT_LIMIT, ReplayStore
from notifsvc.db.store import StoreUnavailable
from notifsvc.model import FieldError, Reason
from notifsvc.replays import NARROWING, InvalidReplay, parse_filter

log = logging.getLogger(__name__)

#: The receiver's store of replay jobs (a small pool of its own, opened with the app).
REPLAYS = web.AppKey("replays", ReplayStore)
_TIME = {"type": "string", "format": "date-time"}
_COUNT = {"type": "integer", "minimum": 0}
#: A job as every route answers it.
JOB_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "id",
        "state",
        "filter",
        "matched",
        "requeued",
        "skipped",
        "created_at",
        "updated_at",
        "finished_at",
    ],
    "properties": {
        "id": {"type": "string", "pattern": f"^{JOB_ID.pattern}$"},
        "state": {"type": "string", "enum": ["running", "done"]},
        "filter": {"type": "object", "description": "as posted, normalised (times in UTC)"},
        "matched": _COUNT | {"description": "failed rows the job selected so far"},
        "requeued": _COUNT | {"description": "of those, rows it sent to the low lane"},
        "skipped": _COUNT | {"description": "of those, rows no longer failed when flipped"},
        "created_at": _TIME,
        "updated_at": _TIME,
        "finished_at": {"type": ["string", "null"], "format": "date-time"},
    },
}


def add_routes(app: web.Application) -> None:
    """Register this module's routes on the receiver's application."""
    app[REPLAYS] = ReplayStore(app[SETTINGS].database, max_connections=2, attempts=2)
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
    add_route(app, "POST", "/replays", post_replay)
    add_route(app, "GET", "/replays", list_replays)
    add_route(app, "GET", "/replays/{id}", get_replay)


async def _start(app: web.Application) -> None:
    await app[REPLAYS].start()


async def _stop(app: web.Application) -> None:
    await app[REPLAYS].stop()


async def post_replay(request: web.Request) -> web.Response:
    """Store a replay job for the failed notifications the body's filter matches."""
    try:
        data = await read_json(request, request.app[SETTINGS].max_body_bytes)
        job = await request.app[REPLAYS].create(parse_filter(data))
    except Reject as reject:
        return reject.response
    except InvalidReplay as exc:
        return problem(422, "Invalid replay", str(exc), errors=exc.errors)
    except StoreUnavailable:
        return database_down()
    log.info("replay %s: requested for %s", job.id, job.filter.view())
    return json_response(202, job.view(), headers={"Location": f"/replays/{job.id}"})


async def get_replay(request: web.Request) -> web.Response:
    """One job's progress."""
    job_id = request.match_info["id"]
    if not JOB_ID.fullmatch(job_id):
        error = FieldError("id", "must be a replay job id: rpl_ and 32 lower-case hex digits")
        return problem(422, "Invalid replay id", error.message, errors=[error])
    try:
        job = await request.app[REPLAYS].job(job_id)
    except StoreUnavailable:
        return database_down()
    if job is None:
        return problem(404, "Not Found", f"no replay job {job_id}")
    return json_response(200, job.view())


async def list_replays(request: web.Request) -> web.Response:
    """The newest jobs first."""
    if request.query:
        unknown = sorted(set(request.query))
        errors = [FieldError(name, "is not a known parameter (there are none)") for name in unknown]
        detail = f"GET /replays takes no parameters, got {', '.join(unknown)}"
        return problem(422, "Invalid parameters", detail, errors=errors)
    try:
        jobs = await request.app[REPLAYS].recent()
    except StoreUnavailable:
        return database_down()
    return json_response(200, {"items": [j.view() for j in jobs]})


def openapi(
    settings: Settings, validator: Validator, errors: dict[str, tuple[str, str]]
) -> dict[str, Any]:
    """This module's paths in the receiver's OpenAPI document (see ``openapi.PathsOf``)."""
    keyed = [errors[k] for k in ("401", "429") if k in errors]
    down = ("503", "The database is unreachable")
    job = JOB_SCHEMA
    post = {
        "summary": "Send the failed notifications a filter matches again, as a background job",
        "description": "At least one of channel, since, until, reason is required (a replay "
        "without any would resend every failed notification). Rows go to their channel's "
        "low-priority lane, paced; a row is requeued at most once however often it is asked.",
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": request_schema()}},
        },
        "responses": doc.answer_json("202", "Stored; Location names the job", job)
        | doc.answer_problems(
            ("400", "Malformed JSON"),
            ("413", "Body larger than the configured limit"),
            ("415", "Content-Type is not application/json"),
            ("422", "Invalid filter, or no filter at all; every failing field is listed"),
            down,
            *keyed,
        ),
    }
    listed = {"type": "object", "properties": {"items": {"type": "array", "items": job}}}
    by_id = {"type": "string", "pattern": f"^{JOB_ID.pattern}$"}
    return {
        "/replays": {
            "post": post,
            "get": {
                "summary": f"The newest replay jobs first (at most {RECENT_LIMIT})",
                "responses": doc.answer_json("200", "Jobs", listed)
                | doc.answer_problems(("422", "A query parameter (there are none)"), down, *keyed),
            },
        },
        "/replays/{id}": {
            "get": {
                "summary": "A replay job's progress: matched, requeued, skipped",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": by_id}],
                "responses": doc.answer_json("200", "The job", job)
                | doc.answer_problems(
                    ("404", "No such job"), ("422", "Not a job id"), down, *keyed
                ),
            }
        },
    }


def request_schema() -> dict[str, Any]:
    """The body of ``POST /replays`` (a field that is null counts as not given). That
    ``since`` comes before ``until`` is said in words only."""
    instant = {"type": ["string", "null"], "format": "date-time"}
    properties = {
        "channel": {"type": ["string", "null"], "pattern": anycase(sorted(channels.REGISTRY))},
        "state": {"type": ["string", "null"], "enum": ["failed", None], "default": "failed"},
        "since": instant | {"description": "received at or after (RFC 3339, with offset)"},
        "until": instant | {"description": "received before (RFC 3339, with offset)"},
        "reason": {"type": ["string", "null"], "enum": [*(r.value for r in Reason), None]},
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "anyOf": [
            {"required": [name], "properties": {name: {"type": "string"}}} for name in NARROWING
        ],
    }
