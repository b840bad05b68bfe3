"""``make load-test``: Locust against the whole pipeline, then what was delivered, how fast.

Locally it starts a webhook sink (``loadtest/sink.py``) and ``notifsvc dev`` (log channel
to a file, webhooks allowed to 127.0.0.1), runs Locust headless with one process per core,
waits until every accepted notification is sent (database, with a deadline), checks the
deliveries themselves (log file lines and sink requests per UUID) and prints one summary.
With ``LOAD_HOST`` it only sees what the API shows (``GET /notification/{uuid}``).
The summary (JSON) and a chart (PNG) go to ``loadtest/results/``.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from loadtest import chart, harness, outcome, report
from loadtest.bench_notificator import sink_call
from loadtest.locust_run import LocustRun, run_locust
from loadtest.workload import LoadConfig, body, parse_mix
from notifsvc.db.queries import state_is
from notifsvc.model import State
from notifsvc.process import free_port

CHECK_LIMIT = 20_000  # UUIDs checked through the API when only the API is visible


class LocalPipeline:
    """``notifsvc dev`` on free ports, the log channel writing to a file of the run."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.host = f"http://127.0.0.1:{port}"
        self.log_path = workdir / "log-channel.jsonl"
        self.dsn = ""
        self._env = harness.stage_env(
            http_port=port,
            log_path=self.log_path,
            webhook_allowed_hosts="127.0.0.1,localhost",
            log_level="INFO",
        )
        self._proc: Any = None

    async def start(self, within: float = 120.0) -> None:
        out = self.workdir / "dev.log"
        args = ["-m", "notifsvc", "dev", "--state-dir", str(self.workdir / "dev")]
        self._proc = harness.start_process(args, self._env, out)
        deadline = time.monotonic() + within
        while not self.dsn:
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise harness.Deadline(f"notifsvc dev did not start; see {out}")
            self.dsn = outcome.dev_dsn(out.read_text(errors="replace")) or ""
            await asyncio.sleep(0.2)
        await harness.wait_http(f"{self.host}/healthz", self._proc, within=within)

    async def warm_up(self, bodies: list[dict[str, str]], within: float = 90.0) -> None:
        """Post one notification per channel and wait until each is sent: every consumer
        group then holds its partitions, so the measurement does not include joining."""
        async with aiohttp.ClientSession(self.host) as session:
            for body in bodies:
                async with session.post("/notification", json=body) as resp:
                    if resp.status != 202:
                        raise harness.Deadline(f"warm-up post answered {resp.status}")
        uuids = [b["uuid"] for b in bodies]
        deadline = time.monotonic() + within
        while await sent_count(self.dsn, uuids) < len(uuids):
            if time.monotonic() > deadline:
                raise harness.Deadline(f"the pipeline did not deliver a warm-up within {within}s")
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            harness.stop_process(proc)


class Progress:
    """Prints one line every few seconds while Locust runs."""

    def __init__(self, csv_path: Path, duration: int, delivered: Any) -> None:
        self.csv_path = csv_path
        self.duration = duration
        self.delivered = delivered
        self._last = 0.0

    async def __call__(self, elapsed: float) -> None:
        if elapsed - self._last < 5:
            return
        self._last = elapsed
        try:
            requests, failures = outcome.locust_totals(self.csv_path.read_text())
        except OSError:
            requests, failures = 0, 0
        done = await self.delivered()
        print(
            f"  [{elapsed:4.0f}s/{self.duration}s] posted ~{requests:,} "
            f"({failures:,} failed; Locust's count lags ~3s), delivered {done}",
            flush=True,
        )


_DONE = """
SELECT count(*) FROM notifications WHERE uuid = ANY($1::uuid[]) AND state IN ('sent', 'failed')
"""
#: As the list asks for sent rows: an index range, not the whole table (migration 0012).
_SENT = f"SELECT count(*) FROM notifications WHERE {state_is(State.SENT)}"


async def sent_count(dsn: str, uuids: list[str] | None = None) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        if uuids is None:
            return int(await conn.fetchval(_SENT))
        return int(await conn.fetchval(_DONE, uuids))
    finally:
        await conn.close()


async def stored_states(dsn: str, uuids: list[str]) -> dict[str, outcome.Stored]:
    sql = """SELECT uuid::text AS uuid, state, extract(epoch FROM accepted_at) AS a,
                    extract(epoch FROM sent_at) AS s
             FROM notifications WHERE uuid = ANY($1::uuid[])"""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(sql, uuids)
    finally:
        await conn.close()
    return {r["uuid"]: outcome.Stored(r["uuid"], r["state"], _f(r["a"]), _f(r["s"])) for r in rows}


def _f(value: Any) -> float | None:
    return None if value is None else float(value)


async def wait_drained(dsn: str, wanted: list[str], within: float) -> float:
    """Poll until every wanted UUID is sent or failed; returns the seconds it took."""
    started = time.monotonic()
    last_print = started
    while True:
        done = await sent_count(dsn, wanted)
        now = time.monotonic()
        if done >= len(wanted):
            return now - started
        if now - started > within:
            print(f"  drain deadline ({within:.0f}s) reached: {done:,}/{len(wanted):,}", flush=True)
            return now - started
        if now - last_print >= 5:
            last_print = now
            print(f"  draining: {done:,}/{len(wanted):,} delivered", flush=True)
        await asyncio.sleep(1.0)


def log_deliveries(path: Path) -> Counter[str]:
    if not path.exists():
        return Counter()
    lines = path.read_bytes().splitlines()
    return Counter(orjson.loads(line)["uuid"] for line in lines if line)


async def api_states(host: str, uuids: list[str], within: float) -> dict[str, outcome.Stored]:
    """Poll ``GET /notification/{uuid}`` until each is sent or failed, or the deadline."""
    states: dict[str, outcome.Stored] = {}
    pending = set(uuids)
    deadline = time.monotonic() + within
    limit = asyncio.Semaphore(16)
    async with aiohttp.ClientSession(host) as session:

        async def check(uid: str) -> None:
            async with limit, session.get(f"/notification/{uid}") as resp:
                if resp.status != 200:
                    return
                body = await resp.json()
            states[uid] = outcome.Stored(
                uid, body["state"], _iso(body["accepted_at"]), _iso(body["sent_at"])
            )
            if body["state"] in {"sent", "failed"}:
                pending.discard(uid)

        while pending and time.monotonic() < deadline:
            await asyncio.gather(*(check(u) for u in sorted(pending)))
            print(f"  API: {len(uuids) - len(pending):,}/{len(uuids):,} sent or failed", flush=True)
            if pending:
                await asyncio.sleep(1.0)
    return states


def _iso(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


Outcome = tuple[dict[str, Any], dict[str, outcome.Stored]]


async def local_outcome(
    pipeline: LocalPipeline, sink: str, rows: list[outcome.Row], within: float
) -> Outcome:
    wanted = sorted(outcome.accepted(rows))
    drained = await wait_drained(pipeline.dsn, wanted, within)
    stored = await stored_states(pipeline.dsn, wanted)
    seen = log_deliveries(pipeline.log_path) + Counter(
        await asyncio.to_thread(sink_call, f"{sink}/seen")
    )
    summary = outcome.summarize(rows, stored, set(seen), sum(seen.values()) - len(seen))
    return summary | {"drained_in_s": drained, "seen_by": "log file + webhook sink"}, stored


async def remote_outcome(host: str, sink: str, rows: list[outcome.Row], within: float) -> Outcome:
    wanted = sorted(outcome.accepted(rows))
    sample = wanted if len(wanted) <= CHECK_LIMIT else sorted(random.sample(wanted, CHECK_LIMIT))
    stored = await api_states(host, sample, within)
    seen = Counter(await asyncio.to_thread(sink_call, f"{sink}/seen"))
    delivered = {u for u, s in stored.items() if s.state == "sent"} | set(seen)
    dupes = sum(seen.values()) - len(seen)  # only webhooks to the local sink are visible
    summary = outcome.summarize(rows, stored, delivered, dupes, checked=set(sample))
    return summary | {"seen_by": "API states; duplicates: webhook sink only"}, stored


def _load_env(config: LoadConfig, webhook_url: str) -> dict[str, str]:
    return {
        "LOAD_MIX": config.mix,
        "LOAD_REPOST_SHARE": str(config.repost_share),
        "LOAD_WEBHOOK_URL": webhook_url,
        "LOAD_USER_RATE": str(config.user_rate),
    }


async def run(config: LoadConfig, workdir: Path) -> dict[str, Any]:
    sink_port = free_port()
    sink = f"http://127.0.0.1:{sink_port}"
    args = [
        "-m",
        "loadtest.sink",
        "--port",
        str(sink_port),
        "--delay-ms",
        str(config.sink_delay_ms),
    ]
    sink_proc = harness.start_process(args, harness.stage_env(), workdir / "sink.log")
    pipeline = None if config.host else LocalPipeline(workdir, free_port())
    try:
        await harness.wait_http(f"{sink}/stats", sink_proc)
        if pipeline is not None:
            print("starting notifsvc dev and warming it up ...", flush=True)
            await pipeline.start()
            webhook = config.webhook_url or f"{sink}/hook"
            await pipeline.warm_up([body(c, webhook) for c, _ in parse_mix(config.mix)])
            await asyncio.to_thread(sink_call, f"{sink}/reset", "POST")
        host = config.host or (pipeline.host if pipeline else "")
        return await _measure(config, workdir, host, sink, pipeline)
    finally:
        if pipeline is not None:
            pipeline.stop()
        harness.stop_process(sink_proc)


async def _measure(
    config: LoadConfig, workdir: Path, host: str, sink: str, pipeline: LocalPipeline | None
) -> dict[str, Any]:
    print(f"load: {config.users} users on {host} for {config.duration}s", flush=True)
    sampler = harness.CpuSampler()
    sampler.start()
    try:
        run, summary, stored = await _load_and_drain(config, workdir, host, sink, pipeline)
    finally:
        await sampler.stop()
    return {
        "mode": "local" if pipeline is not None else "api",
        "host": host,
        "config": asdict(config),
        "summary": summary | {"others_cpu_pct_mean": sampler.others_mean()},
        "series": outcome.series(run.rows, stored, run.started, sampler.samples),
    }


async def _load_and_drain(
    config: LoadConfig, workdir: Path, host: str, sink: str, pipeline: LocalPipeline | None
) -> tuple[LocustRun, dict[str, Any], dict[str, outcome.Stored]]:
    async def delivered_so_far() -> str:
        if pipeline is not None:
            return f"{await sent_count(pipeline.dsn):,}"
        stats = await asyncio.to_thread(sink_call, f"{sink}/stats")
        return f"{stats['unique']:,} webhooks seen by the local sink"

    run = await run_locust(
        host,
        users=config.users,
        spawn_rate=config.spawn_rate,
        seconds=config.duration,
        processes=config.processes,
        workdir=workdir,
        load_env=_load_env(config, config.webhook_url or f"{sink}/hook"),
        progress=Progress(workdir / "locust_stats.csv", config.duration, delivered_so_far),
        extra_args=["--csv", str(workdir / "locust")],
    )
    print(f"load done: {len(run.rows):,} requests; waiting for the pipeline to drain", flush=True)
    if pipeline is not None:
        summary, stored = await local_outcome(pipeline, sink, run.rows, config.drain_timeout)
    else:
        summary, stored = await remote_outcome(host, sink, run.rows, config.drain_timeout)
    return run, summary, stored


def main() -> int:
    config = LoadConfig.from_env(dict(os.environ), os.cpu_count() or 1)
    workdir = harness.scratch_dir("load")
    result = asyncio.run(run(config, workdir))
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = harness.RESULTS / f"load-{stamp}.json"
    png_path = harness.RESULTS / f"load-{stamp}.png"
    json_path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    chart.draw(png_path, result["series"], result["summary"], report.load_title(result))
    print()
    print(report.load_text(result))
    print(f"\nresults: {json_path.relative_to(harness.ROOT)}, {png_path.relative_to(harness.ROOT)}")
    return 0 if result["summary"]["lost"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
