"""Running ``loadtest/locustfile.py`` headless as a child process and reading what it recorded."""

from __future__ import annotations

import asyncio
import resource
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from loadtest import harness
from loadtest.outcome import Row

LOCUSTFILE = harness.ROOT / "loadtest" / "locustfile.py"

Progress = Callable[[float], Awaitable[None]]


@dataclass
class LocustRun:
    rows: list[Row]
    started: float  # unix time
    seconds: float  # wall time of the whole run
    cpu_seconds: float  # of the generator (every Locust process)
    exit_code: int


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def run_locust(
    host: str,
    *,
    users: int,
    spawn_rate: float,
    seconds: int,
    processes: int,
    workdir: Path,
    load_env: Mapping[str, str],
    progress: Progress | None = None,
    extra_args: Sequence[str] = (),
) -> LocustRun:
    """Run Locust against ``host`` for ``seconds``; every request it made is returned."""
    raw_dir = workdir / f"raw-{time.monotonic_ns()}"
    raw_dir.mkdir(parents=True)
    env = harness.clean_environ() | dict(load_env)
    env |= {"LOAD_RAW_DIR": str(raw_dir), "PYTHONPATH": str(harness.ROOT)}
    args = ["-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary"]
    args += ["-H", host, "-u", str(users), "-r", str(spawn_rate), "-t", f"{seconds}s"]
    args += ["--stop-timeout", "5", "--loglevel", "WARNING"]
    if processes > 1:
        args += ["--processes", str(processes)]
    args += extra_args
    cpu_before = _children_cpu()
    started = time.time()
    proc = harness.start_process(args, env, workdir / "locust.log")
    deadline = time.monotonic() + seconds + 90
    while proc.poll() is None:
        if time.monotonic() > deadline:
            harness.stop_process(proc)
            raise harness.Deadline(f"locust did not finish within {seconds + 90}s")
        if progress is not None:
            await progress(time.time() - started)
        await asyncio.sleep(1.0)
    await asyncio.to_thread(proc.wait)
    rows: list[Row] = []
    for path in sorted(raw_dir.glob("raw-*.json")):
        rows.extend(tuple(r) for r in orjson.loads(path.read_bytes()))
    shutil.rmtree(raw_dir, ignore_errors=True)  # tens of MB per run; the rows are returned
    return LocustRun(
        rows, started, time.time() - started, _children_cpu() - cpu_before, proc.returncode
    )
