"""Limiters from a configured rate: fractions work, every limiter can grant one unit."""

from __future__ import annotations

import asyncio
import math
import random
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifsvc.ratelimit import (
    MIN_RATE,
    SharedLimiter,
    burst,
    make_limiter,
    partition_share,
    rate_problem,
)


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


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_shared_limiter_of_rate_zero_never_limits() -> None:
    limiter = SharedLimiter(0, 0.0)
    assert all(limiter.take(1000) for _ in range(100))


def test_a_share_limits_to_its_part_of_the_rate() -> None:
    clock = FakeClock()
    limiter = SharedLimiter(100, 0.25, clock=clock)
    assert limiter.current_rate == 25 and limiter.burst == 25
    assert sum(limiter.take() for _ in range(100)) == 25  # the burst, then nothing
    clock.now += 1.0
    assert sum(limiter.take() for _ in range(100)) == 25


def test_a_new_share_keeps_the_saved_tokens_not_a_fresh_burst() -> None:
    clock = FakeClock()
    limiter = SharedLimiter(100, 0.5, clock=clock)
    assert sum(limiter.take() for _ in range(100)) == 50
    limiter.set_share(1.0)  # a rebalance: the bigger bucket is not filled up for free
    assert not limiter.take()
    clock.now += 0.1
    assert sum(limiter.take() for _ in range(100)) == 10  # at the new rate of 100/s


def test_time_before_a_change_counts_at_the_old_rate() -> None:
    clock = FakeClock()
    limiter = SharedLimiter(100, 0.5, clock=clock)
    assert sum(limiter.take() for _ in range(100)) == 50
    clock.now += 0.2  # 10 earned at 50/s
    limiter.set_share(0.1)  # burst 10: all kept
    assert sum(limiter.take() for _ in range(100)) == 10


def test_share_zero_falls_back_to_the_idle_share() -> None:
    clock = FakeClock()
    limiter = SharedLimiter(64, 1.0, clock=clock)
    limiter.set_share(0.0, idle=1 / 32)  # every partition revoked: one partition's worth
    assert limiter.current_rate == 2
    assert sum(limiter.take() for _ in range(100)) == 2
    clock.now += 1.0
    assert sum(limiter.take() for _ in range(100)) == 2


async def test_a_waiter_is_woken_by_a_new_share() -> None:
    """The old limiter's flaw: a send waiting at share 0 waited on at that rate even after
    partitions came back. Here it goes as soon as the share allows."""
    limiter = SharedLimiter(1000, 0.0)  # idle 0: waits until a share comes
    assert limiter.take(limiter.burst)
    waiter = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    limiter.set_share(1.0)
    await asyncio.wait_for(waiter, 1)  # 1 ms at 1000/s


async def test_in_flight_sends_drain_after_a_full_revoke() -> None:
    limiter = SharedLimiter(1000, 1.0)
    assert limiter.take(limiter.burst)
    waiters = [asyncio.ensure_future(limiter.acquire()) for _ in range(5)]
    await asyncio.sleep(0)
    limiter.set_share(0.0, idle=1 / 10)  # 100/s for what is in flight
    await asyncio.wait_for(asyncio.gather(*waiters), 2)


async def test_waiters_are_served_in_order() -> None:
    limiter = SharedLimiter(200, 1.0)
    assert limiter.take(limiter.burst)
    order: list[int] = []

    async def one(i: int) -> None:
        await limiter.acquire()
        order.append(i)

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(10))), 2)
    assert order == list(range(10))


@given(
    st.floats(min_value=MIN_RATE, max_value=1e4),
    st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=5),  # seconds passing
            st.floats(min_value=0, max_value=1),  # the share after them
            st.integers(min_value=0, max_value=50),  # units asked for
        ),
        max_size=30,
    ),
)
def test_never_more_than_a_burst_plus_what_the_shares_earned(
    rate: float, steps: list[tuple[float, float, int]]
) -> None:
    clock = FakeClock()
    limiter = SharedLimiter(rate, 1.0, clock=clock)
    allowance = limiter.burst  # the first burst, then what each interval's rate earns
    granted = 0.0
    for seconds, share, asks in steps:
        allowance += seconds * limiter.current_rate
        clock.now += seconds
        limiter.set_share(share)
        granted += sum(limiter.take() for _ in range(asks))
        assert granted <= allowance + 1e-6


@given(
    st.dictionaries(
        st.sampled_from(["high", "normal", "low", "retry"]),
        st.integers(min_value=1, max_value=64),
        min_size=1,
    ),
    st.integers(min_value=1, max_value=6),
    st.randoms(use_true_random=False),
)
def test_the_members_shares_add_up_to_one(
    partitions: dict[str, int], members: int, rnd: random.Random
) -> None:
    """However each lane's partitions are spread over the group, whatever their counts."""
    owned = [dict.fromkeys(partitions, 0) for _ in range(members)]
    for lane, count in partitions.items():
        for _ in range(count):
            owned[rnd.randrange(members)][lane] += 1
    shares = [partition_share(o, partitions) for o in owned]
    assert math.fsum(s for s, _ in shares) == pytest.approx(1.0)
    assert all(idle == 1 / sum(partitions.values()) for _, idle in shares)


def test_a_member_without_partitions_has_no_share_but_the_idle_one() -> None:
    assert partition_share({"high": 0, "normal": 0}, {"high": 8, "normal": 8}) == (0.0, 1 / 16)
    assert partition_share({}, {}) == (0.0, 0.0)
