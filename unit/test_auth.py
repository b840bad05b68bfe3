"""API keys and the per-key rate limit: a request costs one unit per notification."""

from __future__ import annotations

import pytest

from notifsvc.auth import Gate, RateLimited, Unauthorized
from notifsvc.config import Secret


def gate(rate: float) -> Gate:
    return Gate((Secret("k-one"), Secret("k-two")), rate_per_second=rate)


def key(g: Gate, name: str = "k-one") -> bytes:
    return g.identify(f"Bearer {name}")


def test_identify_accepts_configured_keys_only() -> None:
    g = gate(0)
    assert key(g, "k-one") != key(g, "k-two")
    for header in (None, "", "Bearer", "Basic k-one", "Bearer k-three", "Bearer  "):
        with pytest.raises(Unauthorized):
            g.identify(header)


async def test_no_rate_means_no_limit() -> None:
    g = gate(0)
    assert g.burst is None
    for _ in range(100):
        await g.admit(key(g), 50)


async def test_a_rate_below_one_still_limits() -> None:
    g = gate(0.5)  # one request every 2 s
    await g.admit(key(g))
    with pytest.raises(RateLimited) as caught:
        await g.admit(key(g))
    assert caught.value.retry_after == 2
    await g.admit(key(g, "k-two"))  # another key has its own budget


async def test_each_key_spends_its_own_budget() -> None:
    g = gate(2)
    await g.admit(key(g))
    await g.admit(key(g))
    with pytest.raises(RateLimited, match="retry in 1s"):
        await g.admit(key(g))
    await g.admit(key(g, "k-two"))


async def test_a_batch_costs_one_unit_per_notification() -> None:
    g = gate(10)
    await g.admit(key(g), 6)
    with pytest.raises(RateLimited) as caught:
        await g.admit(key(g), 5)  # 6 + 5 > 10
    assert caught.value.retry_after == 1
    await g.admit(key(g), 4)
    with pytest.raises(RateLimited):
        await g.admit(key(g))


async def test_prepaid_units_are_not_charged_twice() -> None:
    g = gate(10)
    await g.admit(key(g))  # what the middleware takes
    await g.admit(key(g), 10, prepaid=1)
    with pytest.raises(RateLimited):
        await g.admit(key(g))


async def test_a_batch_over_the_burst_is_refused_not_discounted() -> None:
    g = gate(10)
    assert g.burst == 10
    with pytest.raises(RateLimited, match="11 notifications in one request exceed") as caught:
        await g.admit(key(g), 11)
    assert caught.value.retry_after is None  # waiting cannot help
    await g.admit(key(g), 10)  # the refused batch spent nothing


def test_an_unusable_rate_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="rate"):
        gate(float("inf"))
