"""The wrapper every receiver route is registered with (``plumbing.add_route``) and the last
route (``plumbing.add_unmatched``), on a real aiohttp server: errors come back as
problem+json, requests are counted under their route, API keys guard all but the public
routes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from notifsvc.api import plumbing
from notifsvc.api.context import API_KEY, GATE
from notifsvc.auth import Gate
from notifsvc.config import Secret

KEY = "k" * 40


async def _hello(request: web.Request) -> web.Response:
    who = "keyed" if API_KEY in request else "anyone"
    return web.json_response({"who": who, "id": request.match_info.get("id")})


async def _crash(_request: web.Request) -> web.Response:
    raise RuntimeError("boom")


async def _too_large(_request: web.Request) -> web.Response:
    raise web.HTTPRequestEntityTooLarge(max_size=1, actual_size=2)


async def _moved(_request: web.Request) -> web.Response:
    raise web.HTTPFound("/healthz")


def _app(keys: tuple[Secret, ...] = ()) -> web.Application:
    app = web.Application()
    app[GATE] = Gate(keys, rate_per_second=0)
    plumbing.add_route(app, "GET", "/plumbing-test/{id:[0-9]+}", _hello)
    plumbing.add_route(app, "DELETE", "/plumbing-test/{id:[0-9]+}", _hello)
    plumbing.add_route(app, "POST", "/plumbing-test/crash", _crash)
    plumbing.add_route(app, "POST", "/plumbing-test/large", _too_large)
    plumbing.add_route(app, "GET", "/plumbing-test/moved", _moved)
    plumbing.add_route(app, "GET", "/healthz", _hello)  # public
    plumbing.add_unmatched(app)
    return app


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with TestServer(_app()) as server, aiohttp.ClientSession(server.make_url("")) as s:
        yield s


async def _problem(resp: aiohttp.ClientResponse, status: int) -> dict[str, object]:
    assert resp.status == status
    assert resp.content_type == plumbing.PROBLEM_JSON
    body = await resp.json(content_type=None)
    assert body["status"] == status
    return dict(body)


def _count(route: str, status: int) -> float:
    labels = {"route": route, "status": str(status)}
    return REGISTRY.get_sample_value("notifsvc_http_requests_total", labels) or 0.0


async def test_a_route_answers_and_is_counted_under_its_canonical_path(
    client: aiohttp.ClientSession,
) -> None:
    before = _count("/plumbing-test/{id}", 200)
    async with client.get("/plumbing-test/7") as resp:
        assert resp.status == 200 and await resp.json() == {"who": "anyone", "id": "7"}
    async with client.head("/plumbing-test/7") as resp:  # a GET route answers HEAD too
        assert resp.status == 200
    plumbing.TALLY.flush()
    assert _count("/plumbing-test/{id}", 200) - before == 2


async def test_an_unknown_path_is_404_problem_json_counted_as_unmatched(
    client: aiohttp.ClientSession,
) -> None:
    before = _count(plumbing.UNMATCHED, 404)
    async with client.get("/no/such/path") as resp:
        body = await _problem(resp, 404)
    assert "/no/such/path" in str(body["detail"])
    async with client.get("/plumbing-test/not-a-number") as resp:  # the pattern refuses it
        await _problem(resp, 404)
    async with client.get("/no%0Asuch") as resp:  # a newline in the path, too
        await _problem(resp, 404)
    plumbing.TALLY.flush()
    assert _count(plumbing.UNMATCHED, 404) - before == 3


async def test_a_wrong_method_is_405_allowing_every_route_of_the_path(
    client: aiohttp.ClientSession,
) -> None:
    async with client.post("/plumbing-test/7") as resp:
        body = await _problem(resp, 405)
        assert resp.headers["Allow"] == "DELETE, GET, HEAD"
    assert "POST is not allowed" in str(body["detail"])


async def test_a_crash_is_500_problem_json_and_logged(
    client: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    async with client.post("/plumbing-test/crash") as resp:
        body = await _problem(resp, 500)
    assert body["detail"] == "unexpected error; nothing was accepted"
    assert any("unhandled error on POST /plumbing-test/crash" in r.message for r in caplog.records)


async def test_an_http_error_raised_by_a_handler_is_problem_json(
    client: aiohttp.ClientSession,
) -> None:
    async with client.post("/plumbing-test/large") as resp:
        await _problem(resp, 413)


async def test_a_redirect_raised_by_a_handler_is_left_to_aiohttp(
    client: aiohttp.ClientSession,
) -> None:
    """Only errors become problem+json: an HTTPException under 400 is aiohttp's answer."""
    async with client.get("/plumbing-test/moved", allow_redirects=False) as resp:
        assert resp.status == 302 and resp.headers["Location"] == "/healthz"


async def test_with_keys_every_route_but_the_public_ones_needs_one() -> None:
    app = _app((Secret(KEY),))
    async with TestServer(app) as server, aiohttp.ClientSession(server.make_url("")) as s:
        async with s.get("/plumbing-test/7") as resp:
            await _problem(resp, 401)
            assert resp.headers["WWW-Authenticate"] == "Bearer"
        keyed = {"Authorization": f"Bearer {KEY}"}
        async with s.get("/plumbing-test/7", headers=keyed) as resp:
            assert (await resp.json())["who"] == "keyed"
        async with s.get("/healthz") as resp:
            assert (await resp.json())["who"] == "anyone"
        async with s.get("/no/such/path") as resp:  # no key needed to learn it is not there
            await _problem(resp, 404)


#: The test application's routes, as a model: path pattern and the methods it takes.
_MODEL = [
    (re.compile(r"/plumbing-test/[0-9]+"), {"GET", "HEAD", "DELETE"}),
    (re.compile(r"/plumbing-test/crash"), {"POST"}),
    (re.compile(r"/plumbing-test/large"), {"POST"}),
    (re.compile(r"/plumbing-test/moved"), {"GET", "HEAD"}),  # followed to /healthz
    (re.compile(r"/healthz"), {"GET", "HEAD"}),
]
_METHODS = st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
_PATHS = st.builds(
    "".join,
    st.lists(
        st.sampled_from(
            ["/plumbing-test", "/healthz", "/", "crash", "large", "7", "x", "%20", "%0A", ".."]
        )
        | st.text("abc019-_.~/", max_size=6),
        max_size=4,
    ),
)


def _expected(path: str, method: str) -> tuple[int, set[str]]:
    allowed = set().union(*(methods for pattern, methods in _MODEL if pattern.fullmatch(path)))
    if not allowed:
        return 404, allowed
    if method not in allowed:
        return 405, allowed
    return {"/plumbing-test/crash": 500, "/plumbing-test/large": 413}.get(path, 200), allowed


@hsettings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(_METHODS, _PATHS)
@example("GET", "/plumbing-test/7")
@example("POST", "/plumbing-test/7")
@example("PUT", "/healthz")
@example("POST", "/plumbing-test/crash")
@example("GET", "/plumbing-test/../healthz")
@example("GET", "/plumbing-test/%0A")
@example("PUT", "/plumbing-test/crash%0A")
async def test_any_method_and_path_gets_its_route_or_a_404_or_405_problem(
    client: aiohttp.ClientSession, method: str, path: str
) -> None:
    async with client.request(method, "/" + path.lstrip("/")) as resp:
        status, allowed = _expected(resp.url.path, method)
        assert resp.status == status, (resp.url.path, await resp.text())
        if status != 200:
            assert resp.content_type == plumbing.PROBLEM_JSON
        if status == 405:
            assert set(resp.headers["Allow"].split(", ")) == allowed
