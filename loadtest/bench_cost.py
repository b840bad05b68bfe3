"""``make bench-cost``: CPU per notification, per process, with same-run baselines.

One local broker and database (:class:`notifsvc.dev.infra.LocalInfra`, as ``notifsvc dev``
and the tests run them). Each round measures, on lanes of its own:

1. **ingress**: ``--requests`` single ``POST /notification`` over ``--connections``
   keep-alive connections, against ``notifsvc receiver --workers W``, against the bare
   aiohttp endpoint (``loadtest.bare``, same workers) and against the bare endpoint that
   also waits for the broker (``loadtest.bare --acknowledged``: the floor of any receiver
   that keeps the 202 promise), with nothing consuming the topic; then
   the Go seed service's produce pattern (:mod:`loadtest.cost_load`) at the receiver's rate.
   CPU per request of each server and of the broker; latencies; requests/s.
2. **pipeline**: receiver, ``--scale`` routers and ``--scale`` log notificators, each its own
   process; ``--count`` notifications posted as pre-built arrays of ``--batch`` (several
   client processes), until all are ``sent`` in the database. CPU per delivered
   notification of each process, of the broker and of PostgreSQL (postmaster and every
   backend), and the end-to-end rate on the database clock.

CPU is user + system time of each process tree (``/proc/<pid>/stat``) before and after: it
moves far less than rates on a shared machine. The load generators are not measured.
Figures of several ``--rounds`` are reported as medians. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from loadtest import cpu_split, harness, pg_statements, prefill, stats
from loadtest.bench import machine
from notifsvc import topics
from notifsvc.db.queries import state_is
from notifsvc.dev.fakes.webhook import WebhookSink
from notifsvc.dev.infra import Lane, LocalInfra
from notifsvc.dev.stages import OWNERSHIP, PARTITION
from notifsvc.model import State
from notifsvc.process import free_port

WARMUP = 1_000
IDLE_SECONDS = 5.0
#: Rows this run delivered (received since the lane began: not the ``--prefill`` rows). They
#: read the list index of sent rows (as the list spells its state), not the whole table;
#: their backend's CPU is left out of the database's (:class:`Meter`).
_SENT = f"""
SELECT count(*) FROM notifications
WHERE {state_is(State.SENT)} AND received_at >= to_timestamp($1)
"""
_SPAN = f"""
SELECT count(*) AS n, extract(epoch FROM max(sent_at) - min(accepted_at)) AS seconds
FROM notifications WHERE {state_is(State.SENT)} AND received_at >= to_timestamp($1)
"""


@dataclass(frozen=True)
class Options:
    count: int
    batch: int
    clients: int
    requests: int
    connections: int
    workers: int
    scale: int
    partitions: int
    rounds: int
    pipeline_only: bool = False
    channel: str = "log"
    ingress_only: bool = False
    statements: bool = False
    perf: bool = False
    prefill: int = 0


class Meter:
    """CPU seconds of named process trees between :meth:`start` and :meth:`stop`, less
    those of the processes in ``exclude`` under the same name (processes of those trees that
    serve the benchmark, not the pipeline)."""

    def __init__(
        self, pids: dict[str, list[int]], exclude: dict[str, list[int]] | None = None
    ) -> None:
        self.pids = pids
        self.exclude = exclude or {}
        self._before: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        return {
            name: harness.cpu_seconds(p) - harness.cpu_seconds(self.exclude.get(name, ()))
            for name, p in self.pids.items()
        }

    def start(self) -> None:
        self._before = self._now()

    def stop(self) -> dict[str, float]:
        return {n: c - self._before[n] for n, c in self._now().items()}


async def _clients(args: list[list[str]], workdir: Path) -> list[dict[str, Any]]:
    """Run load processes at once; the JSON result of each."""
    outs = [workdir / f"load-{i}.json" for i in range(len(args))]
    procs = [
        await asyncio.create_subprocess_exec(
            harness.PYTHON,
            "-m",
            "loadtest.cost_load",
            *a,
            "--out",
            str(out),
            env=harness.stage_env(),
        )
        for a, out in zip(args, outs, strict=True)
    ]
    codes = await asyncio.gather(*(p.wait() for p in procs))
    if any(codes):
        raise harness.Deadline(f"a load process failed: {codes}")
    return [orjson.loads(out.read_bytes()) for out in outs]


async def _post(
    url: str,
    path: str,
    o: Options,
    *,
    count: int,
    batch: int,
    workdir: Path,
    to: tuple[str, str] = ("log", "ops-team"),
) -> dict[str, Any]:
    per = -(-count // o.clients)
    conns = max(1, o.connections // o.clients) if batch == 1 else 2
    args = [
        [
            *("http", url, path, "--count", str(per), "--connections", str(conns)),
            *("--batch", str(batch), "--destination", to[0], "--to", to[1]),
        ]
        for _ in range(o.clients)
    ]
    results = await _clients(args, workdir)
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    for r in results:
        latencies += r["latencies_ms"]
        for k, v in r["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    seconds = max(r["seconds"] for r in results)
    lat = stats.latency(latencies).as_dict()
    return {"statuses": statuses, "seconds": seconds, "latency_ms": lat, "sent": per * o.clients}


#: The servers single requests are measured against, in the order they run: the bare
#: endpoint, the bare endpoint that waits for the broker, the receiver.
SERVERS = ("bare", "acked", "receiver")


def _servers(lane: Lane, workers: int, workdir: Path) -> tuple[dict[str, Any], dict[str, str]]:
    env = harness.stage_env(lane.settings)
    procs = {
        "receiver": harness.start_process(
            ["-m", "notifsvc", "receiver", "--workers", str(workers)], env, workdir / "recv.log"
        )
    }
    urls = {"receiver": lane.base_url}
    for name, extra in (("bare", []), ("acked", ["--acknowledged"])):
        port = free_port()
        command = ["-m", "loadtest.bare", "--port", str(port), "--workers", str(workers), *extra]
        procs[name] = harness.start_process(command, env, workdir / f"{name}.log")
        urls[name] = f"http://127.0.0.1:{port}"
    return procs, urls


async def ingress(infra: LocalInfra, o: Options, workdir: Path) -> dict[str, Any]:
    """Single requests to the receiver and the bare endpoints; the Go produce pattern."""
    lane = await infra.lane(
        "ingress", workdir / "ingress", topic_partitions=o.partitions, log_level="WARNING"
    )
    procs, urls = _servers(lane, o.workers, workdir)
    out: dict[str, Any] = {}
    try:
        for name in SERVERS:
            await harness.wait_http(f"{urls[name]}/healthz", procs[name])
            await _post(urls[name], "/notification", o, count=2_000, batch=1, workdir=workdir)
        for name in SERVERS:
            out[name] = await _measured(infra, procs[name].pid, urls[name], o, workdir)
            print(f"  {name}: {out[name]['sent'] / out[name]['seconds']:,.0f} req/s", flush=True)
        out["go_pattern"] = await _go_pattern(infra, lane, o, workdir)
        rate = out["receiver"]["sent"] / out["receiver"]["seconds"]
        out["go_paced"] = await _go_pattern(infra, lane, o, workdir, rate)
    finally:
        for proc in procs.values():
            harness.stop_process(proc)
        await infra.drop(lane)
    return out


async def _measured(
    infra: LocalInfra, pid: int, url: str, o: Options, workdir: Path
) -> dict[str, Any]:
    """One server's timed run: its CPU and the broker's, and with ``--perf`` where the
    server's went (:mod:`loadtest.cpu_split`)."""
    pids = [p.pid for p in harness.tree(pid)]
    data = workdir / f"perf-{pid}.data"
    recording = cpu_split.PerfRecording(pids, data) if o.perf else None
    if recording is not None:
        await recording.start()
    meter = Meter({"server": [pid], "broker": [infra.broker.pid]})
    meter.start()
    try:
        run = await _post(url, "/notification", o, count=o.requests, batch=1, workdir=workdir)
    except BaseException:
        if recording is not None:
            await recording.cancel()
        raise
    out = run | {"cpu": meter.stop()}
    if recording is not None:
        out["split"] = await recording.stop()
    return out


async def _go_pattern(
    infra: LocalInfra, lane: Lane, o: Options, workdir: Path, rate: float = 0.0
) -> dict[str, Any]:
    """The Go service's produce pattern at the same connections: at its own pace, or at
    ``rate`` (the receiver's, so that both make batches from the same flow)."""
    count, inflight = o.requests, o.connections
    meter = Meter({"broker": [infra.broker.pid]})
    meter.start()
    topic = topics.outstanding(lane.settings)
    args = ["produce", infra.bootstrap, topic, "--count", str(count), "--inflight", str(inflight)]
    [run] = await _clients([[*args, "--rate", f"{rate:.0f}"]], workdir)
    pace = f"{count / run['seconds']:,.0f} msg/s ({inflight} in flight)"
    print(f"  go pattern{' at the receiver rate' if rate else ''}: {pace}", flush=True)
    cpu = meter.stop()
    return {"sent": count, "seconds": run["seconds"], "cpu": cpu, "client_cpu": run["cpu_seconds"]}


def owned(log_path: Path) -> set[tuple[str, int]]:
    """The partitions a stage's consumers own now, from its rebalance log lines."""
    out: set[tuple[str, int]] = set()
    for line in log_path.read_text(errors="replace").splitlines():
        with contextlib.suppress(orjson.JSONDecodeError):
            event = orjson.loads(line)
            found = OWNERSHIP.match(str(event.get("msg", ""))) if isinstance(event, dict) else None
            if found is not None:
                parts = {(t, int(p)) for t, p in PARTITION.findall(event["msg"])}
                out = out | parts if found.group(1) == "assigned" else out - parts
    return out


def balanced(lane: Lane, logs: dict[str, Path], channel: str = "log") -> bool:
    """Every router and notificator owns some partitions, and together all of them."""
    wanted = {
        "router": {topics.outstanding(lane.settings)},
        "notificator": {topics.channel(lane.settings, channel, x) for x in topics.LANES},
    }
    partitions = lane.settings.topic_partitions
    for kind, names in wanted.items():
        each = [  # a router also owns the delay tiers' partitions: only these count
            {(t, n) for t, n in owned(path) if t in names}
            for name, path in logs.items()
            if _stage(name) == kind
        ]
        union = set().union(*each)
        if any(not o for o in each) or len(union) != partitions * len(names):
            return False
    return True


async def _until(check: Any, what: str, within: float) -> float:
    return await harness.eventually(check, within, what, every=0.25)


def _stages(lane: Lane, o: Options, workdir: Path) -> dict[str, Any]:
    env = harness.stage_env(lane.settings)
    run = [("receiver", ["receiver"])]
    for i in range(o.scale):
        run += [(f"router{i + 1}", ["router"])]
        run += [(f"notificator{i + 1}", ["notificator", "--channel", o.channel])]
    return {
        name: harness.start_process(["-m", "notifsvc", *args], env, workdir / f"{name}.log")
        for name, args in run
    }


async def pipeline(infra: LocalInfra, o: Options, workdir: Path) -> dict[str, Any]:
    """``o.count`` notifications through receiver, routers and notificators (of the log
    channel, or of webhooks posted to a sink in this process, which is not measured)."""
    sink = WebhookSink(keep=0) if o.channel == "webhook" else None
    values: dict[str, Any] = {"channels": o.channel}
    if sink is not None:
        await sink.start()
        values["webhook_allowed_hosts"] = "127.0.0.1"
    lane = await infra.lane(
        "pipeline",
        workdir / "pipeline",
        topic_partitions=o.partitions,
        log_level="INFO",  # the consumers' "assigned" lines (nothing per message)
        **values,
    )
    conn = await asyncpg.connect(lane.settings.dsn)
    to = (o.channel, sink.hook_url()) if sink is not None else ("log", "ops-team")
    procs: dict[str, Any] = {}
    try:
        if o.prefill:
            seconds = await prefill.prefill(conn, o.prefill)
            print(f"  prefilled {o.prefill:,} delivered notifications in {seconds:.0f} s")
        procs = _stages(lane, o, workdir)
        await harness.wait_http(f"{lane.base_url}/healthz", procs["receiver"])
        return await _drive(infra, lane, o, procs, conn, workdir=workdir, to=to)
    finally:
        await conn.close()
        for proc in procs.values():
            harness.stop_process(proc)
        await infra.drop(lane)
        if sink is not None:
            await sink.stop()


async def _drive(
    infra: LocalInfra,
    lane: Lane,
    o: Options,
    procs: dict[str, Any],
    conn: Any,
    *,
    workdir: Path,
    to: tuple[str, str],
) -> dict[str, Any]:
    since = time.time() - 1.0  # (the database's clock is this machine's)

    async def sent(n: int) -> bool:
        if any(p.poll() is not None for p in procs.values()):
            raise harness.Deadline("a stage exited")
        return int(await conn.fetchval(_SENT, since)) >= n

    await _post(
        lane.base_url, "/notifications", o, count=WARMUP, batch=o.batch, workdir=workdir, to=to
    )
    await _until(lambda: sent(WARMUP), "warm-up delivered", 120)
    logs = {name: workdir / f"{name}.log" for name in procs}
    await _until(
        lambda: asyncio.to_thread(balanced, lane, logs, o.channel), "partitions assigned", 60
    )
    pids = {name: [p.pid] for name, p in procs.items()}
    # The polls for "all delivered" cost the database a read of every row sent so far, each
    # time: about 4 µs per notification of 100,000. The backend serving them is the
    # benchmark's, like the load processes, and is not counted.
    polls = [int(await conn.fetchval("SELECT pg_backend_pid()"))]
    servers = {"broker": [infra.broker.pid], "postgres": [infra.postgres.pid]}
    meter = Meter(pids | servers, exclude={"postgres": polls})
    idle = await _idle(meter)
    if o.statements:
        await pg_statements.reset(conn)
    began = time.time()
    meter.start()
    run = await _post(
        lane.base_url, "/notifications", o, count=o.count, batch=o.batch, workdir=workdir, to=to
    )
    await _until(lambda: sent(WARMUP + run["sent"]), "all delivered", 120 + o.count / 500)
    cpu = meter.stop()
    wall = time.time() - began
    row = await conn.fetchrow(_SPAN, began)
    rate = stats.rate(row["n"], float(row["seconds"]))
    print(f"  pipeline: {row['n']:,} delivered, {rate:,.0f}/s end to end", flush=True)
    statements = await pg_statements.top(conn, row["n"]) if o.statements else []
    if statements:
        print("  PostgreSQL time by statement:", *pg_statements.lines(statements), sep="\n")
    marginal = {name: c - idle[name] * wall for name, c in cpu.items()}
    return {
        "delivered": row["n"],
        "rate": rate,
        "post": run,
        "cpu": cpu,
        "idle": idle,
        "wall": wall,
        "marginal": marginal,
        "statements": statements,
    }


async def _idle(meter: Meter) -> dict[str, float]:
    """Cores each process uses with nothing to do (polling, heartbeats, duties), measured
    over :data:`IDLE_SECONDS` before the load: a fixed cost per replica, which the figures
    per notification include for the run's duration and the marginal ones leave out."""
    meter.start()
    began = time.monotonic()
    await asyncio.sleep(IDLE_SECONDS)  # a measuring window, not a wait for anything
    cpu = meter.stop()
    return {name: c / (time.monotonic() - began) for name, c in cpu.items()}


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def per_item(
    rounds: list[dict[str, Any]], phase: str, side: str, count: str, key: str = "cpu"
) -> dict[str, float]:
    """Median over rounds of CPU ms per item, per process name (``key``: the CPU seconds
    measured, or the marginal ones)."""
    names = rounds[0][phase][side][key] if side else rounds[0][phase][key]
    out = {}
    for name in names:
        values = []
        for r in rounds:
            part = r[phase][side] if side else r[phase]
            values.append(1000 * part[key][name] / part[count])
        out[name] = _median(values)
    return out


def _by_stage(values: dict[str, float]) -> dict[str, float]:
    """Figures per process summed per stage (router1 and router2 are the routers)."""
    out: dict[str, float] = {}
    for name, value in values.items():
        out[_stage(name)] = out.get(_stage(name), 0.0) + value
    return out


def _stage(name: str) -> str:
    return name.rstrip("0123456789")


def _med(rounds: list[dict[str, Any]], *path: str) -> float:
    """Median over rounds of one figure, found by its keys."""
    values = []
    for r in rounds:
        value: Any = r
        for key in path:
            value = value[key]
        values.append(float(value))
    return _median(values)


def _rps(rounds: list[dict[str, Any]], side: str) -> float:
    return _median([r["ingress"][side]["sent"] / r["ingress"][side]["seconds"] for r in rounds])


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds of the figures the table shows."""
    if "pipeline" not in rounds[0]:
        return _ingress_summary(rounds)
    stages = _by_stage(per_item(rounds, "pipeline", "", "delivered"))
    marginal = _by_stage(per_item(rounds, "pipeline", "", "delivered", key="marginal"))
    names = rounds[0]["pipeline"]["idle"]
    idle = _by_stage({n: _median([r["pipeline"]["idle"][n] for r in rounds]) for n in names})
    pipeline = {
        "rate": _med(rounds, "pipeline", "rate"),
        "batch_p99": _med(rounds, "pipeline", "post", "latency_ms", "p99"),
        "stages": stages,
        "total": sum(stages.values()),
        "marginal": marginal,
        "marginal_total": sum(marginal.values()),
        "idle": idle,
        "idle_total": sum(idle.values()),
    }
    if "ingress" not in rounds[0]:
        return pipeline
    return pipeline | _ingress_summary(rounds)


def _client_ms(rounds: list[dict[str, Any]]) -> float:
    """CPU ms per message of the Go pattern's own process at the receiver's rate."""
    runs = [r["ingress"]["go_paced"] for r in rounds]
    return _median([1000 * run["client_cpu"] / run["sent"] for run in runs])


def _split_ms(rounds: list[dict[str, Any]], side: str) -> dict[str, float]:
    """Median over rounds of each part's CPU ms per request (``--perf``; else empty)."""
    runs = [r["ingress"][side] for r in rounds]
    if any("split" not in run for run in runs):
        return {}
    return {
        name: _median(
            [1000 * run["cpu"]["server"] * run["split"][name] / run["sent"] for run in runs]
        )
        for name in cpu_split.PARTS
    }


def _ingress_summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "receiver_split": _split_ms(rounds, "receiver"),
        "bare_split": _split_ms(rounds, "bare"),
        "acked_split": _split_ms(rounds, "acked"),
        "acked_ms": per_item(rounds, "ingress", "acked", "sent")["server"],
        "acked_rps": _rps(rounds, "acked"),
        "acked_p99": _med(rounds, "ingress", "acked", "latency_ms", "p99"),
        "receiver_ms": per_item(rounds, "ingress", "receiver", "sent")["server"],
        "bare_ms": per_item(rounds, "ingress", "bare", "sent")["server"],
        "receiver_broker_ms": per_item(rounds, "ingress", "receiver", "sent")["broker"],
        "go_broker_ms": per_item(rounds, "ingress", "go_pattern", "sent")["broker"],
        "go_paced_broker_ms": per_item(rounds, "ingress", "go_paced", "sent")["broker"],
        "go_paced_client_ms": _client_ms(rounds),
        "receiver_rps": _rps(rounds, "receiver"),
        "bare_rps": _rps(rounds, "bare"),
        "go_rps": _rps(rounds, "go_pattern"),
        "receiver_p50": _med(rounds, "ingress", "receiver", "latency_ms", "p50"),
        "receiver_p99": _med(rounds, "ingress", "receiver", "latency_ms", "p99"),
        "bare_p99": _med(rounds, "ingress", "bare", "latency_ms", "p99"),
    }


def _x(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def _against_bare(label: str, ms: float, s: dict[str, Any], note: str = "") -> tuple[str, ...]:
    """A row of CPU ms per request against the bare endpoint's."""
    return label, f"{ms:.4f}", f"{s['bare_ms']:.4f} bare aiohttp", _x(ms, s["bare_ms"]) + note


def text(s: dict[str, Any], o: Options) -> str:

    rows = (
        []
        if o.pipeline_only
        else [
            _against_bare(
                f"receiver CPU ms/request ({o.workers} worker(s), {o.connections} conns)",
                s["receiver_ms"],
                s,
                " (target <= 1.5)",
            ),
            (
                "receiver requests/s",
                f"{s['receiver_rps']:,.0f}",
                f"{s['bare_rps']:,.0f} bare",
                _x(s["receiver_rps"], s["bare_rps"]),
            ),
            (
                "receiver latency p50 / p99 ms",
                f"{s['receiver_p50']:.1f} / {s['receiver_p99']:.1f}",
                f"p99 {s['bare_p99']:.1f} bare",
                "p99 target < 25 ms",
            ),
            _against_bare(
                "floor: bare endpoint that waits for the broker, CPU ms/request",
                s["acked_ms"],
                s,
                " (the receiver's target: 1.5)",
            ),
            (
                "floor: requests/s, p99 ms",
                f"{s['acked_rps']:,.0f}, {s['acked_p99']:.1f}",
                f"{s['bare_rps']:,.0f} bare",
                _x(s["acked_rps"], s["bare_rps"]),
            ),
            _against_bare(
                "receiver CPU ms/request beyond the floor", s["receiver_ms"] - s["acked_ms"], s
            ),
            (
                "producing alone: CPU ms/message of a bare librdkafka client",
                f"{s['go_paced_client_ms']:.4f}",
                f"{s['receiver_rps']:,.0f}/s, {o.connections} in flight, Go's settings",
                f"{s['go_paced_client_ms'] / s['receiver_ms']:.0%} of the receiver's CPU",
            ),
            _against_bare(
                "receiver CPU ms/request beyond producing alone",
                s["receiver_ms"] - s["go_paced_client_ms"],
                s,
            ),
            (
                "broker CPU ms/request (receiver's produce)",
                f"{s['receiver_broker_ms']:.4f}",
                f"{s['go_broker_ms']:.4f} Go pattern ({s['go_rps']:,.0f}/s)",
                _x(s["receiver_broker_ms"], s["go_broker_ms"]) + " (target <= 1.5)",
            ),
            (
                "broker CPU ms/request, Go pattern at the receiver's rate",
                f"{s['receiver_broker_ms']:.4f}",
                f"{s['go_paced_broker_ms']:.4f} Go pattern ({s['receiver_rps']:,.0f}/s)",
                _x(s["receiver_broker_ms"], s["go_paced_broker_ms"]) + " (target <= 1.5)",
            ),
        ]
    )
    rows += _split_rows(s)
    for name, ms in s.get("stages", {}).items():
        label = f"pipeline CPU ms/notification: {name}"
        extra = f"marginal {s['marginal'][name]:.4f}, idle {s['idle'][name]:.3f} cores"
        rows.append((label, f"{ms:.4f}", extra, "target <= 0.05"))
    if o.ingress_only:
        return stats.table(("figure", "value", "baseline", "ratio / target"), rows)
    rows += [
        (
            f"pipeline CPU ms/notification: total (scale {o.scale})",
            f"{s['total']:.4f}",
            f"{1000 / s['total']:,.0f} notifications per CPU-second",
            "target <= 0.15",
        ),
        (
            "pipeline marginal ms/notification, idle cores",
            f"{s['marginal_total']:.4f}",
            f"idle {s['idle_total']:.3f} cores",
            "",
        ),
        (
            "pipeline end-to-end notifications/s",
            f"{s['rate']:,.0f}",
            f"batch POST p99 {s['batch_p99']:.1f} ms",
            "",
        ),
    ]
    return stats.table(("figure", "value", "baseline", "ratio / target"), rows)


def _split_rows(s: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """With ``--perf``: the receiver's and the floor's CPU per request by part, against the
    bare endpoint's."""
    bare = s.get("bare_split", {})
    rows = []
    for side, label in (("receiver", "receiver"), ("acked", "floor")):
        split = s.get(f"{side}_split", {})
        for name in cpu_split.PARTS if split and bare else ():
            more = split[name] - bare[name]
            rows.append(
                (
                    f"{label} CPU ms/request: {name} (perf)",
                    f"{split[name]:.4f}",
                    f"{bare[name]:.4f} bare aiohttp",
                    f"{more:+.4f} ({more / s['bare_ms']:+.2f}x of bare's total)",
                )
            )
    return rows


async def run(o: Options) -> dict[str, Any]:
    workdir = harness.scratch_dir("bench-cost")
    infra = LocalInfra(
        workdir / "infra",
        own_process_group=True,
        postgres_settings=pg_statements.SERVER_SETTINGS if o.statements else None,
    )
    sampler = harness.CpuSampler()
    rounds = []
    await asyncio.to_thread(infra.start)
    sampler.start()
    try:
        for i in range(o.rounds):
            print(f"round {i + 1} of {o.rounds}", flush=True)
            one = {} if o.pipeline_only else {"ingress": await ingress(infra, o, workdir / f"r{i}")}
            if not o.ingress_only:
                one["pipeline"] = await pipeline(infra, o, workdir / f"r{i}")
            rounds.append(one)
    finally:
        await sampler.stop()
        await asyncio.to_thread(infra.stop)
    info = machine() | {"others_cpu_pct_mean": sampler.others_mean()}
    return {"machine": info, "options": o.__dict__, "rounds": rounds, "summary": summary(rounds)}


def options(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench_cost", description=__doc__)
    p.add_argument("--count", type=int, default=30_000, help="notifications through the pipeline")
    p.add_argument("--batch", type=int, default=500, help="notifications per POST /notifications")
    p.add_argument("--clients", type=int, default=4, help="load processes")
    p.add_argument("--requests", type=int, default=30_000, help="single requests per server")
    p.add_argument("--connections", type=int, default=64, help="for the single requests")
    p.add_argument("--workers", type=int, default=1, help="receiver and bare worker processes")
    p.add_argument("--scale", type=int, default=1, help="routers and notificators each")
    p.add_argument("--partitions", type=int, default=8, help="per topic")
    p.add_argument("--rounds", type=int, default=1, help="figures are medians over rounds")
    p.add_argument(
        "--pipeline-only", action="store_true", help="skip the ingress part (single requests)"
    )
    p.add_argument(
        "--ingress-only", action="store_true", help="skip the pipeline part (faster iterations)"
    )
    p.add_argument(
        "--statements",
        action="store_true",
        help="print PostgreSQL time per statement (loads pg_stat_statements: a little dearer)",
    )
    p.add_argument(
        "--perf",
        action="store_true",
        help="split the receiver's and the bare endpoint's CPU by thread and library (perf)",
    )
    p.add_argument(
        "--prefill",
        type=int,
        default=0,
        help="delivered notifications in the table before the pipeline runs (loadtest/prefill.py)",
    )
    p.add_argument(
        "--channel",
        choices=("log", "webhook"),
        default="log",
        help="the pipeline's notificator: log, or webhook to a sink in this process",
    )
    return Options(**vars(p.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    o = options(argv)
    if o.pipeline_only and o.ingress_only:
        raise SystemExit("--pipeline-only and --ingress-only exclude each other")
    try:
        results = asyncio.run(run(o))
    except cpu_split.PerfUnavailable as exc:
        raise SystemExit(f"--perf: {exc}") from None
    name = f"ingress-workers{o.workers}" if o.ingress_only else f"scale{o.scale}"
    path = harness.RESULTS / f"bench-cost-{name}.json"
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    m = results["machine"]
    others = m["others_cpu_pct_mean"]
    print(f"\nmachine: {m['cpus']} cores; other work used {others:.0f}% of all cores meanwhile")
    print(text(results["summary"], o))
    print(f"\nresults: {path.relative_to(harness.ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
