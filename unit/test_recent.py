"""The receiver's memory of what it accepted lately (GET /notification/{uuid}: in flight?)."""

from __future__ import annotations

import uuid

from notifsvc.api.recent import RecentlyAccepted


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_remembers_for_the_window_only() -> None:
    clock = Clock()
    recent = RecentlyAccepted(capacity=10, window=300.0, clock=clock)
    uid, other = uuid.uuid4(), uuid.uuid4()
    recent.add([uid])
    clock.now += 299.5
    assert recent.age(uid) == 299.5
    assert recent.age(other) is None
    clock.now += 1.0
    assert recent.age(uid) is None
    assert len(recent) == 0  # and forgotten


def test_holds_at_most_its_capacity_forgetting_the_oldest() -> None:
    clock = Clock()
    recent = RecentlyAccepted(capacity=3, window=300.0, clock=clock)
    uids = [uuid.uuid4() for _ in range(5)]
    for uid in uids:
        recent.add([uid])
        clock.now += 1.0
    recent.add([uids[2]])  # accepted again: the newest now
    recent.add([uuid.uuid4()])
    assert len(recent) == 3
    assert [recent.age(u) is not None for u in uids] == [False, False, True, False, True]
    assert recent.age(uids[2]) == 0.0
