"""``python -m loadtest.bench receiver|router|notificator|all`` (``make bench*``).

One local broker and database (:class:`notifsvc.dev.infra.LocalInfra`, as ``notifsvc dev``
runs them) serve every measurement; each measurement has a lane of its own: topics and an
empty database. Results are printed as
one table (figure, value, baseline, ratio) and written to ``loadtest/results/bench-*.json``.
Settings (environment): BENCH_WORKERS, BENCH_USERS, BENCH_SECONDS, BENCH_ROUNDS, BENCH_PARTITIONS
(receiver);
BENCH_COUNT, BENCH_BASELINE_COUNT, BENCH_BASELINE_SECONDS (router); BENCH_SCALE (``all``:
backlog sizes for the growth table); BENCH_NOTIFY_COUNT, BENCH_NOTIFY_BASELINE_COUNT,
BENCH_SINK_DELAY_MS, BENCH_PUSH_COUNT and NOTIFSVC_SEND_CONCURRENCY (notificator and push).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import psutil

from loadtest import bench_push, harness, report
from loadtest.bench_notificator import bench_notificator
from loadtest.bench_receiver import bench_receiver
from loadtest.bench_router import drain_naive, drain_router
from notifsvc.dev.infra import LocalInfra


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _ints(name: str, default: str) -> list[int]:
    return [int(x) for x in os.environ.get(name, default).split(",") if x.strip()]


async def receiver(infra: LocalInfra, workdir: Path) -> dict[str, Any]:
    print("receiver vs bare aiohttp endpoint", flush=True)
    return await bench_receiver(
        infra,
        workers=_int("BENCH_WORKERS", 1),
        users=_int("BENCH_USERS", 32),
        seconds=_int("BENCH_SECONDS", 15),
        rounds=_int("BENCH_ROUNDS", 2),
        partitions=_int("BENCH_PARTITIONS", 2),
        workdir=workdir,
    )


async def router(infra: LocalInfra, workdir: Path, sizes: list[int]) -> dict[str, Any]:
    print("router vs naive one-at-a-time baseline", flush=True)
    count = _int("BENCH_COUNT", 200_000)
    baseline = await drain_naive(
        infra, _int("BENCH_BASELINE_COUNT", 5_000), _int("BENCH_BASELINE_SECONDS", 30), workdir
    )
    drains = [await drain_router(infra, n, workdir) for n in sorted({count, *sizes})]
    return {
        "count": count,
        "baseline": baseline.as_dict(),
        "drains": [d.as_dict() for d in drains],
    }


async def notificator(infra: LocalInfra, workdir: Path) -> dict[str, Any]:
    print("notificator (webhook) vs one send at a time", flush=True)
    concurrency = _int("NOTIFSVC_SEND_CONCURRENCY", 64)
    baseline_count = _int("BENCH_NOTIFY_BASELINE_COUNT", 500)
    result = await bench_notificator(
        infra,
        count=_int("BENCH_NOTIFY_COUNT", 20_000),
        concurrency=concurrency,
        baseline_count=baseline_count,
        delay_ms=float(os.environ.get("BENCH_SINK_DELAY_MS", "10")),
        workdir=workdir,
    )
    names = bench_push.registered()
    print(f"push channels ({', '.join(names)}) vs one send at a time", flush=True)
    result["push"] = await bench_push.bench_push(
        infra,
        names,
        count=_int("BENCH_PUSH_COUNT", 5_000),
        concurrency=concurrency,
        baseline_count=baseline_count,
        workdir=workdir,
    )
    return result


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_1m": os.getloadavg()[0],
        "python": platform.python_version(),
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


async def run(what: str) -> dict[str, Any]:
    workdir = harness.scratch_dir(f"bench-{what}")
    results: dict[str, Any] = {"machine": machine(), "workdir": str(workdir)}
    sizes = _ints("BENCH_SCALE", "10000,100000,1000000") if what == "all" else []
    steps: dict[str, Callable[[LocalInfra], Any]] = {
        "receiver": lambda i: receiver(i, workdir),
        "router": lambda i: router(i, workdir, sizes),
        "notificator": lambda i: notificator(i, workdir),
    }
    infra = LocalInfra(workdir / "infra", own_process_group=True)
    sampler = harness.CpuSampler()
    await asyncio.to_thread(infra.start)
    sampler.start()
    try:
        for name, step in steps.items():
            if what in (name, "all"):
                results[name] = await step(infra)
    finally:
        await sampler.stop()
        await asyncio.to_thread(infra.stop)
    results["machine"]["load_average_1m_end"] = os.getloadavg()[0]
    results["machine"]["others_cpu_pct_mean"] = sampler.others_mean()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench", description=__doc__)
    parser.add_argument("what", choices=["receiver", "router", "notificator", "all"])
    args = parser.parse_args(argv)
    results = asyncio.run(run(args.what))
    path = harness.RESULTS / f"bench-{args.what}.json"
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    print()
    print(report.bench_text(results))
    print(f"\nresults: {path.relative_to(harness.ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
