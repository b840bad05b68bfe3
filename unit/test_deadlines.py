"""The policy's shared send deadline (notifsvc.delivery.Deadlines): asyncio.timeout's
semantics, with one timer for every send of a policy."""

from __future__ import annotations

import asyncio

import pytest

from notifsvc.delivery import Deadlines

NEVER = asyncio.Event  # awaiting a fresh Event's wait() never returns by itself


async def bounded(deadlines: Deadlines, finish: asyncio.Event) -> str:
    with deadlines.within():
        await finish.wait()
    return "done"


async def test_only_the_sends_still_running_at_their_deadline_time_out() -> None:
    deadlines = Deadlines(0.05)
    quick = [asyncio.Event() for _ in range(3)]
    tasks = [asyncio.ensure_future(bounded(deadlines, e)) for e in quick]
    slow = [asyncio.ensure_future(bounded(deadlines, NEVER())) for _ in range(3)]
    for event in quick:
        event.set()
    results = await asyncio.gather(*tasks, *slow, return_exceptions=True)
    assert results[:3] == ["done"] * 3
    assert all(isinstance(r, TimeoutError) for r in results[3:])
    assert not deadlines._queue  # nothing left behind to fire later


async def test_a_send_started_later_gets_its_own_full_deadline() -> None:
    deadlines = Deadlines(0.2)
    first = asyncio.ensure_future(bounded(deadlines, NEVER()))
    await asyncio.sleep(0.1)  # the first is halfway to its deadline
    release = asyncio.Event()
    second = asyncio.ensure_future(bounded(deadlines, release))
    with pytest.raises(TimeoutError):
        await first
    release.set()  # the first one's deadline passed; the second's has not
    assert await second == "done"


async def test_a_cancellation_from_elsewhere_is_not_a_timeout() -> None:
    deadlines = Deadlines(60)
    task = asyncio.ensure_future(bounded(deadlines, NEVER()))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_task_goes_on_normally_after_a_timeout() -> None:
    deadlines = Deadlines(0.01)
    with pytest.raises(TimeoutError):
        await bounded(deadlines, NEVER())
    current = asyncio.current_task()
    assert current is not None and current.cancelling() == 0
    await asyncio.sleep(0.02)  # no cancellation left pending for the next await


async def timed_out(deadlines: Deadlines) -> str:
    try:
        await bounded(deadlines, NEVER())
    except TimeoutError:
        return "timed out"
    return "not timed out"


def test_a_policy_used_on_a_new_event_loop_still_times_out() -> None:
    deadlines = Deadlines(0.05)
    # the first loop ends with its timer still armed (its send finished early)
    asyncio.run(bounded(deadlines, _set(asyncio.Event())))
    # that stale handle must not keep the second loop's deadline from being armed
    assert asyncio.run(asyncio.wait_for(timed_out(deadlines), 2)) == "timed out"


def _set(event: asyncio.Event) -> asyncio.Event:
    event.set()
    return event
