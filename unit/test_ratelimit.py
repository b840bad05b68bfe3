"""Limiters from a configured rate: fractions work, every limiter can grant one unit."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from notifsvc.ratelimit import MIN_RATE, burst, make_limiter, rate_problem


def test_zero_is_no_limiter() -> None:
    assert make_limiter(0) is None


@pytest.mark.parametrize("rate", [MIN_RATE, 0.5, 0.999])
async def test_a_rate_below_one_grants_one_unit_then_none(rate: float) -> None:
    limiter = make_limiter(rate)
    assert limiter is not None
    assert limiter.has_capacity(1)
    await asyncio.wait_for(limiter.acquire(1), 1)  # granted at once
    assert not limiter.has_capacity(1)


@pytest.mark.parametrize(("rate", "size"), [(1, 1), (2.5, 2.5), (20, 20), (1000, 1000)])
async def test_the_burst_is_the_rate_at_or_above_one(rate: float, size: float) -> None:
    limiter = make_limiter(rate)
    assert limiter is not None
    assert burst(rate) == limiter.max_rate == size
    assert limiter.max_rate / limiter.time_period == pytest.approx(rate)
    await asyncio.wait_for(limiter.acquire(math.floor(size)), 1)
    assert not limiter.has_capacity(1)


async def test_capacity_comes_back_at_the_rate() -> None:
    limiter = make_limiter(1000)
    assert limiter is not None
    await limiter.acquire(1000)
    assert not limiter.has_capacity(1)
    deadline = time.monotonic() + 5
    while not limiter.has_capacity(1):  # 1 ms per unit
        assert time.monotonic() < deadline, "no capacity came back"
        await asyncio.sleep(0.001)


@pytest.mark.parametrize("rate", [-1.0, math.inf, -math.inf, math.nan, MIN_RATE / 2, 1e-300])
def test_unusable_rates_are_refused(rate: float) -> None:
    assert rate_problem(rate) is not None
    with pytest.raises(ValueError, match="rate"):
        make_limiter(rate)


@pytest.mark.parametrize("rate", [0.0, MIN_RATE, 0.5, 1.0, 1e9])
def test_usable_rates(rate: float) -> None:
    assert rate_problem(rate) is None
