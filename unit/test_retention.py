"""Retention's passes: settings, paging through each finished state, ownership, pacing,
failures and stopping (the statement itself: integration/test_retention.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from notifsvc import batching, config, retention
from notifsvc.config import ConfigError, Secret, Settings
from notifsvc.db.queries import FINISHED
from notifsvc.db.store import Deleted, Store, StoreUnavailable
from notifsvc.duty import START
from notifsvc.kafka import Producer
from notifsvc.model import State
from notifsvc.ratelimit import burst
from notifsvc.reconciler import Reconciler
from notifsvc.retention import Retention

SETTINGS = Settings(
    kafka_bootstrap="127.0.0.1:1",
    database_url=Secret("postgresql://x/y"),
    retention_rate=0.0,
    batch_size=3,  # pages of 3
)
NOW = 1_800_000_000.0
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def page(read: int, rows: int, minute: int = 0) -> Deleted:
    last = (T0 + timedelta(minutes=minute), uuid.uuid4()) if read else None
    return Deleted(last, read, rows, rows * 2)


class FakeStore(Store):
    """Answers each state's pages in order; records each call."""

    def __init__(self, pages: dict[State, list[Deleted | Exception]]) -> None:
        super().__init__("postgresql://x/y")
        self.pages = pages
        self.calls: list[dict[str, object]] = []

    async def delete_finished(
        self,
        state: State,
        *,
        before: datetime,
        after: tuple[datetime, uuid.UUID],
        slices: int,
        owned: Sequence[int],
        limit: int,
    ) -> Deleted:
        self.calls.append(
            {"state": state, "before": before, "after": after, "owned": list(owned), "limit": limit}
        )
        answers = self.pages.get(state, [])
        answer = answers.pop(0) if answers else page(0, 0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def build(
    pages: dict[State, list[Deleted | Exception]],
    settings: Settings = SETTINGS,
    *,
    owned: Sequence[int] = (0, 1, 2, 3),
) -> tuple[Retention, FakeStore]:
    store = FakeStore(pages)

    async def four() -> int:
        return 4

    one = Retention(
        settings,
        store,
        owns=owned.__contains__,
        slices=four,
        clock=lambda: NOW,
        monotonic=lambda: 1_000.0,
    )
    return one, store


def test_settings_default_to_30_days_and_refuse_what_is_not_a_number_of_days() -> None:
    defaults = config.load({})
    assert (defaults.retention_days, defaults.retention_rate) == (30, 10_000.0)
    loaded = config.load({"NOTIFSVC_RETENTION_DAYS": "0", "NOTIFSVC_RETENTION_RATE": "0"})
    assert (loaded.retention_days, loaded.retention_rate) == (0, 0.0)
    assert config.load({"NOTIFSVC_RETENTION_DAYS": "7"}).retention_days == 7
    for bad in ("-1", "6", "3651", "7.5", "a week"):
        with pytest.raises(ConfigError, match="NOTIFSVC_RETENTION_DAYS"):
            config.load({"NOTIFSVC_RETENTION_DAYS": bad})


async def test_a_pass_pages_through_each_finished_state_to_its_end() -> None:
    first, second = page(3, 3, 1), page(3, 0, 2)
    one, store = build({State.SENT: [first, second, page(1, 1, 3)]})
    assert await one.run_pass() == 4
    sent = [c["after"] for c in store.calls if c["state"] is State.SENT]
    assert sent == [START, first.last, second.last]
    assert [c["state"] for c in store.calls[3:]] == [State.FAILED, State.CANCELED, State.EXPIRED]
    cutoff = datetime.fromtimestamp(NOW - 30 * 86_400, UTC)
    assert {c["before"] for c in store.calls} == {cutoff}
    assert {c["limit"] for c in store.calls} == {3}
    assert (one.deleted, one.attempts) == (4, 8)


async def test_a_replica_owning_no_slice_deletes_nothing() -> None:
    one, store = build({State.SENT: [page(3, 3)]}, owned=())
    assert await one.run_pass() == 0
    assert store.calls == []


async def test_a_failed_page_ends_the_pass_and_the_next_pass_starts_over() -> None:
    one, store = build(
        {State.SENT: [page(3, 3, 1), StoreUnavailable("the database is away"), page(2, 2)]}
    )
    assert await one.run_pass() == 0  # logged, not raised
    assert [c["state"] for c in store.calls] == [State.SENT, State.SENT]
    store.calls.clear()
    assert await one.run_pass() == 2
    assert store.calls[0]["after"] == START


async def test_a_bug_in_a_pass_is_logged_and_never_stops_the_router(
    caplog: pytest.LogCaptureFixture,
) -> None:
    one, _ = build({State.SENT: [RuntimeError("a bug")]})
    assert await one.run_pass() == 0
    assert "pass failed unexpectedly" in caplog.text


async def test_off_runs_no_pass_and_returns_at_once() -> None:
    off = dataclasses.replace(SETTINGS, retention_days=0)
    one, store = build({State.SENT: [page(3, 3)]}, off)
    await asyncio.wait_for(one.run(asyncio.Event()), timeout=5)  # returns: nothing to wait for
    assert await one.run_pass() == 0
    assert store.calls == []


async def test_stopping_ends_a_pass_between_pages() -> None:
    stopping = asyncio.Event()
    one, store = build({State.SENT: [page(3, 3, 1), page(3, 3, 2)]})
    original = store.delete_finished

    async def then_stop(state: State, **kwargs: object) -> Deleted:
        answer = await original(state, **kwargs)  # type: ignore[arg-type]
        stopping.set()
        return answer

    store.delete_finished = then_stop  # type: ignore[method-assign]
    assert await one.run_pass(stopping) == 3
    assert len(store.calls) == 1


async def test_each_page_waits_for_the_rates_room_for_a_page() -> None:
    acquired: list[float] = []

    class Counting:
        async def acquire(self, amount: float = 1) -> None:
            acquired.append(amount)

    paced = dataclasses.replace(SETTINGS, retention_rate=100.0)
    store = FakeStore({State.SENT: [page(3, 3, 1), page(1, 1)]})

    async def four() -> int:
        return 4

    one = Retention(paced, store, owns=lambda n: True, slices=four, limiter=Counting())
    await one.run_pass()
    assert acquired == [3] * len(store.calls)


async def test_run_makes_no_pass_once_stopping() -> None:
    stopping = asyncio.Event()
    stopping.set()
    one, store = build({State.SENT: [page(3, 3)]})
    await asyncio.wait_for(one.run(stopping), timeout=5)
    assert store.calls == []


def test_pages_are_as_large_as_the_retention_rate_allows_not_the_reconcilers() -> None:
    slow = dataclasses.replace(SETTINGS, batch_size=500, retention_rate=2.0, redrive_rate=200.0)
    one, _ = build({}, slow)
    assert one.page == int(burst(2.0)) < 500
    fast = dataclasses.replace(slow, retention_rate=10_000.0, redrive_rate=2.0)
    assert build({}, fast)[0].page == 500


async def test_the_first_pass_comes_a_minute_after_start_then_one_every_ten_minutes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The waits between passes (the clock stands still, so each is a whole period)."""
    waits: list[float] = []

    async def wait_or_stop(stopping: asyncio.Event, seconds: float) -> bool:
        waits.append(seconds)
        return len(waits) == 3  # stopping after two passes

    monkeypatch.setattr(batching, "wait_or_stop", wait_or_stop)
    one, store = build({State.SENT: [page(1, 1)]})
    await asyncio.wait_for(one.run(asyncio.Event()), timeout=5)
    assert waits == [retention.FIRST_PASS_SECONDS, *[retention.PERIOD_SECONDS] * 2]
    assert len(store.calls) == 2 * 4  # two passes, one page of each finished state
    assert one.deleted == 1

    waits.clear()

    async def none() -> int:
        return 0

    producer = Producer(SETTINGS, client_id="test")
    reconciling = Reconciler(
        SETTINGS, store, producer, owns=lambda n: False, slices=none, monotonic=lambda: 0.0
    )
    await asyncio.wait_for(reconciling.run(asyncio.Event()), timeout=5)
    period = SETTINGS.redrive_period_seconds
    assert waits == [period, period, period]  # the reconciler's first pass waits a period


@pytest.mark.parametrize("state", [s for s in State if s not in FINISHED], ids=lambda s: s.value)
async def test_the_store_refuses_to_delete_rows_not_finished(state: State) -> None:
    """Before any I/O (the store is not even started)."""
    with pytest.raises(ValueError, match=f"never deletes {state.value} rows"):
        await Store("postgresql://x/y").delete_finished(
            state, before=T0, after=START, slices=1, owned=[0], limit=10
        )
