"""The receiver's request metrics, kept per loop iteration (``plumbing.Tally``), read as if
each request had been recorded on its own."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from notifsvc.api import plumbing


def _value(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


_ROUTE = "/tally-test"
_NAMES = [
    ("notifsvc_http_requests_total", {"route": _ROUTE, "status": "202"}),
    ("notifsvc_http_requests_total", {"route": _ROUTE, "status": "503"}),
    ("notifsvc_http_request_seconds_count", {"route": _ROUTE}),
    ("notifsvc_http_request_seconds_sum", {"route": _ROUTE}),
    ("notifsvc_http_request_seconds_bucket", {"route": _ROUTE, "le": "0.005"}),
    ("notifsvc_produce_seconds_count", {}),
]


def _snapshot() -> list[float]:
    return [_value(n, labels) for n, labels in _NAMES]


async def test_an_iteration_s_requests_are_recorded_before_the_next_one() -> None:
    tally = plumbing.Tally()
    before = _snapshot()
    tally.request(_ROUTE, 202, 0.004)
    tally.request(_ROUTE, 202, 0.5)
    tally.request(_ROUTE, 503, 0.004)
    tally.produced(0.003)
    await asyncio.sleep(0)
    moved = [a - b for a, b in zip(_snapshot(), before, strict=True)]
    assert moved[:3] == [2, 1, 3] and abs(moved[3] - 0.508) < 1e-9
    assert moved[4:] == [2, 1]


def test_observations_left_by_a_closed_loop_are_recorded_by_the_next() -> None:
    tally = plumbing.Tally()
    before = _snapshot()

    async def one(status: int) -> None:
        tally.request(_ROUTE, status, 0.001)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(one(202))  # its flush is scheduled, never run
    loop.close()
    asyncio.run(one(503))
    moved = [a - b for a, b in zip(_snapshot(), before, strict=True)]
    assert moved[:3] == [1, 1, 2]


def test_without_a_loop_an_observation_is_recorded_at_once() -> None:
    tally = plumbing.Tally()
    before = _snapshot()
    tally.produced(0.002)
    assert _snapshot()[5] - before[5] == 1
