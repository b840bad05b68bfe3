"""API keys and the per-key rate limit: a request costs one unit per notification."""

from __future__ import annotations

import pytest

from notifsvc.auth import Gate, RateLimited, Unauthorized, share_problem
from notifsvc.config import ConfigError, Secret
from notifsvc.workers import run_workers


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
    await g.admit(key(g))  # what authenticate() takes per request
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


async def test_each_process_enforces_its_share_of_the_cluster_limit() -> None:
    # 100/s for the cluster, 2 replicas x 2 workers: 25/s and a burst of 25 per process
    g = Gate((Secret("k-one"),), rate_per_second=100, replicas=2, workers=2)
    assert g.rate == 25 and g.burst == 25
    await g.admit(key(g), 25)
    with pytest.raises(RateLimited, match="retry in 1s"):
        await g.admit(key(g))
    with pytest.raises(RateLimited, match="burst of 25"):
        await g.admit(key(g), 26)


@pytest.mark.parametrize(
    ("rate", "replicas", "workers", "why"),
    [
        (2, 3, 1, "burst of 0.67 notifications, below 1"),
        (3, 2, 2, "burst of 0.75 notifications, below 1"),
        (0.003, 2, 2, "below the least enforceable 0.001/s"),
    ],
)
def test_a_share_that_cannot_be_enforced_is_refused(
    rate: float, replicas: int, workers: int, why: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Gate((Secret("k"),), rate_per_second=rate, replicas=replicas, workers=workers)
    message = str(caught.value)
    assert "NOTIFSVC_RATE_LIMIT_PER_KEY" in message and "NOTIFSVC_RECEIVER_REPLICAS" in message
    assert why in message


@pytest.mark.parametrize(("rate", "replicas", "workers"), [(0, 8, 8), (0.5, 1, 1), (4, 2, 2)])
def test_enforceable_shares_are_accepted(rate: float, replicas: int, workers: int) -> None:
    assert share_problem(rate, replicas, workers) is None
    Gate((Secret("k"),), rate_per_second=rate, replicas=replicas, workers=workers)


def test_workers_refuse_a_share_they_cannot_enforce_before_spawning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOTIFSVC_RATE_LIMIT_PER_KEY", "3")
    monkeypatch.setenv("NOTIFSVC_RECEIVER_REPLICAS", "2")
    with pytest.raises(ConfigError, match=r"NOTIFSVC_RATE_LIMIT_PER_KEY=3 split over 4"):
        run_workers(2)  # 3/s over 2 x 2 processes: a burst of 0.75 each
