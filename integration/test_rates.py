"""Limits that hold across replicas: the notificators' shares of the send rate follow the
partitions they own (adding up to 1 however many run, 1 for the last one after a kill), and
each receiver process enforces its share of the per-key limit. The rates these mechanisms
give are measured by ``make bench-rates`` (loadtest/bench_rates.py); here the mechanism is
checked, without timing assertions."""

from __future__ import annotations

import dataclasses
import re
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from integration.helpers import eventually, notification, running, stage_env
from notifsvc.auth import Gate
from notifsvc.channels.log import LogChannel
from notifsvc.config import ConfigError, Secret, Settings
from notifsvc.notificator import Notificator
from notifsvc.process import spawn, stop
from notifsvc.receiver import ReceiverServer

_SHARE = re.compile(rb"send share ([0-9.]+) \((\d+) of (\d+) partitions\)")


def logged_share(path: Path) -> float | None:
    """The last share a notificator process logged."""
    found = _SHARE.findall(path.read_bytes()) if path.exists() else []
    return float(found[-1][0]) if found else None


async def test_notificator_shares_add_up_to_one_and_a_survivor_takes_all(
    settings: Settings, tmp_path: Path
) -> None:
    rated = dataclasses.replace(settings, send_rate=50)
    log_path = tmp_path / "other-notificator.log"
    env = stage_env(rated, log_format="text")
    with log_path.open("ab") as out:
        other = spawn(
            [sys.executable, "-m", "notifsvc", "notificator", "--channel", "log"],
            output=out,
            env=env,
        )
    try:
        async with running(Notificator(rated, LogChannel(rated))) as mine:
            assert mine.policy.share == 0  # nothing assigned before the first poll

            async def split() -> bool:
                theirs = logged_share(log_path)
                share = mine.policy.share
                return theirs is not None and 0 < share < 1 and abs(share + theirs - 1) < 1e-3

            await eventually(split, within=60)
            # 4 lanes of 4 partitions, each lane's group split between the two members
            assert mine.policy.share == 0.5
            other.send_signal(signal.SIGKILL)  # no goodbye: the group notices by its timeout

            async def alone() -> bool:
                return mine.policy.share == 1

            await eventually(alone, within=60)
    finally:
        stop(other, timeout=10)


async def test_a_replica_that_loses_its_partitions_keeps_one_partitions_share(
    settings: Settings,
) -> None:
    """A member left with no partitions may still have sends in flight: they go on at one
    partition's share of the rate instead of waiting for the next rebalance."""
    rated = dataclasses.replace(settings, send_rate=64)
    notificator = Notificator(rated, LogChannel(rated))

    async def owns_all() -> bool:
        return notificator.policy.share == 1

    async with running(notificator):
        await eventually(owns_all, within=60)
    # stopping revoked every partition
    assert notificator.policy.share == 0
    assert notificator.policy._limiter.current_rate == 64 / 16


async def test_each_receiver_process_enforces_its_share_of_the_key_limit(
    settings: Settings,
) -> None:
    """40/s for the cluster over 2 replicas x 2 workers: 10 per process, one per item."""
    shared = dataclasses.replace(
        settings,
        api_keys=(Secret("k"),),
        rate_limit_per_key=40,
        receiver_replicas=2,
        receiver_workers=2,
    )
    key = {"Authorization": "Bearer k"}
    assert Gate(shared.api_keys, rate_per_second=40, replicas=2, workers=2).burst == 10
    async with (
        running(ReceiverServer(shared)),
        aiohttp.ClientSession(f"http://127.0.0.1:{shared.http_port}") as api,
    ):
        batch = [notification() for _ in range(10)]
        async with api.post("/notifications", json=batch, headers=key) as resp:
            assert resp.status == 200, await resp.text()
        async with api.post("/notification", json=notification(), headers=key) as resp:
            assert resp.status == 429  # the batch spent the process's whole burst
            assert resp.headers["Retry-After"] == "1"


async def test_a_share_that_cannot_be_enforced_stops_the_receiver(settings: Settings) -> None:
    thin = dataclasses.replace(
        settings, api_keys=(Secret("k"),), rate_limit_per_key=3, receiver_replicas=4
    )
    with pytest.raises(ConfigError, match="NOTIFSVC_RECEIVER_REPLICAS=4"):
        await ReceiverServer(thin).start()
