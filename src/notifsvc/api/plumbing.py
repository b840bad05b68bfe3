"""HTTP mechanics of the receiver: problem+json, bounded body reading, and the routes'
common wrapper (metrics, errors as problem+json, API keys)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import prometheus_client
from aiohttp import web
from aiohttp.web import RequestPayloadError

from notifsvc import metrics
from notifsvc.api.context import API_KEY, GATE
from notifsvc.auth import Gate, RateLimited, Unauthorized
from notifsvc.model import FieldError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
RETRY_LATER = {"Retry-After": "1"}
#: The route name of requests no route takes (404, 405) in the request metrics.
UNMATCHED = "unmatched"
#: Routes open to anyone: probes, metrics, the API's document, and the console's static
#: shell (which holds no data: every figure it shows comes from a protected route). Every
#: other route needs an API key (when keys are configured) and spends the key's rate budget;
#: a path that matches no route is answered 404 without one.
PUBLIC = frozenset(
    {
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/console",
        "/console/{asset}",
        UNMATCHED,
    }
)
#: Bytes read from a request body at a time.
READ_CHUNK = 64 * 1024
#: Content-Encodings aiohttp undoes while the body is read (``br`` needs Brotli installed).
DECODED = frozenset({"gzip", "deflate", "br"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Reject(Exception):
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
    extra: dict[str, Any] | None = None,
) -> web.Response:
    """An RFC 9457 problem details response; ``extra`` adds extension members."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = [e.as_dict() for e in errors]
    if extra:
        body |= extra
    return web.Response(
        status=status, body=orjson.dumps(body), content_type=PROBLEM_JSON, headers=headers
    )


def json_response(status: int, body: object, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def too_many_requests(exc: RateLimited) -> web.Response:
    """429; with ``Retry-After`` unless waiting cannot help (see :class:`RateLimited`)."""
    headers = None if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
    return problem(429, "Too Many Requests", str(exc), headers=headers)


def route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


async def read_json(request: web.Request, limit: int) -> object:
    """The JSON body, refusing one over ``limit`` bytes without reading it whole.

    The limit counts the bytes as the handler sees them, after aiohttp undid any
    ``Content-Encoding`` (gzip, deflate, br): a small compressed body that inflates past the
    limit is refused as soon as it does.
    """
    headers = request.headers
    length = request.content_length
    if (
        headers.get("Content-Type") == "application/json"
        and "Content-Encoding" not in headers
        and length is not None
        and length <= limit
    ):  # the common case, without parsing the media type's parameters
        return _loads(await _read_exactly(request))
    if request.content_type != "application/json":
        raise Reject(problem(415, "Unsupported Media Type", "send Content-Type: application/json"))
    encoding = headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in DECODED | {"", "identity"}:
        detail = "Content-Encoding must be one of identity, gzip, deflate or br"
        raise Reject(problem(415, "Unsupported Media Type", detail))
    if encoding in {"", "identity"} and length is not None:
        if length > limit:
            raise Reject(_too_large(limit))
        return _loads(await _read_exactly(request))
    try:
        return _loads(await _read_upto(request, limit))
    except RequestPayloadError as exc:  # a body its Content-Encoding does not decode, ...
        log.info("unreadable request body: %s", exc)
        detail = "the body could not be read; does it match its Content-Encoding?"
        raise Reject(problem(400, "Unreadable body", detail)) from None


async def _read_exactly(request: web.Request) -> bytes:
    """Exactly Content-Length bytes: no more."""
    try:
        return await request.read()
    except RequestPayloadError as exc:
        log.info("unreadable request body: %s", exc)
        detail = "the body could not be read; does it match its Content-Encoding?"
        raise Reject(problem(400, "Unreadable body", detail)) from None


async def _read_upto(request: web.Request, limit: int) -> bytes:
    """The body (chunked, or decompressed), counted while it is read."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise Reject(_too_large(limit))
        chunks.append(chunk)
    return b"".join(chunks)


def _loads(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        detail = f"the body is not valid JSON: {exc}"
        raise Reject(problem(400, "Malformed JSON", detail)) from None


def _too_large(limit: int) -> web.Response:
    return problem(413, "Payload Too Large", f"the body is over {limit} bytes")


def add_route(app: web.Application, method: str, path: str, handler: Handler) -> None:
    """Register ``handler`` for ``method`` and ``path`` (a GET answers HEAD too), wrapped
    by :func:`observed` under the path's canonical form: every route of the receiver is
    registered here."""
    resource = app.router.add_resource(path)
    wrapped = observed(app, resource.canonical, handler)
    for each in ("HEAD", "GET") if method == "GET" else (method,):
        resource.add_route(each, wrapped)


def add_unmatched(app: web.Application) -> None:
    """The last route: any other path or method is answered 404 or 405 as problem+json
    (any path: ``.`` would not match a newline, which a path may hold as ``%0A``)."""
    app.router.add_route("*", r"/{unmatched:[\s\S]*}", observed(app, UNMATCHED, unmatched))


def observed(app: web.Application, route: str, handler: Handler) -> Handler:
    """``handler`` counted and timed under ``route``, its HTTP errors and crashes turned
    into problem+json, and (when API keys are configured and ``route`` is not public)
    behind :func:`authenticate`.

    A wrapper per route, not aiohttp middlewares: those cost every request a cached
    lookup of the chain and two more coroutines to step through each time the handler
    resumes (about 10 % of a request's CPU in ``make bench-cost``)."""
    gate = app[GATE] if app[GATE].enabled and route not in PUBLIC else None

    async def handle(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            if gate is None:
                response = await handler(request)
            else:
                response = await authenticate(request, gate, handler)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = _http_problem(exc)
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            response = problem(500, "Internal Server Error", _CRASHED)
        TALLY.request(route, response.status, time.perf_counter() - started)
        return response

    return functools.update_wrapper(handle, handler)


_CRASHED = "unexpected error; nothing was accepted"


def _http_problem(exc: web.HTTPException) -> web.Response:
    keep = {"allow", "retry-after"}
    headers = {k: v for k, v in exc.headers.items() if k.lower() in keep}
    return problem(exc.status, exc.reason, exc.text or exc.reason, headers=headers)


async def unmatched(request: web.Request) -> web.Response:
    """No route has this path (404), or none of its routes this method (405)."""
    own = request.match_info.route.resource
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not own:
            allowed |= (await resource.resolve(request))[1]
    if not allowed:
        return problem(404, "Not Found", f"no route {request.path}")
    methods = ", ".join(sorted(allowed))
    detail = f"{request.method} is not allowed on {request.path}; allowed: {methods}"
    return problem(405, "Method Not Allowed", detail, headers={"Allow": methods})


class Tally:
    """The request metrics of one event-loop iteration, recorded together at its end.

    A counter increment and a histogram observation per request took a lock per bucket
    and per sum each (with the produce time, 3 % of the receiver's samples at a few
    thousand requests/s). The observations of an iteration are kept in lists and recorded
    once, in a callback the first of them schedules: a scrape, which comes in a later
    iteration, sees every request answered before it, with the same values as if each had
    been recorded at once (unit/api/test_tally.py).
    """

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, int]] = Counter()
        self._seconds: dict[str, metrics.Observations] = {}  # by route (canonical: bounded)
        self._produced = metrics.Observations(metrics.PRODUCE_SECONDS)
        #: The loop whose next iteration records them (another one, e.g. a test's next
        #: loop after this one closed, schedules again).
        self._loop: asyncio.AbstractEventLoop | None = None

    def request(self, route: str, status: int, seconds: float) -> None:
        """A request to ``route`` answered with ``status`` after ``seconds``."""
        self._counts[route, status] += 1
        times = self._seconds.get(route)
        if times is None:
            times = self._seconds[route] = metrics.Observations(_seconds(route))
        times.observe(seconds)
        self._schedule()

    def produced(self, seconds: float) -> None:
        """A write the broker acknowledged after ``seconds``."""
        self._produced.observe(seconds)
        self._schedule()

    def _schedule(self) -> None:
        scheduled = self._loop
        if scheduled is not None and scheduled.is_running():
            return  # its next iteration records this too (asking for the loop costs more)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a direct call): record it now
            self.flush()
            return
        loop.call_soon(self.flush)
        self._loop = loop

    def flush(self) -> None:
        """Record what was kept (also safe to call directly)."""
        self._loop = None
        counts, self._counts = self._counts, Counter()
        for (route, status), count in counts.items():
            _requests(route, status).inc(count)
        for times in self._seconds.values():
            times.flush()
        self._produced.flush()


#: The receiver process's request metrics (each worker is a process of its own).
TALLY = Tally()


@functools.cache  # bounded: canonical routes x statuses
def _requests(route: str, status: int) -> prometheus_client.Counter:
    return metrics.HTTP_REQUESTS.labels(route, str(status))


@functools.cache
def _seconds(route: str) -> prometheus_client.Histogram:
    return metrics.HTTP_SECONDS.labels(route)


async def authenticate(request: web.Request, gate: Gate, handler: Handler) -> web.StreamResponse:
    """API keys and the per-key rate limit, on the routes not :data:`PUBLIC` (when keys are
    configured). Every request spends one unit; a batch spends the rest of its cost once
    its items are counted."""
    try:
        key = gate.identify(request.headers.get("Authorization"))
        await gate.admit(key)
    except Unauthorized as exc:
        return problem(401, "Unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"})
    except RateLimited as exc:
        return too_many_requests(exc)
    request[API_KEY] = key
    return await handler(request)
