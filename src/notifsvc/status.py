"""``notifsvc status``: one screen on the running pipeline.

Lag per stage and partition (committed offsets against partition ends, the callback
dispatcher's two lanes included), notifications by channel and state, sends per second by
channel over the last minute, the sizes of the DLQ and of the callbacks' DLQ, and
the reconciler's view: rows unfinished and unmoved for longer than
``NOTIFSVC_REDRIVE_AFTER_SECONDS`` (its next work), and rows it re-drove or expired in the
last hour (both read through partial indexes, never a scan of the table).

Circuit breakers live in the notificator processes, so they are read where those publish
them: the ``notifsvc_breaker_state`` gauge of each ``/metrics`` URL given (the worst state
any replica reports, per channel and provider). Without URLs, the ports ``notifsvc dev``
uses are tried (``NOTIFSVC_METRICS_PORT`` and the ports above it, on this machine).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp

from notifsvc import channels, errors, kafka, topics
from notifsvc.breaker import State as BreakerState
from notifsvc.config import Settings
from notifsvc.db.store import Store, StoreMisconfigured
from notifsvc.kafka import KafkaError, PartitionLag
from notifsvc.model import State

_STATES = tuple(s.value for s in State)


@dataclass
class Snapshot:
    lag: dict[str, list[PartitionLag]] = field(default_factory=dict)  # by consumer group
    states: dict[str, dict[str, int]] = field(default_factory=dict)  # channel -> state -> n
    per_second: dict[str, float] = field(default_factory=dict)
    dlq: int | None = None
    callbacks_dlq: int | None = None
    problems: list[str] = field(default_factory=list)
    stalled: dict[str, int] = field(default_factory=dict)  # unfinished, unmoved: re-driven next
    redriven: dict[str, int] = field(default_factory=dict)  # in the last hour (expired too)
    expired: dict[str, int] = field(default_factory=dict)  # failed expired_unfinished, last hour
    stalled_after: int = 0  # NOTIFSVC_REDRIVE_AFTER_SECONDS
    breakers: dict[tuple[str, str], BreakerState] = field(default_factory=dict)  # worst replica's


_BREAKER = re.compile(
    r'^notifsvc_breaker_state\{channel="([^"]*)",provider="([^"]*)"\}\s+([0-9.]+)$', re.M
)
#: How long one ``/metrics`` URL may take to answer.
METRICS_TIMEOUT = 2.0


def breaker_states(text: str) -> dict[tuple[str, str], BreakerState]:
    """The breaker states in a Prometheus exposition (one process's ``/metrics``)."""
    out = {}
    for channel, provider, value in _BREAKER.findall(text):
        try:
            out[(channel, provider)] = BreakerState(int(float(value)))
        except ValueError:
            continue
    return out


def metrics_urls(settings: Settings) -> list[str]:
    """Where ``notifsvc dev`` serves the stages' ``/metrics`` (none without a port)."""
    if not settings.metrics_port:
        return []
    count = len(channels.REGISTRY) + 2  # the router, each notificator, the dispatcher
    return [f"http://127.0.0.1:{settings.metrics_port + i}/metrics" for i in range(count)]


async def read_breakers(urls: Sequence[str], snap: Snapshot, *, explicit: bool) -> None:
    """The worst state of each provider's breaker over ``urls`` into ``snap``; an
    ``explicit`` URL that does not answer is a problem, a guessed one is skipped."""
    timeout = aiohttp.ClientTimeout(total=METRICS_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for url in urls:
            try:
                async with session.get(url) as resp:
                    text = await resp.text()
            except (aiohttp.ClientError, TimeoutError) as exc:
                if explicit:
                    snap.problems.append(f"metrics: {url}: {exc or type(exc).__name__}")
                continue
            for key, state in breaker_states(text).items():
                snap.breakers[key] = max(state, snap.breakers.get(key, BreakerState.CLOSED))


def _groups(settings: Settings) -> list[tuple[str, str]]:
    """(consumer group, topic) of the router, of every lane of every channel and of the
    callback dispatcher's lanes."""
    out = [(topics.router_group(settings), topics.outstanding(settings))]
    for name in channels.REGISTRY:
        for lane in topics.LANES:
            group = topics.notificator_group(settings, name, lane)
            out.append((group, topics.channel(settings, name, lane)))
    for lane in topics.CALLBACK_LANES:
        out.append((topics.dispatcher_group(settings, lane), topics.callbacks(settings, lane)))
    return out


def read_kafka(settings: Settings, snap: Snapshot) -> None:
    """Consumer lag per group and the dead-letter topics' sizes into ``snap`` (blocking; a
    broker problem becomes a line of ``snap.problems``). Also read by ``GET /stats``."""
    try:
        for group, topic in _groups(settings):
            snap.lag[group] = kafka.group_lag(settings, group, topic)
        snap.dlq = kafka.topic_size(settings, topics.dlq(settings))
        snap.callbacks_dlq = kafka.topic_size(settings, topics.callbacks_dlq(settings))
    except (KafkaError, Exception) as exc:  # noqa: BLE001 - shown, not raised: a status view
        snap.problems.append(f"broker: {exc}")


async def _read_db(settings: Settings, snap: Snapshot) -> None:
    store = Store(settings.database, max_connections=2, attempts=1)
    await store.start()
    try:
        states = await store.counts_by_state()
        snap.states = {c: {s.value: n for s, n in by.items()} for c, by in states.items()}
        snap.per_second = {c: n / 60 for c, n in (await store.sent_last_minute()).items()}
        await _read_reconciler(store, settings, snap)
    except errors.PipelineError as exc:
        snap.problems.append(f"database: {exc}")
    finally:
        await store.stop()


async def _read_reconciler(store: Store, settings: Settings, snap: Snapshot) -> None:
    snap.stalled_after = settings.redrive_after_seconds
    try:
        after = timedelta(seconds=settings.redrive_after_seconds)
        snap.stalled = await store.stalled_by_channel(after)
        for channel, (redriven, expired) in (await store.redriven_last_hour()).items():
            snap.redriven[channel] = redriven
            snap.expired[channel] = expired
    except StoreMisconfigured as exc:
        snap.problems.append(f"database: {exc} (has `notifsvc migrate` run?)")


async def collect(settings: Settings, metrics: Sequence[str] = ()) -> Snapshot:
    """Everything :func:`render` shows; ``metrics``: the notificators' ``/metrics`` URLs."""
    snap = Snapshot()
    urls = list(metrics) or metrics_urls(settings)
    await asyncio.gather(
        asyncio.to_thread(read_kafka, settings, snap),
        _read_db(settings, snap),
        read_breakers(urls, snap, explicit=bool(metrics)),
    )
    return snap


def render(snap: Snapshot) -> str:
    lines = ["notifsvc status", "", "notifications by state (sends/s over the last minute)"]
    lines.append(f"  {'channel':<10}" + "".join(f"{s:>11}" for s in _STATES) + f"{'sends/s':>10}")
    for name in sorted(set(snap.states) | set(snap.per_second)):
        counts = snap.states.get(name, {})
        row = "".join(f"{counts.get(s, 0):>11}" for s in _STATES)
        lines.append(f"  {name:<10}{row}{snap.per_second.get(name, 0.0):>10.1f}")
    lines += ["", "consumer lag (committed offset -> end of partition)"]
    for group, parts in snap.lag.items():
        total = sum(p.lag for p in parts)
        if not parts or (total == 0 and all(p.committed is None for p in parts)):
            continue
        detail = " ".join(f"p{p.partition}:{p.lag}" for p in parts if p.lag)
        lines.append(f"  {group:<44} {total:>8}  {detail}")
    lines += ["", f"dead letters (notifications.dlq): {_size(snap.dlq)}"]
    lines.append(f"dead callbacks ({topics.CALLBACKS}.dlq): {_size(snap.callbacks_dlq)}")
    lines += ["", *_render_reconciler(snap)]
    lines += ["", *_render_breakers(snap)]
    lines += [f"! {problem}" for problem in snap.problems]
    return "\n".join(lines)


def _size(value: int | None) -> str:
    return "?" if value is None else str(value)


def _render_reconciler(snap: Snapshot) -> list[str]:
    head = f"reconciler: stalled (unfinished, unmoved for {snap.stalled_after}s) and last hour's"
    names = sorted(set(snap.stalled) | set(snap.redriven) | set(snap.expired))
    if not names:
        return [f"{head} re-drives: none"]
    lines = [
        f"{head} re-drives",
        f"  {'channel':<10}{'stalled':>11}{'re-driven':>11}{'expired':>11}",
    ]
    for name in names:
        counts = (snap.stalled.get(name, 0), snap.redriven.get(name, 0), snap.expired.get(name, 0))
        lines.append(f"  {name:<10}" + "".join(f"{n:>11}" for n in counts))
    return lines


def _render_breakers(snap: Snapshot) -> list[str]:
    head = "circuit breakers (worst replica)"
    if not snap.breakers:
        return [f"{head}: none seen (no notificator /metrics answered)"]
    lines = [f"{head}", f"  {'channel':<10}{'provider':<14}state"]
    for (channel, provider), state in sorted(snap.breakers.items()):
        lines.append(f"  {channel:<10}{provider:<14}{state.label}")
    return lines


async def show(settings: Settings, *, watch: float = 0.0, metrics: Sequence[str] = ()) -> int:
    """Print the status once, or every ``watch`` seconds until interrupted; ``metrics``:
    the notificators' ``/metrics`` URLs (for the circuit breakers)."""
    while True:
        snap = await collect(settings, metrics)
        text = render(snap)
        print(("\x1b[2J\x1b[H" if watch else "") + text, flush=True)
        if not watch:
            return 1 if snap.problems else 0
        await asyncio.sleep(watch)
