"""``make bench-receiver``: the receiver against a bare aiohttp endpoint, same load generator.

Fairness on 2 shared cores: both servers run with the same worker count, each as its own
processes (``notifsvc receiver --workers N`` and ``python -m loadtest.bare --workers N``,
both uvloop + SO_REUSEPORT), and are driven one after the other by the same Locust
command (one FastHttpUser process, same users, same duration, same body shape). Rounds
alternate the order (A B, B A, ...) so that drift of the shared machine hits both alike.
The first seconds of each run are left out (connections opening) and only 202 answers
count as accepted. The topic the receiver writes to has ``partitions`` partitions (default 2):
the in-memory broker shares the two cores with both servers and the generator, and its cost
grows with the partitions a batch spreads over (see docs/performance.md). The CPU time of
the generator, of each server and of the broker and database is recorded, so a run where
the generator itself was the limit shows as such.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest import harness, stats
from loadtest.locust_run import LocustRun, run_locust
from notifsvc.dev.infra import LocalInfra
from notifsvc.process import free_port

log = logging.getLogger(__name__)

WARMUP_SECONDS = 3.0


@dataclass
class Side:
    """Everything measured for one server over all rounds."""

    name: str
    latencies: list[float] = field(default_factory=list)
    accepted: int = 0
    failed: int = 0
    seconds: float = 0.0
    generator_cpu: float = 0.0
    server_cpu: float = 0.0
    infra_cpu: float = 0.0
    wall: float = 0.0

    @property
    def rate(self) -> float:
        return stats.rate(self.accepted, self.seconds)

    def add(self, run: LocustRun, server_cpu: float, infra_cpu: float) -> None:
        ok = [(r[0], r[1]) for r in run.rows if r[2] == 202]
        kept, seconds = stats.window(ok, skip_first=WARMUP_SECONDS, skip_last=1.0)
        self.latencies += kept
        self.accepted += len(kept)
        self.failed += sum(1 for r in run.rows if r[2] != 202)
        self.seconds += seconds
        self.generator_cpu += run.cpu_seconds
        self.server_cpu += server_cpu
        self.infra_cpu += infra_cpu
        self.wall += run.seconds

    def as_dict(self) -> dict[str, Any]:
        lat = stats.latency(self.latencies)
        total = self.accepted or math.nan
        return {
            "accepted_per_s": self.rate,
            "latency_ms": lat.as_dict(),
            "failed": self.failed,
            "generator_cpu_share": self.generator_cpu / self.wall if self.wall else math.nan,
            "server_cpu_ms_per_request": 1000 * self.server_cpu / total,
            "broker_db_cpu_ms_per_request": 1000 * self.infra_cpu / total,
        }


async def bench_receiver(
    infra: LocalInfra,
    *,
    workers: int,
    users: int,
    seconds: int,
    rounds: int,
    partitions: int,
    workdir: Path,
) -> dict[str, Any]:
    lane = await infra.lane(
        "receiver", workdir / "receiver", topic_partitions=partitions, log_level="WARNING"
    )
    settings, env = lane.settings, harness.stage_env(lane.settings)
    bare_port = free_port()
    servers = {
        "receiver": harness.start_process(
            ["-m", "notifsvc", "receiver", "--workers", str(workers)], env, workdir / "receiver.log"
        ),
        "bare": harness.start_process(
            ["-m", "loadtest.bare", "--port", str(bare_port), "--workers", str(workers)],
            harness.stage_env(),
            workdir / "bare.log",
        ),
    }
    urls = {
        "receiver": f"http://127.0.0.1:{settings.http_port}",
        "bare": f"http://127.0.0.1:{bare_port}",
    }
    sides = {name: Side(name) for name in servers}
    try:
        for name, proc in servers.items():
            await harness.wait_http(f"{urls[name]}/healthz", proc)
        for i in range(rounds):
            order = ["bare", "receiver"] if i % 2 == 0 else ["receiver", "bare"]
            for name in order:
                pids = ([servers[name].pid], infra.pids)
                await _one_run(
                    sides[name], urls[name], pids, users=users, seconds=seconds, workdir=workdir
                )
    finally:
        for proc in servers.values():
            harness.stop_process(proc)
        await infra.drop(lane)
    setup = {"workers": workers, "users": users, "seconds": seconds, "rounds": rounds}
    return _summary(sides, **setup, partitions=partitions)


async def _one_run(
    side: Side,
    url: str,
    pids: tuple[list[int], list[int]],
    *,
    users: int,
    seconds: int,
    workdir: Path,
) -> None:
    server_pids, infra_pids = pids
    print(f"  {side.name}: {users} users for {seconds}s", flush=True)
    server_before = harness.cpu_seconds(server_pids)
    infra_before = harness.cpu_seconds(infra_pids)
    run = await run_locust(
        url,
        users=users,
        spawn_rate=users,
        seconds=seconds,
        processes=1,
        workdir=workdir,
        load_env={"LOAD_MIX": "log", "LOAD_REPOST_SHARE": "0"},
    )
    side.add(
        run,
        harness.cpu_seconds(server_pids) - server_before,
        harness.cpu_seconds(infra_pids) - infra_before,
    )
    done = [r for r in run.rows if r[2] == 202]
    print(f"    {len(done):,} accepted, {len(run.rows) - len(done):,} not", flush=True)


def _summary(sides: dict[str, Side], **setup: int) -> dict[str, Any]:
    receiver, bare = sides["receiver"], sides["bare"]
    return {
        "setup": setup,
        "receiver": receiver.as_dict(),
        "bare": bare.as_dict(),
        "ratio": stats.ratio(receiver.rate, bare.rate),
    }
