"""The UUIDs this receiver process accepted lately, so that ``GET /notification/{uuid}``
can tell "accepted, not stored yet" (the router has not caught up) from "never seen".

Bounded both ways: at most :data:`CAPACITY` UUIDs, none older than :data:`WINDOW_SECONDS`.
A receiver that accepts more than ``CAPACITY`` within the window remembers only the last
ones, which is enough: the router stores a notification within a second or so, and the
question matters while it has not. Each receiver process (``--workers``) knows only its own.
"""

from __future__ import annotations

import time
import uuid as uuid_mod
from collections import OrderedDict
from collections.abc import Callable, Iterable

CAPACITY = 10_000
WINDOW_SECONDS = 300.0


class RecentlyAccepted:
    def __init__(
        self,
        capacity: int = CAPACITY,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.window = window
        self._clock = clock
        self._accepted: OrderedDict[int, float] = OrderedDict()  # uuid as int -> when

    def __len__(self) -> int:
        return len(self._accepted)

    def add(self, uids: Iterable[uuid_mod.UUID]) -> None:
        self.add_ints(uid.int for uid in uids)

    def add_ints(self, numbers: Iterable[int]) -> None:
        """:meth:`add` of UUIDs given as their integers (``uuid.int``: what the receiver's
        plain path has, without a UUID object)."""
        now = self._clock()
        accepted = self._accepted
        for number in numbers:
            accepted[number] = now
            accepted.move_to_end(number)
        while len(accepted) > self.capacity:
            accepted.popitem(last=False)

    def age(self, uid: uuid_mod.UUID) -> float | None:
        """Seconds since ``uid`` was accepted, if that was within the window."""
        when = self._accepted.get(uid.int)
        if when is None:
            return None
        age = self._clock() - when
        if age > self.window:
            self._expire()
            return None
        return age

    def _expire(self) -> None:
        horizon = self._clock() - self.window
        accepted = self._accepted
        while accepted and next(iter(accepted.values())) < horizon:
            accepted.popitem(last=False)
