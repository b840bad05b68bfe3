"""What every benchmark needs: the local broker and database (:mod:`notifsvc.dev.infra`),
stage processes, preloading, database counts, polling until something holds, a per-second
RSS/CPU sampler, and for the webhook benchmarks a lane, a provider sink and the pipeline.
Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import psutil
from aiohttp import ClientSession, web

from notifsvc.config import Settings
from notifsvc.dev import infra
from notifsvc.dev.fakes.base import Service
from notifsvc.dev.infra import Lane, LocalInfra
from notifsvc.dev.infra import clean_environ as clean_environ  # noqa: PLC0414 - for locust_run
from notifsvc.kafka import Producer
from notifsvc.model import Notification
from notifsvc.process import spawn, stop

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "loadtest" / "results"
PYTHON = sys.executable


class Deadline(Exception):
    """Something expected did not happen in time."""


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], within: float, what: str, *, every: float = 0.2
) -> float:
    """Poll ``check`` (plain or async) every ``every`` seconds until it holds; when it did
    (monotonic seconds). :class:`Deadline` naming ``what`` if not within ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        held = check()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise Deadline(f"{what}: not within {within:g}s")
        await asyncio.sleep(every)


def stage_env(settings: Settings | None = None, **values: object) -> dict[str, str]:
    """The environment of a stage process (:func:`notifsvc.dev.infra.stage_env`) that can
    also run ``python -m loadtest.*`` from anywhere, and runs this tree's ``notifsvc`` (in a
    worktree of an older commit too, whichever tree the virtualenv installed)."""
    path = os.pathsep.join((str(ROOT / "src"), str(ROOT)))
    return infra.stage_env(settings, **values) | {"PYTHONPATH": path}


async def fetch_one(dsn: str, sql: str, *args: object) -> asyncpg.Record:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(sql, *args)
    finally:
        await conn.close()
    assert row is not None
    return row


def notifications(count: int, channel: str = "log", to: str = "ops-team") -> Iterable[Notification]:
    now = time.time()
    for _ in range(count):
        yield Notification(uuid.uuid4(), channel, to, "disk almost full on db-7", accepted_at=now)


async def preload(settings: Settings, topic: str, batch: Iterable[Notification]) -> int:
    """Produce every notification (value = encode(), key = uuid); return how many."""
    producer = Producer(settings, client_id="bench-preload", linger_ms=20)
    await producer.start()
    sent = 0
    try:
        chunk: list[Notification] = []
        for n in batch:
            chunk.append(n)
            if len(chunk) == 20_000:
                sent += await _send(producer, topic, chunk)
                chunk = []
        sent += await _send(producer, topic, chunk)
    finally:
        await producer.stop()
    return sent


async def _send(producer: Producer, topic: str, chunk: list[Notification]) -> int:
    await producer.send_all((topic, n.encode(), n.key, ()) for n in chunk)
    return len(chunk)


def start_process(args: list[str], env: Mapping[str, str], log_path: Path) -> Any:
    """A child process whose output goes to ``log_path``; it dies with us."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        return spawn([PYTHON, *args], output=out, env=dict(env))


def stop_process(proc: Any) -> None:
    stop(proc, timeout=30.0)


async def stop_processes(procs: Iterable[Any]) -> None:
    """:func:`stop_process` each, off the event loop: a stage finishes the batch under way
    when stopped, and a sink or fake served by this loop must still answer its sends
    (stopped on the loop, a notificator waited for an answer until killed after 30 s)."""
    for proc in procs:
        await asyncio.to_thread(stop_process, proc)


async def wait_http(url: str, proc: Any, within: float = 30.0) -> None:
    """Poll ``url`` until it answers 200 (the process must stay alive meanwhile)."""
    deadline = time.monotonic() + within
    while True:
        if proc.poll() is not None:
            raise Deadline(f"process for {url} exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            if await asyncio.to_thread(_get_status, url) == 200:
                return
        if time.monotonic() > deadline:
            raise Deadline(f"{url} did not answer within {within}s")
        await asyncio.sleep(0.1)


def _get_status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=1) as resp:  # only 127.0.0.1 URLs
        return int(resp.status)


def tree(pid: int) -> list[psutil.Process]:
    """A process and all its descendants (those still alive)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU time so far of these processes and their descendants."""
    total = 0.0
    for pid in pids:
        for p in tree(pid):
            with contextlib.suppress(psutil.NoSuchProcess):
                times = p.cpu_times()
                total += times.user + times.system
    return total


class Sampling:
    """A sampler's lifecycle: ``start()`` runs its ``_run()`` as a task, ``stop()`` ends it."""

    _task: asyncio.Task[None] | None

    async def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@dataclass
class RssSampler(Sampling):
    """Samples the resident memory of one process every ``interval`` seconds."""

    pid: int
    interval: float = 1.0
    limit: int = 7200  # samples: two hours at one a second, then it stops by itself
    samples: list[tuple[float, int]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        proc = psutil.Process(self.pid)
        for _ in range(self.limit):
            with contextlib.suppress(psutil.NoSuchProcess):
                self.samples.append((time.time(), proc.memory_info().rss))
            await asyncio.sleep(self.interval)


def scratch_dir(name: str) -> Path:
    """A fresh folder under ``loadtest/results/`` (gitignored) for one run's files."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=RESULTS))


def report(name: str, result: dict[str, Any], text: str) -> None:
    """Keep a benchmark's ``result`` as ``loadtest/results/<name>.json`` and print ``text``
    (its summary) and where the figures are."""
    path = RESULTS / f"{name}.json"
    path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print()
    print(text)
    print(f"\nresults: {path.relative_to(ROOT)}")


def own_cpu_seconds() -> float:
    """CPU time so far of this process and every descendant still alive."""
    return cpu_seconds([os.getpid()])


@dataclass
class CpuSampler(Sampling):
    """Once a second: the machine's CPU use, and how much of it is this run's own processes
    (so the work of others sharing the machine, and so the noise, can be told apart)."""

    interval: float = 1.0
    limit: int = 7200
    samples: list[tuple[float, float, float]] = field(default_factory=list)  # t, all %, own %
    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        cores = psutil.cpu_count() or 1
        psutil.cpu_percent(None)
        before, then = await asyncio.to_thread(own_cpu_seconds), time.monotonic()
        for _ in range(self.limit):
            await asyncio.sleep(self.interval)
            machine = psutil.cpu_percent(None)
            own, now = await asyncio.to_thread(own_cpu_seconds), time.monotonic()
            share = max(0.0, 100 * (own - before) / (now - then) / cores)
            self.samples.append((time.time(), machine, min(share, machine)))
            before, then = own, now

    def others_mean(self) -> float:
        """Mean share of all cores used by processes not of this run, in percent."""
        others = [machine - own for _, machine, own in self.samples]
        return sum(others) / len(others) if others else float("nan")


@dataclass
class Sink(Service):
    """A webhook provider: answers 200 after ``delay`` seconds, noting each arrival (wall
    time, by ``Idempotency-Key``) and counting requests (so duplicates show)."""

    delay: float
    arrivals: dict[str, float] = field(default_factory=dict)  # uuid -> first arrival
    requests: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None

    async def _hook(self, request: web.Request) -> web.Response:
        await request.read()
        self.requests += 1
        self.arrivals.setdefault(request.headers.get("Idempotency-Key", ""), time.time())
        if self.delay > 0:
            await asyncio.sleep(self.delay)  # the provider's own latency
        return web.json_response({"ok": True})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


@contextlib.asynccontextmanager
async def webhook_lane(
    name: str, sink: Service, **values: object
) -> AsyncIterator[tuple[Lane, Path]]:
    """A scratch folder (``bench-<name>-*``), a local broker and database with one lane
    ``name`` on them whose webhook channel may post to 127.0.0.1 (at log level WARNING unless
    ``values`` say otherwise; ``values`` are further settings), and ``sink`` running: yields
    the lane and the folder, and stops it all at the end."""
    workdir = scratch_dir(f"bench-{name}")
    local = LocalInfra(workdir / "infra", own_process_group=True)
    webhook: dict[str, object] = {
        "channels": "webhook",
        "webhook_allowed_hosts": "127.0.0.1",
        "log_level": "WARNING",
    }
    await asyncio.to_thread(local.start)
    try:
        await sink.start()
        try:
            lane = await local.lane(name, workdir / "lane", **(webhook | values))
            yield lane, workdir
        finally:
            await sink.stop()
    finally:
        await asyncio.to_thread(local.stop)


#: The stage processes of :func:`pipeline` (name: ``notifsvc`` arguments).
_STAGES = {
    "receiver": ["receiver"],
    "router": ["router"],
    "notificator": ["notificator", "--channel", "webhook"],
}


@contextlib.asynccontextmanager
async def pipeline(lane: Lane, workdir: Path, sink: Sink) -> AsyncIterator[list[Any]]:
    """The receiver, the router and the webhook notificator of ``lane`` as their own
    processes (default settings; logs ``workdir/<stage>.log``), yielded once the receiver
    answers and one notification went through to ``sink``; stopped at the end."""
    env = stage_env(lane.settings)
    procs: list[Any] = []
    try:
        for name, args in _STAGES.items():
            procs.append(start_process(["-m", "notifsvc", *args], env, workdir / f"{name}.log"))
        await wait_http(f"{lane.base_url}/healthz", procs[0])
        await warm_up(lane, sink)
        yield procs
    finally:
        await stop_processes(procs)


async def warm_up(lane: Lane, sink: Sink) -> None:
    """One notification through the whole pipeline: every stage owns its partitions."""
    uid = str(uuid.uuid4())
    async with ClientSession(lane.base_url) as session:
        body = {"uuid": uid, "destination": "webhook", "to": sink.url, "txt": "warm"}
        async with session.post("/notification", json=body) as resp:
            assert resp.status == 202, await resp.text()
    await eventually(lambda: uid in sink.arrivals, 120, "the warm-up notification delivered")
