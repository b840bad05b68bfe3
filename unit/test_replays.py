"""Replay jobs: the filter a request may give, and the runner's pages over an in-memory table
that follows the statements' conditions (what is selected, flipped, counted and produced)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifsvc import config, headers, kafka, topics
from notifsvc.api.replays import request_schema
from notifsvc.config import ConfigError, Secret, Settings
from notifsvc.db.replays import (
    TOP,
    Cursor,
    Job,
    PageRow,
    ReplayFilter,
    ReplayStore,
    Requeued,
    page_statement,
)
from notifsvc.db.store import StoreUnavailable
from notifsvc.kafka import Headers, KafkaError, KafkaRecordError, KafkaUnavailable, Producer
from notifsvc.model import EARLIEST, LATEST, Notification, Priority, Reason
from notifsvc.replays import (
    InvalidReplay,
    ReplayRunner,
    page_size,
    parse_filter,
    parse_rfc3339,
)

SETTINGS = Settings(
    kafka_bootstrap="127.0.0.1:1",
    database_url=Secret("postgresql://x/y"),
    replay_rate=16.0,  # pages of 4
    replay_lease_seconds=30,
    replay_poll_ms=1,
)
T0 = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


# --- the filter -------------------------------------------------------------------------


def refusal(data: object) -> dict[str, str]:
    with pytest.raises(InvalidReplay) as caught:
        parse_filter(data)
    return {e.field: e.message for e in caught.value.errors}


def test_a_filter_is_normalised() -> None:
    f = parse_filter(
        {
            "channel": "WebHook",
            "state": "failed",
            "since": "2027-03-01T13:00:00+01:00",
            "until": "2027-03-01T12:30:00.5Z",
            "reason": "throttled",
        }
    )
    assert f == ReplayFilter(
        "webhook", T0, T0 + timedelta(minutes=30, microseconds=500_000), Reason.THROTTLED
    )
    assert f.view() == {
        "state": "failed",
        "channel": "webhook",
        "since": "2027-03-01T12:00:00+00:00",
        "until": "2027-03-01T12:30:00.500000+00:00",
        "reason": "throttled",
    }


@pytest.mark.parametrize(
    "body",
    [
        {"channel": "log"},
        {"since": "2027-03-01T12:00:00Z"},
        {"until": "2027-03-01T12:00:00Z"},
        {"reason": "token_invalid"},
    ],
)
def test_any_one_narrowing_field_is_enough(body: dict[str, Any]) -> None:
    assert parse_filter(body | {"state": None}).view()["state"] == "failed"


@pytest.mark.parametrize("body", [{}, {"state": "failed"}, {"channel": None, "reason": None}])
def test_a_replay_of_everything_is_refused(body: dict[str, Any]) -> None:
    assert "would resend every failed notification" in refusal(body)[""]


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ([], "", "expected a JSON object"),
        ("channel=log", "", "expected a JSON object"),
        ({"channel": "log", "limit": 5}, "limit", "is not a known field"),
        ({"channel": "pigeon"}, "channel", "must be a registered channel"),
        ({"channel": 7}, "channel", "must be a registered channel"),
        ({"channel": " log"}, "channel", "must be a registered channel"),
        ({"channel": "log", "state": "sent"}, "state", "must be failed"),
        ({"channel": "log", "state": "FAILED"}, "state", "must be failed"),
        ({"channel": "log", "state": 1}, "state", "must be failed"),
        ({"since": "2027-03-01T12:00:00"}, "since", "RFC 3339"),
        ({"since": "2027-03-01"}, "since", "RFC 3339"),
        ({"since": "2027-02-30T12:00:00Z"}, "since", "RFC 3339"),
        ({"since": "2027-03-01 12:00:00Z"}, "since", "RFC 3339"),
        ({"until": "2027-03-01T12:00:00+24:00"}, "until", "RFC 3339"),
        ({"until": 1_800_000_000}, "until", "RFC 3339"),
        (
            {"since": "2027-03-01T12:00:00Z", "until": "2027-03-01T12:00:00Z"},
            "until",
            "later than since",
        ),
        (
            {"since": "2027-03-01T13:00:00+01:00", "until": "2027-03-01T12:00:00Z"},
            "until",
            "later than since",
        ),
        ({"reason": "provider_down"}, "reason", "must be one of throttled"),
        ({"reason": ["throttled"]}, "reason", "must be one of"),
    ],
)
def test_every_refusal_names_its_field(body: object, field: str, says: str) -> None:
    problems = refusal(body)
    assert says in problems[field], problems


def test_times_beyond_what_the_database_stores_are_taken_as_its_bounds() -> None:
    f = parse_filter({"since": "0001-01-01T00:00:00+01:00", "until": "9999-12-31T23:00:00-05:00"})
    assert (f.since, f.until) == (EARLIEST, LATEST)


def test_every_failing_field_is_listed_at_once() -> None:
    problems = refusal({"channel": "pigeon", "state": "sent", "since": "soon", "x": 1})
    assert set(problems) == {"channel", "state", "since", "x"}


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
            lambda m: timezone(timedelta(minutes=m))
        ),
    )
)
def test_an_rfc3339_time_reads_back_as_the_same_instant(moment: datetime) -> None:
    text = moment.isoformat()
    assert parse_rfc3339(text) == moment
    assert parse_rfc3339(text.replace("+00:00", "Z")) == moment


@given(st.text(max_size=40))
def test_no_text_makes_the_time_parser_raise(text: str) -> None:
    parsed = parse_rfc3339(text)
    assert parsed is None or parsed.tzinfo is not None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
fields = st.sampled_from(["channel", "state", "since", "until", "reason", "other"])


@given(
    st.dictionaries(
        fields,
        json_values | st.sampled_from(["log", "failed", "throttled", "2027-03-01T12:00:00Z"]),
    )
)
def test_any_body_is_a_filter_or_a_listed_refusal(body: dict[str, object]) -> None:
    try:
        f = parse_filter(body)
    except InvalidReplay as exc:
        assert exc.errors and all(e.message for e in exc.errors)
    else:
        assert any(getattr(f, name) is not None for name in ("channel", "since", "until", "reason"))
        assert f.since is None or f.until is None or f.since < f.until


body_values = st.one_of(
    st.none(),
    st.integers(0, 3),
    st.sampled_from(["log", "LOG", "pigeon", "failed", "sent", "throttled", "bounced", ""]),
    st.sampled_from(["2027-03-01T12:00:00Z", "2027-03-01T12:00:00+01:00"]),  # since < until
)


@given(st.dictionaries(fields, body_values, max_size=4))
def test_the_documented_request_schema_accepts_what_the_filter_accepts(
    body: dict[str, object],
) -> None:
    if isinstance(body.get("since"), str) and isinstance(body.get("until"), str):
        body["since"], body["until"] = "2027-03-01T00:00:00Z", "2027-03-02T00:00:00Z"
    schema = jsonschema_rs.Draft202012Validator(request_schema(), validate_formats=True)
    try:
        parse_filter(body)
    except InvalidReplay:
        assert not schema.is_valid(body)
    else:
        assert schema.is_valid(body)


# --- settings and statements -------------------------------------------------------------


def test_settings_have_defaults_and_a_bad_rate_stops_the_start() -> None:
    defaults = config.load({})
    assert (defaults.replay_rate, defaults.replay_lease_seconds, defaults.replay_poll_ms) == (
        200.0,
        30,
        2000,
    )
    with pytest.raises(ConfigError) as caught:
        config.load({"NOTIFSVC_REPLAY_RATE": "-1", "NOTIFSVC_REPLAY_LEASE_SECONDS": "0"})
    assert [p.split("=")[0] for p in caught.value.problems] == [
        "NOTIFSVC_REPLAY_RATE",
        "NOTIFSVC_REPLAY_LEASE_SECONDS",
    ]


@pytest.mark.parametrize(
    ("rate", "size"), [(200.0, 50), (16.0, 4), (0.5, 1), (100_000.0, 1000), (0.0, 1000)]
)
def test_a_page_holds_a_quarter_second_of_the_rate(rate: float, size: int) -> None:
    assert page_size(dataclasses.replace(SETTINGS, replay_rate=rate)) == size


@given(
    st.builds(
        ReplayFilter,
        st.none() | st.just("log"),
        st.none() | st.just(T0),
        st.none() | st.just(T0),
        st.none() | st.sampled_from(Reason),
    )
)
def test_each_filter_shape_numbers_its_values_after_the_four_fixed_ones(f: ReplayFilter) -> None:
    sql, values = page_statement(f)
    numbers = {int(n) for n in re.findall(r"\$(\d+)", sql)}
    assert numbers == set(range(1, 5 + len(values)))
    assert ("channel =" in sql) == (f.channel is not None)
    assert ("split_part" in sql) == (f.reason is not None)
    assert sql.count("state = 'failed'") == 1  # asked once, by the reason's condition if any


# --- the runner over an in-memory table ---------------------------------------------------


@dataclasses.dataclass
class Row:
    notification: Notification
    received_at: datetime
    state: str = "failed"
    replay_id: str | None = None
    attempts: int = 1

    @property
    def cursor(self) -> Cursor:
        return self.received_at, self.notification.uuid


class Table(ReplayStore):
    """The statements' conditions over rows in memory; one job, its lease and an event log."""

    def __init__(self, rows: list[Row], job: Job) -> None:
        super().__init__("postgresql://x/y")
        self.rows = {r.notification.uuid: r for r in rows}
        self.current = job
        self.owner: str | None = None
        self.events: list[str] = []
        self.after_page: list[Row] = []  # rows another writer flips between page and flip
        self.down = False  # claims fail as in a database outage
        self.finished = asyncio.Event()  # the job is done
        self.claims = 0
        self.claimed_twice = asyncio.Event()

    async def claim_job(self, owner: str, lease: timedelta) -> Job | None:
        self.events.append("claim")
        self.claims += 1
        if self.claims == 2:
            self.claimed_twice.set()
        if self.down:
            raise StoreUnavailable("database unavailable")
        if self.current.state != "running" or self.owner not in (None, owner):
            return None
        self.owner = owner
        return self.current

    async def page(self, job: Job, after: Cursor, limit: int) -> list[PageRow]:
        self.events.append("page")
        newest_first = sorted(self.rows.values(), key=lambda r: r.cursor, reverse=True)
        before = [r for r in newest_first if r.cursor < after]
        failed = [r for r in before if r.state == "failed" and r.replay_id != job.id][:limit]
        mine = [r for r in before if r.replay_id == job.id][:limit]
        chosen = sorted(failed + mine, key=lambda r: r.cursor, reverse=True)[:limit]
        for r in self.after_page:
            r.state, r.replay_id = "forwarded", "rpl_other"
        return [PageRow(r.notification.uuid, r.received_at, r.replay_id == job.id) for r in chosen]

    async def requeue(self, job_id: str, uuids: list[uuid.UUID]) -> list[Requeued]:
        self.events.append("requeue")
        out = []
        for uid in sorted(uuids):
            r = self.rows[uid]
            again = r.state == "forwarded" and r.replay_id == job_id
            if (r.state == "failed" and r.replay_id != job_id) or again:
                r.state, r.replay_id = "forwarded", job_id
                out.append(Requeued(r.notification, r.attempts))
        return out

    async def advance(
        self,
        job_id: str,
        owner: str,
        *,
        cursor: Cursor,
        counts: tuple[int, int, int],
        lease: timedelta,
        done: bool,
    ) -> bool:
        self.events.append("advance")
        if owner != self.owner:
            return False
        j = self.current
        self.current = dataclasses.replace(
            j,
            cursor=cursor,
            matched=j.matched + counts[0],
            requeued=j.requeued + counts[1],
            skipped=j.skipped + counts[2],
            state="done" if done else "running",
        )
        if done:
            self.owner = None
            self.finished.set()
        return True

    async def renew(self, job_id: str, owner: str, lease: timedelta) -> bool:
        self.events.append("renew")
        return owner == self.owner

    async def release(self, job_id: str, owner: str) -> None:
        self.events.append("release")
        if owner == self.owner:
            self.owner = None


class FakeProducer(Producer):
    """Acknowledges every message at once, unless ``fail`` is set."""

    def __init__(self) -> None:
        super().__init__(SETTINGS, client_id="fake")
        self.fail: KafkaError | None = None
        self.sent: list[tuple[str, bytes, bytes | None, Headers | None]] = []

    def _started(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def _queue(self, outgoing: kafka._Outgoing) -> None:
        topic, value, key, headers, waiter = outgoing
        if self.fail is None:
            self.sent.append((topic, value, key, headers))
        kafka.settle(waiter, self.fail)

    def keys(self) -> Counter[str]:
        return Counter((key or b"").decode() for _, _, key, _ in self.sent)


class RecordingLimiter:
    def __init__(self, events: list[str]) -> None:
        self.events = events

    async def acquire(self, amount: float = 1) -> None:
        self.events.append(f"acquire {amount:g}")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def rows(count: int, channel: str = "log") -> list[Row]:
    """``count`` failed rows, received a minute apart (the last one newest)."""
    out = []
    for i in range(count):
        n = Notification(
            uuid.uuid4(), channel, "ops", f"n{i}", priority=Priority.HIGH, accepted_at=1.8e9
        )
        out.append(Row(n, T0 + timedelta(minutes=i), attempts=i % 3 + 1))
    return out


def a_job() -> Job:
    return Job(
        "rpl_" + "a" * 32, ReplayFilter(channel="log"), "running", 0, 0, 0, None, T0, T0, None
    )


def runner(
    table: Table, producer: FakeProducer, *, owner: str = "r1", clock: Clock | None = None
) -> ReplayRunner:
    limiter = RecordingLimiter(table.events)
    return ReplayRunner(
        SETTINGS, table, producer, owner=owner, limiter=limiter, clock=clock or Clock()
    )


def take(one: ReplayRunner, table: Table) -> Job:
    """The job, leased to ``one`` (as its claim would)."""
    table.owner = one.owner
    return table.current


async def work(one: ReplayRunner, table: Table) -> bool:
    return await one.work(take(one, table), asyncio.Event())


async def test_pages_go_newest_first_paying_before_each_and_recording_after_the_acks() -> None:
    table, producer = Table(rows(10), a_job()), FakeProducer()
    assert await work(runner(table, producer), table)
    assert table.events == ["acquire 4", "page", "requeue", "advance"] * 3  # 4 + 4 + 2: done
    j = table.current
    assert (j.state, j.matched, j.requeued, j.skipped) == ("done", 10, 10, 0)
    newest_first = sorted(table.rows.values(), key=lambda r: r.cursor, reverse=True)
    assert j.cursor == newest_first[-1].cursor
    assert producer.keys() == Counter({str(u): 1 for u in table.rows})
    assert {r.state for r in table.rows.values()} == {"forwarded"}


async def test_a_requeued_row_goes_to_its_low_lane_with_its_attempts_as_the_budget_start() -> None:
    table, producer = Table(rows(3), a_job()), FakeProducer()
    await work(runner(table, producer), table)
    for topic, value, key, hdrs in producer.sent:
        row = table.rows[uuid.UUID((key or b"").decode())]
        assert topic == topics.channel(SETTINGS, "log", "low")  # not its own (high) lane
        assert value == row.notification.encode()
        recorded = str(row.attempts).encode()
        sent = dict(hdrs or ())
        at = float(sent.pop(headers.REPLAYED_AT))
        assert sent == {headers.ATTEMPTS: recorded, headers.REPLAYED_FROM: recorded}
        assert abs(at - time.time()) < 60  # the requeue's time, which the budget counts from


async def test_rows_no_longer_failed_when_flipped_are_skipped_not_sent() -> None:
    table, producer = Table(rows(4), a_job()), FakeProducer()
    taken = list(table.rows.values())[:2]
    table.after_page = taken  # another job flips them between the page and the flip
    await work(runner(table, producer), table)
    j = table.current
    assert (j.matched, j.requeued, j.skipped) == (4, 2, 2)
    assert not {str(r.notification.uuid) for r in taken} & set(producer.keys())


async def test_a_job_taken_over_re_sends_its_unfinished_page_and_counts_each_row_once() -> None:
    table = Table(rows(10), a_job())
    dying, survivor = FakeProducer(), FakeProducer()
    first = runner(table, dying, owner="killed")
    assert (await first.run_page(take(first, table), TOP)) is not None
    dying.fail = KafkaUnavailable("the router died mid-produce")
    assert not await first.work(table.current, asyncio.Event())  # page 2 flipped, not sent
    cursor = table.current.cursor
    assert cursor is not None
    in_flight = [r for r in table.rows.values() if r.replay_id and r.cursor < cursor]
    assert len(in_flight) == 4
    in_flight[0].state = "sent"  # one of its messages did get through, and was sent
    table.owner = None  # the lease ran out
    assert await work(runner(table, survivor, owner="r2"), table)
    j = table.current
    assert (j.state, j.matched, j.requeued, j.skipped) == ("done", 10, 10, 0)
    resent = set(survivor.keys())
    assert {str(r.notification.uuid) for r in in_flight[1:]} <= resent
    assert str(in_flight[0].notification.uuid) not in resent
    assert sum((dying.keys() + survivor.keys()).values()) == 9  # page 1 is not sent again


async def test_a_second_job_over_the_same_rows_requeues_none_of_them() -> None:
    table, producer = Table(rows(5), a_job()), FakeProducer()
    await work(runner(table, producer), table)
    table.current = dataclasses.replace(a_job(), id="rpl_" + "b" * 32)
    await work(runner(table, producer), table)
    j = table.current
    assert (j.state, j.matched, j.requeued) == ("done", 0, 0)  # all forwarded: not failed
    assert set(producer.keys().values()) == {1}


async def test_an_outage_while_producing_leaves_the_cursor_where_it_was() -> None:
    table, producer = Table(rows(5), a_job()), FakeProducer()
    producer.fail = KafkaUnavailable("broker down")
    assert not await work(runner(table, producer), table)
    assert table.events[-2:] == ["page", "requeue"]  # no advance
    assert table.current.cursor is None and table.current.matched == 0


async def test_a_message_refused_for_good_does_not_stop_the_job() -> None:
    table, producer = Table(rows(2), a_job()), FakeProducer()
    producer.fail = KafkaRecordError("too large")
    assert await work(runner(table, producer), table)
    assert table.current.state == "done"


async def test_a_runner_whose_lease_was_taken_stops_at_once() -> None:
    table, producer = Table(rows(10), a_job()), FakeProducer()
    one = runner(table, producer)
    job = take(one, table)
    table.owner = "someone else"
    assert await one.work(job, asyncio.Event())
    assert table.events.count("page") == 1 and table.current.matched == 0


class TickingLimiter(RecordingLimiter):
    """A pace that makes each page wait ``step`` seconds of the injected clock."""

    def __init__(self, events: list[str], clock: Clock, step: float) -> None:
        super().__init__(events)
        self.clock, self.step = clock, step

    async def acquire(self, amount: float = 1) -> None:
        self.clock.now += self.step


@pytest.mark.parametrize(("wait", "renewals"), [(9.0, 0), (10.0, 3)])
async def test_the_lease_is_renewed_before_a_page_once_a_third_of_it_went_by(
    wait: float, renewals: int
) -> None:
    clock = Clock()
    table, producer = Table(rows(10), a_job()), FakeProducer()
    limiter = TickingLimiter(table.events, clock, wait)  # 30 s lease: renewed after 10 s
    one = ReplayRunner(SETTINGS, table, producer, owner="r1", limiter=limiter, clock=clock)
    await work(one, table)
    assert (
        table.events
        == ["renew"] * (renewals > 0)
        + ["page", "requeue", "advance"]
        + (["renew"] * (renewals > 0) + ["page", "requeue", "advance"]) * 2
    )


async def test_a_lost_lease_at_renewal_stops_before_the_page() -> None:
    clock = Clock()
    table, producer = Table(rows(10), a_job()), FakeProducer()
    limiter = TickingLimiter(table.events, clock, 10.0)
    one = ReplayRunner(SETTINGS, table, producer, owner="r1", limiter=limiter, clock=clock)
    job = take(one, table)
    table.owner = "someone else"
    assert await one.work(job, asyncio.Event())
    assert table.events == ["renew"]


async def test_stopping_gives_the_job_up_for_another_router() -> None:
    table, producer = Table(rows(10), a_job()), FakeProducer()
    one = runner(table, producer)
    stopping = asyncio.Event()
    stopping.set()
    job = take(one, table)
    await one.work(job, stopping)
    assert table.events == ["release"] and table.owner is None


async def test_run_takes_the_job_works_it_to_the_end_and_polls_again() -> None:
    table, producer = Table(rows(6), a_job()), FakeProducer()
    one = runner(table, producer)
    stopping = asyncio.Event()
    task = asyncio.create_task(one.run(stopping))
    await asyncio.wait_for(table.finished.wait(), 5)
    stopping.set()
    await asyncio.wait_for(task, 5)
    assert one.requeued == 6


async def test_a_database_outage_never_escapes_the_runner() -> None:
    table, producer = Table(rows(3), a_job()), FakeProducer()
    table.down = True
    stopping = asyncio.Event()
    task = asyncio.create_task(runner(table, producer).run(stopping))
    await asyncio.wait_for(table.claimed_twice.wait(), 5)  # it polls again after the failure
    stopping.set()
    await asyncio.wait_for(task, 5)


async def test_a_bug_in_a_page_ends_the_job_for_now_not_the_router() -> None:
    table, producer = Table(rows(3), a_job()), FakeProducer()
    table.rows[next(iter(table.rows))].notification = None  # type: ignore[assignment]
    assert not await work(runner(table, producer), table)
    assert table.current.matched == 0
