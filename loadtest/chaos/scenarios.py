"""The fault-injection scenarios. Each returns a :class:`Result`; findings never raise."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import time
import uuid as uuid_mod
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime

from loadtest.chaos import hostile, poison
from loadtest.chaos.callbacks import judge_events
from loadtest.chaos.load import Attempt, Load, log_body, webhook_body, with_callback
from loadtest.chaos.procs import ASSIGNED, StageProcess
from loadtest.chaos.report import Deliveries, Result, joint
from loadtest.chaos.session import Context, Session, session, until
from loadtest.chaos.sinks import HOSTILE_KINDS, CallbackSink, CutOff, HostileSink, Sink
from loadtest.stats import percentile
from notifsvc import config
from notifsvc.breaker import State as BreakerState
from notifsvc.config import Settings
from notifsvc.db.store import Store
from notifsvc.dev.fakes.http import HttpFake
from notifsvc.dev.fakes.twilio import FakeTwilio
from notifsvc.dev.fakes.vonage import FakeVonage
from notifsvc.process import free_port
from notifsvc.signing import SECRET_PREFIX
from notifsvc.status import Snapshot, read_breakers

log = logging.getLogger(__name__)

Scenario = Callable[[Context], Awaitable[Result]]
READY_WITHIN = 60.0
ACCEPT_AGAIN_WITHIN = 15.0


async def _owns_partitions(stage: StageProcess, result: Result) -> float:
    """Seconds until the current run of ``stage`` owned partitions (a failure if never)."""
    began = time.monotonic()
    if not await stage.logged(ASSIGNED, within=READY_WITHIN):
        result.failures.append(f"{stage.name} run {stage.runs} never got partitions")
    return time.monotonic() - began


#: Longest a kill waits for work under way (then it lands whatever happens).
BUSY_WITHIN = 5.0


async def _kill_repeatedly(
    s: Session,
    stage: StageProcess,
    result: Result,
    sink: CutOff | None = None,
    *,
    kills: int | None = None,
    busy: asyncio.Event | None = None,
) -> float:
    """SIGKILL ``stage`` at a random moment once it owns partitions, restarting it at once;
    ``kills`` times (default: the profile's). With ``busy`` (default: the ``sink``'s), each
    kill waits (up to :data:`BUSY_WITHIN` seconds) until it is set: work under way.

    Returns when the last restart happened. With a ``sink``, also notes how many kills cut
    off a send under way.
    """
    if busy is None and sink is not None:
        busy = sink.busy
    hits = 0
    waits = []
    healed = time.time()
    for _ in range(s.ctx.profile.kills if kills is None else kills):
        await s.pause(s.ctx.rng.uniform(0.3, 2.5))
        if busy is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(busy.wait(), BUSY_WITHIN)
        # Judged at the kill, by the sink's own count: a loaded harness notices the cut-off
        # sends late (they count in ``aborted`` once the sink's work on them ends).
        hits += sink is not None and sink.in_flight > 0
        stage.kill()
        stage.start()
        healed = time.time()
        await _owns_partitions(stage, result)
        waits.append(time.time() - healed)
    result.notes.append(
        f"{stage.name}: restart to partitions owned: mean {sum(waits) / len(waits):.1f}s, "
        f"max {max(waits):.1f}s"
    )
    if sink is not None:
        result.notes.append(
            f"{stage.name}: {hits}/{len(waits)} kills landed mid-send "
            f"({sink.aborted} cut off so far)"
        )
        result.check(hits > 0, f"no kill of {stage.name} landed mid-send")
    return healed


def _standard(s: Session, channel: str = "log") -> None:
    s.fleet.receiver()
    s.fleet.router()
    s.fleet.notificator(channel)


async def router_kill(ctx: Context) -> Result:
    result = Result(f"router SIGKILL x{ctx.profile.kills}")
    async with session(ctx, "router-kill") as s:
        _standard(s)
        await s.fleet.ready(within=READY_WITHIN)
        s.start_load(log_body)
        healed = await _kill_repeatedly(s, s.fleet.stages[1], result)
        await s.pause()
        await s.finish(result, healed)
    return result


async def notificator_kill(ctx: Context) -> Result:
    result = Result(f"notificator SIGKILL x{ctx.profile.kills}")
    sink = Sink(delay=0.5)  # slow enough that a kill finds sends under way
    async with session(ctx, "notificator-kill", sink=sink) as s:
        _standard(s, "webhook")
        await s.fleet.ready(within=READY_WITHIN)
        # Half the load: with a slow provider the backlog of each ~12 s outage must drain
        # between kills, or the run ends with minutes of catching up.
        s.start_load(webhook_body(sink.url), rate=ctx.profile.rate / 2)
        healed = await _kill_repeatedly(s, s.fleet.stages[2], result, sink)
        await s.pause()
        await s.finish(result, healed)
    return result


async def rebalance(ctx: Context) -> Result:
    result = Result("rebalance 2+2, kill 1, add 1")
    async with session(ctx, "rebalance") as s:
        s.fleet.receiver()
        router_a = s.fleet.router("router-a")
        s.fleet.router("router-b")
        log_a = s.fleet.notificator("log", "log-a")
        s.fleet.notificator("log", "log-b")
        await s.fleet.ready(within=READY_WITHIN)
        s.start_load(log_body)
        await s.pause()
        router_a.kill()
        router_c = s.fleet.router("router-c")
        await s.pause()
        log_a.kill()
        log_c = s.fleet.notificator("log", "log-c")
        healed = time.time()
        for added in (router_c, log_c):
            await _owns_partitions(added, result)
        await s.pause()
        await s.finish(result, healed)
    return result


async def db_outage(ctx: Context) -> Result:
    outage = ctx.profile.db_outage
    result = Result(f"database down {outage:.0f}s")
    async with session(ctx, "db-outage") as s:
        _standard(s)
        await s.fleet.ready(within=READY_WITHIN)
        s.start_load(log_body)
        await s.pause()
        await ctx.infra.stop_database()
        down = time.time()
        await s.pause(outage)
        await ctx.infra.start_database()
        healed = time.time()
        during = sum(1 for t in s.seen().first.values() if down + 2 < t < healed)
        await s.pause()
        await s.finish(result, healed)
    runs = {st.name: st.runs for st in s.fleet.stages}
    result.check(all(n == 1 for n in runs.values()), f"stages restarted: {runs}")
    result.notes.append(f"deliveries while the database was down (after its first 2s): {during}")
    return result


def _statuses(attempts: Iterable[Attempt]) -> dict[int, int]:
    return dict(sorted(Counter(a.status for a in attempts).items()))


async def _accepting_again(s: Session, load: Load, healed: float, result: Result) -> None:
    """Wait for a 202 after the broker's restart; if none comes, restart every stage.

    The restart is what an operator would have to do; it lets the rest of the scenario
    still check that what is accepted afterwards is delivered.
    """

    async def accepted() -> bool:
        return any(a.status == 202 and a.started > healed for a in load.attempts)

    if await until(accepted, within=ACCEPT_AGAIN_WITHIN):
        return
    result.failures.append(
        f"no 202 within {ACCEPT_AGAIN_WITHIN:.0f}s of the broker's restart; "
        "restarted every stage by hand"
    )
    for stage in s.fleet.stages:
        stage.kill()
        stage.start()
    await s.fleet.ready(within=READY_WITHIN)


#: The reconciler's timing in the broker-outage scenario: what the restarted in-memory broker
#: lost from the lanes is re-driven from the database within seconds, not minutes.
REDRIVE = {"redrive_after_seconds": "10", "redrive_period_seconds": "2"}


async def broker_outage(ctx: Context) -> Result:
    outage = ctx.profile.broker_outage
    result = Result(f"broker down {outage:.0f}s")
    settings = {"produce_timeout_ms": "1000", **REDRIVE}
    async with session(ctx, "broker-outage", sink=None, **settings) as s:
        _standard(s)
        await s.fleet.ready(within=READY_WITHIN)
        load = s.start_load(log_body)
        await s.pause()
        await ctx.infra.stop_broker()
        down = time.time()
        await s.pause(outage)
        up = time.time()
        await ctx.infra.start_broker(s.lane)
        healed = time.time()
        await _accepting_again(s, load, healed, result)
        await s.pause(2 * ctx.profile.phase)
        await load.stop()
        inside = [a for a in load.attempts if a.started > down and a.finished < up]
        result.notes.append(f"answers while down: {_statuses(inside)}")
        result.check(
            bool(inside) and all(a.status == 503 for a in inside), "not every answer was 503"
        )
        wanted = await _reached_the_ledger(s, load.accepted, down, result)
        await s.finish(result, healed, accepted=wanted)
    return result


async def _reached_the_ledger(
    s: Session, accepted: Mapping[str, float], down: float, result: Result
) -> dict[str, float]:
    """Everything accepted after the restart, and everything accepted before it that
    reached the database: the reconciler must deliver those whose lane messages the
    in-memory broker lost. Only what never left the broker's memory cannot be delivered
    (with Kafka's acks=all on disk, nothing would be in that case)."""
    before = [u for u, at in accepted.items() if at <= down]
    stored = await _stored(s.lane.settings, before)
    wanted = {u: at for u, at in accepted.items() if at > down or u in stored}
    result.notes.append(
        f"accepted before the outage: {len(before)}, of which {len(stored)} reached the "
        f"database and are checked; {len(before) - len(stored)} were only in the in-memory "
        "broker when it stopped"
    )
    return wanted


async def _stored(settings: Settings, uuids: list[str]) -> set[str]:
    store = Store(settings.database)
    await store.start()
    try:
        rows = await store.lookup([uuid_mod.UUID(u) for u in uuids])
    finally:
        await store.stop()
    return {str(u) for u in rows}


async def provider_flaky(ctx: Context) -> Result:
    result = Result("provider 500/429/hang")
    sink = Sink(flaky=True, hang=3.0)
    settings = {"send_timeout_ms": "1000", "max_attempts": "5"}
    async with session(ctx, "provider-flaky", sink=sink, **settings) as s:
        _standard(s, "webhook")
        await s.fleet.ready(within=READY_WITHIN)
        load = s.start_load(webhook_body(sink.url), rate=ctx.profile.rate / 2)
        await s.pause(4 * ctx.profile.phase)
        await s.finish(result, None)
    latency = [sink.first[u] - at for u, at in load.accepted.items() if u in sink.first]
    result.recover_s = max(latency, default=None)
    result.notes.append(f"sink answers: {dict(sink.answers)}; recover = worst accepted-to-sent")
    result.check(all(sink.answers[t] for t in ("500", "429", "hang")), "a failure kind never ran")
    return result


async def poison_messages(ctx: Context) -> Result:
    result = Result("poison messages")
    async with session(ctx, "poison") as s:
        _standard(s)
        await s.fleet.ready(within=READY_WITHIN)
        s.start_load(log_body)
        expected: dict[bytes, str] = {}
        healed = time.time()
        for tag in ("a", "b"):
            await s.pause()
            expected |= await poison.inject(s.lane.settings, ctx.profile.poison, tag)
            healed = time.time()
        await s.pause()
        await s.finish(result, healed)
        found = await poison.dead_lettered(s.lane.settings, set(expected), within=30)
    right = sum(found.get(k) == stage for k, stage in expected.items())
    result.notes.append(f"dead-lettered with the right stage: {right}/{len(expected)}")
    result.check(right == len(expected), "poison missing from notifications.dlq")
    return result


async def sigterm(ctx: Context) -> Result:
    result = Result(f"SIGTERM all x{ctx.profile.sigterm_rounds}")
    async with session(ctx, "sigterm") as s:
        _standard(s)
        await s.fleet.ready(within=READY_WITHIN)
        s.start_load(log_body, retries=8)
        healed = time.time()
        slowest: dict[str, float] = {}
        for _ in range(ctx.profile.sigterm_rounds):
            await s.pause(ctx.rng.uniform(1.0, 3.0))
            stops = await asyncio.gather(*(st.terminate() for st in s.fleet.stages))
            for st, (code, took) in zip(s.fleet.stages, stops, strict=True):
                result.check(code == 0, f"{st.name} exited with {code} on SIGTERM")
                slowest[st.name] = max(took, slowest.get(st.name, 0.0))
            for st in s.fleet.stages:
                st.start()
            healed = time.time()
            await s.fleet.ready(within=READY_WITHIN)
        await s.pause()
        await s.finish(result, healed)
    result.notes.append(f"slowest stop: { {k: round(v, 1) for k, v in slowest.items()} }")
    result.check(result.duplicated == 0, "duplicates caused by a graceful shutdown")
    return result


#: Short delivery bounds, so that whatever the hostile provider does, every notification it
#: gets is finished (sent, or failed with a reason) within seconds.
HOSTILE_SETTINGS = {
    "send_timeout_ms": "1000",
    "inprocess_attempts": "2",
    "max_attempts": "3",
    "retry_delay_ms": "500",
    "throttle_budget_seconds": "10",
}


#: How the store's refusals read (``notifsvc.db.store``); never a delivery's reason.
STORE_ERROR = "database error"


async def hostile_input(ctx: Context) -> Result:
    """Ordinary load, hostile posts, broken topic messages and a hostile webhook provider
    at once: everything accepted ends sent or failed with a reason, and no stage stops."""
    result = Result("hostile input and provider")
    seed = ctx.rng.getrandbits(32)
    async with (
        HostileSink(seed) as provider,
        session(ctx, "hostile", sink=None, **HOSTILE_SETTINGS) as s,
    ):
        _standard(s)
        s.fleet.notificator("webhook")
        await s.fleet.ready(within=READY_WITHIN)
        load = s.start_load(log_body)
        rng = random.Random(ctx.rng.getrandbits(64))
        posts = hostile.HostilePosts(s.lane.base_url, provider.url, rng, ctx.profile.hostile)
        injected = await _hostile_traffic(s, posts)
        healed = time.time()
        await s.pause()
        await s.finish(result, healed)
        found = await _finished_with_reasons(s, result, [*load.accepted, *posts.accepted])
        await _broken_accounted(s, result, injected)
        stopped = [st.name for st in s.fleet.stages if not st.alive or st.runs != 1]
        result.check(not stopped, f"stages that exited or were restarted: {stopped}")
    _hostile_verdicts(result, posts, provider, found)
    return result


async def _hostile_traffic(s: Session, posts: hostile.HostilePosts) -> list[poison.Broken]:
    """Hostile posts all along; meanwhile, twice, broken messages written to the topics."""
    rng = random.Random(s.ctx.rng.getrandbits(64))
    posting = asyncio.create_task(posts.run())
    injected: list[poison.Broken] = []
    try:
        for tag in ("a", "b"):
            await s.pause()
            batch = poison.broken(s.lane.settings, rng, s.ctx.profile.poison, tag)
            await poison.produce(s.lane.settings, batch)
            injected += batch
        await posting
    finally:
        posting.cancel()
    return injected


async def _finished_with_reasons(
    s: Session, result: Result, uuids: list[str]
) -> dict[str, tuple[str, str | None]]:
    """Wait until every accepted UUID is ``sent``, or ``failed`` with a reason."""
    found: dict[str, tuple[str, str | None]] = {}

    async def finished() -> bool:
        found.update(await hostile.states(s.lane.settings.dsn, uuids))
        return not hostile.unfinished(found, uuids)

    await until(finished, within=s.ctx.profile.drain)
    left = hostile.unfinished(found, uuids)
    result.check(not left, f"{len(left)} accepted, never sent nor failed with a reason: {left[:3]}")
    _outcomes_stored(result, found)
    return found


def _outcomes_stored(result: Result, found: dict[str, tuple[str, str | None]]) -> None:
    """A reason from the store means that the database refused a delivery's outcome, and
    the batch loop failed the notification in its place (with the wrong reason, and
    without the retries it had left)."""
    refused = sorted(u for u, (_, why) in found.items() if (why or "").startswith(STORE_ERROR))
    result.check(not refused, f"{len(refused)} outcomes refused by the database: {refused[:2]}")


async def _broken_accounted(s: Session, result: Result, injected: list[poison.Broken]) -> None:
    """Every broken topic message dead-lettered by the right stage; every valid one (with
    garbage headers) delivered."""
    expected = {m.key: m.stage for m in injected if m.stage}
    found = await poison.dead_lettered(s.lane.settings, set(expected), within=30)
    right = sum(found.get(k) == stage for k, stage in expected.items())
    result.notes.append(f"broken topic messages dead-lettered: {right}/{len(expected)}")
    result.check(right == len(expected), "broken topic messages missing from notifications.dlq")
    valid = [m.key.decode() for m in injected if not m.stage]

    async def delivered() -> bool:
        return all(s.seen().counts[u] for u in valid)

    await until(delivered, within=10)
    done = sum(1 for u in valid if s.seen().counts[u])
    result.notes.append(f"valid topic messages with garbage headers delivered: {done}/{len(valid)}")
    result.check(done == len(valid), "a valid message with garbage headers was not delivered")


def _hostile_verdicts(
    result: Result,
    posts: hostile.HostilePosts,
    provider: HostileSink,
    found: dict[str, tuple[str, str | None]],
) -> None:
    """Notes on what the hostile clients and provider did, and checks that they did it."""
    ends = Counter(f"{ch}:{found.get(u, ('missing',))[0]}" for u, ch in posts.accepted.items())
    result.notes.append(f"hostile posts: {dict(sorted(posts.statuses.items()))}")
    result.notes.append(f"hostile 202s ended: {dict(sorted(ends.items()))}")
    result.notes.append(f"provider answers: {dict(sorted(provider.answers.items()))}")
    errors = {k: n for k, n in posts.statuses.items() if k >= 500 and k != 503}
    result.check(not errors, f"the receiver failed on hostile input: {errors}")
    refused = sum(n for k, n in posts.statuses.items() if 400 <= k < 500)
    result.check(bool(posts.accepted) and refused > 0, "hostile input all accepted or all refused")
    missed = [k for k in HOSTILE_KINDS if not provider.answers[k]]
    result.check(not missed, f"hostile answers never given: {missed}")


#: Status callbacks to the sink on 127.0.0.1; an event the sink answers 500 is taken up
#: again from the dispatcher's retry lane after 0.5 s (doubling per pass).
CALLBACK_SETTINGS = {"callback_allowed_hosts": "127.0.0.1", "callback_retry_delay_ms": "500"}


async def status_callbacks(ctx: Context) -> Result:
    """Every notification asks for status callbacks; the callback dispatcher is SIGKILLed
    mid-delivery and, meanwhile, the notificator a few times. Every accepted notification
    is delivered and its ``notification.sent`` event received (duplicates only under its
    one webhook-id), and every callback verifies."""
    kills = ctx.profile.kills
    notificator_kills = max(2, kills // 3)
    result = Result(f"callbacks, dispatcher x{kills} notificator x{notificator_kills}")
    secret = SECRET_PREFIX + base64.b64encode(ctx.rng.randbytes(32)).decode()
    async with (
        CallbackSink(secret, ctx.rng.getrandbits(32)) as sink,
        session(ctx, "callbacks", sink=None, callback_secret=secret, **CALLBACK_SETTINGS) as s,
    ):
        s.fleet.receiver()
        s.fleet.router()
        notificator = s.fleet.notificator("log")
        dispatcher = s.fleet.callbacks()
        await s.fleet.ready(within=READY_WITHIN)
        load = s.start_load(with_callback(log_body, sink.url))
        await s.pause()
        restarts = await asyncio.gather(
            _kill_repeatedly(s, dispatcher, result, sink),
            _kill_repeatedly(s, notificator, result, kills=notificator_kills),
        )
        await s.pause()
        await s.finish(result, max(restarts), seen=lambda: joint(s.seen(), sink.deliveries()))
        judge_events(result, load.accepted, sink, s.seen())
    return result


def _scheduled_body(
    dues: dict[str, float], rng: random.Random
) -> Callable[[str], dict[str, object]]:
    """Log notifications each due 2-12 s after it is posted (``dues`` notes when)."""

    def body(uid: str) -> dict[str, object]:
        due = time.time() + rng.uniform(2.0, 12.0)
        dues[uid] = due
        at = datetime.fromtimestamp(due, UTC).isoformat()
        return log_body(uid) | {"send_at": at}

    return body


async def scheduled_send(ctx: Context) -> Result:
    """Scheduled sends while the router, which holds every delay tier's only consumer, is
    SIGKILLed: each delivered (once), none before its ``send_at``."""
    result = Result(f"scheduled sends, router SIGKILL x{ctx.profile.kills}")
    dues: dict[str, float] = {}
    async with session(ctx, "scheduled") as s:
        _standard(s)
        await s.fleet.ready(within=READY_WITHIN)
        s.start_load(_scheduled_body(dues, ctx.rng))
        healed = await _kill_repeatedly(s, s.fleet.stages[1], result)
        await s.finish(result, healed)  # its drain waits for the last ones to come due
        first = s.seen().first
    early = [u for u, at in first.items() if at < dues[u]]
    late = [at - dues[u] for u, at in first.items()]
    result.check(not early, f"{len(early)} delivered before their send_at")
    if late:
        p50, p99 = percentile(late, 50), percentile(late, 99)
        result.notes.append(f"lateness p50 {p50:.2f}s, p99 {p99:.2f}s")
    return result


def _sms_body(uid: str) -> dict[str, object]:
    return {"uuid": uid, "destination": "sms", "to": "+14155552671", "txt": uid}


def _by_provider(*fakes: tuple[HttpFake, str]) -> Deliveries:
    """What the ``(fake, form field holding the UUID)`` took together, by UUID."""
    counts: Counter[str] = Counter()
    first: dict[str, float] = {}
    for fake, field in fakes:
        for seen in list(fake.delivered):
            uid = seen.form().get(field, "")
            counts[uid] += 1
            first[uid] = min(first.get(uid, seen.wall), seen.wall)
    return Deliveries(counts, first)


async def _breaker_is(port: int, state: BreakerState) -> bool:
    snap = Snapshot()
    await read_breakers([f"http://127.0.0.1:{port}/metrics"], snap, explicit=False)
    return snap.breakers.get(("sms", "twilio")) is state


async def primary_provider_down(ctx: Context) -> Result:
    """The sms channel's first provider (a fake Twilio) refuses connections for two phases
    under load, then comes back on the same port; the second (a fake Vonage) takes over."""
    result = Result("primary provider down (sms: twilio -> vonage)")
    twilio, vonage, metrics_port = FakeTwilio(), FakeVonage(), free_port()
    primary, secondary = (twilio, "Body"), (vonage, "text")
    try:
        await twilio.start()
        await vonage.start()
        sms = replace(
            twilio.config(),
            providers="twilio,vonage",
            breaker_min_calls=10,
            breaker_cooldown_seconds=3.0,
        )
        env = config.to_env(Settings().with_sections(sms, vonage.config()))
        values = {k.removeprefix(config.PREFIX).lower(): v for k, v in env.items()}
        async with session(ctx, "primary-down", sink=None, **values) as s:
            s.fleet.receiver()
            s.fleet.router()
            s.fleet.notificator("sms", metrics_port=str(metrics_port))
            await s.fleet.ready(within=READY_WITHIN)
            s.start_load(_sms_body)
            await s.pause()
            await twilio.stop()  # connections refused from now on
            opened = await until(lambda: _breaker_is(metrics_port, BreakerState.OPEN), within=30)
            result.check(opened, "the primary's breaker never opened")
            await s.pause(2 * ctx.profile.phase)
            await twilio.start(twilio.port)
            healed = time.time()
            closed = await until(lambda: _breaker_is(metrics_port, BreakerState.CLOSED), within=30)
            result.check(closed, "the primary's breaker never closed again")
            await s.pause()
            await s.finish(result, healed, seen=lambda: _by_provider(primary, secondary))
    finally:
        await twilio.stop()
        await vonage.stop()
    first, second = _by_provider(primary), _by_provider(secondary)
    both = set(first.counts) & set(second.counts)
    result.check(not both, f"{len(both)} delivered through both providers, e.g. {sorted(both)[:2]}")
    after = [u for u, at in first.first.items() if at > healed]
    result.check(bool(second.counts), "nothing went through the secondary")
    result.check(bool(after), "no traffic returned to the primary")
    result.notes.append(
        f"twilio took {len(first.counts)} ({len(after)} after it came back), "
        f"vonage {len(second.counts)}, through both: {len(both)}"
    )
    return result


SCENARIOS: dict[str, Scenario] = {
    "router-kill": router_kill,
    "notificator-kill": notificator_kill,
    "rebalance": rebalance,
    "db-outage": db_outage,
    "broker-outage": broker_outage,
    "provider-flaky": provider_flaky,
    "poison": poison_messages,
    "hostile": hostile_input,
    "callbacks": status_callbacks,
    "sigterm": sigterm,
    "scheduled": scheduled_send,
    "primary-down": primary_provider_down,
}

#: Scenarios that stop the shared broker or database, or must not be disturbed: run alone.
EXCLUSIVE = frozenset({"db-outage", "broker-outage", "sigterm"})
