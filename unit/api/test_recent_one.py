"""``RecentlyAccepted.add_one`` (the plain path's) keeps what ``add`` keeps."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from notifsvc.api.recent import RecentlyAccepted


@given(st.lists(st.integers(0, 6).map(lambda i: uuid.UUID(int=i)), max_size=20), st.integers(1, 4))
def test_adding_one_at_a_time_keeps_what_add_keeps(uids: list[uuid.UUID], capacity: int) -> None:
    ticks = iter(range(1_000))
    each = RecentlyAccepted(capacity=capacity, clock=lambda: float(next(ticks)))
    ticks_ = iter(range(1_000))
    one = RecentlyAccepted(capacity=capacity, clock=lambda: float(next(ticks_)))
    for uid in uids:
        each.add([uid])
        one.add_one(uid.int)
    assert list(one._accepted.items()) == list(each._accepted.items())
