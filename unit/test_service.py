"""Running a stage (``notifsvc.service``): what happens between its start and its run."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from notifsvc.service import run_stage


class _Cycle:
    def __init__(self) -> None:
        self.me = self


class _Probe:
    """A stage that leaves a garbage cycle and some long-lived objects behind at start, and
    looks at the collector when it runs."""

    def __init__(self) -> None:
        self.kept: list[list[int]] = []
        self.garbage: weakref.ref[_Cycle] | None = None
        self.seen: dict[str, Any] = {}

    async def start(self) -> None:
        self.kept = [[i] for i in range(1000)]
        self.garbage = weakref.ref(_Cycle())  # unreachable at once, but for its cycle

    async def run(self, stopping: asyncio.Event) -> None:
        assert self.garbage is not None
        self.seen = {"frozen": gc.get_freeze_count(), "garbage": self.garbage()}

    async def stop(self) -> None:
        pass


@pytest.fixture
def thawed() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test session collects as usual


@pytest.mark.usefixtures("thawed")
async def test_start_up_s_garbage_is_collected_and_the_rest_frozen() -> None:
    """The heap start-up leaves is frozen (the batch stages' full collections walked it
    again and again), after its garbage cycles were collected: frozen, they would stay."""
    probe = _Probe()
    await run_stage(probe, asyncio.Event())
    assert probe.seen["garbage"] is None
    assert probe.seen["frozen"] >= len(probe.kept)
