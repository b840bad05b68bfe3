"""A circuit breaker per provider: stop sending to a provider that keeps failing.

Closed, it lets every call through and counts outcomes over a sliding window of
``window`` seconds (one-second buckets, so memory does not grow with traffic). Once at
least ``min_calls`` calls in the window ended and the share of failures reaches
``failure_rate``, it opens: nothing is sent to the provider for ``cooldown`` seconds (the
caller tries the next provider, or waits). Then it is half-open: it lets one call in every
``1 / probe_share`` through, the first one at once, and closes on the first success;
a failure opens it again for another cool-down. Real traffic is the probe: there is no
synthetic health check that could disagree with what sending does.

Only outcomes that say something about the provider count: :meth:`Breaker.record` is told
success (the provider answered, even with a permanent refusal of a recipient) or failure
(not reachable, 429/5xx, a timeout). All of it runs on one event loop without awaiting,
so no lock is needed; the clock is injected (tests drive it by hand).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class State(IntEnum):
    """Breaker states; the values are the ``notifsvc_breaker_state`` gauge's."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


@dataclass(frozen=True, slots=True)
class Policy:
    """When a breaker opens and how it recovers (the channel's ``BREAKER_*`` settings)."""

    failure_rate: float = 0.5
    window: float = 30.0
    min_calls: int = 20
    cooldown: float = 15.0
    probe_share: float = 0.1


class Breaker:
    """The breaker of one provider (``name``, for logs and metrics)."""

    def __init__(self, name: str, policy: Policy, clock: Clock = time.monotonic) -> None:
        self.name = name
        self.policy = policy
        self._clock = clock
        self._state = State.CLOSED
        self._opened_at = 0.0
        self._buckets: deque[list[int]] = deque()  # [second, calls, failures]
        self._calls = self._failures = 0
        self._probe_every = max(1, round(1.0 / policy.probe_share))
        self._skipped = 0  # calls turned away since the last probe, while half-open
        #: Called with the new state on every change (the metrics gauge).
        self.on_change: Callable[[Breaker, State], None] | None = None

    @property
    def state(self) -> State:
        """The state now (an open breaker whose cool-down is over is half-open)."""
        if self._state is State.OPEN and self._left() <= 0:
            self._move(State.HALF_OPEN)
            self._skipped = self._probe_every - 1  # the first call after the cool-down goes
        return self._state

    def retry_after(self) -> float:
        """Seconds until an open breaker half-opens; 0 when it is not open."""
        left = self._left()  # before the state: a breaker still open later has more left
        if self.state is not State.OPEN:
            return 0.0
        return min(max(0.0, left), self.policy.cooldown)  # rounding must not add any

    def _left(self) -> float:
        """Seconds of the cool-down left, by one formula for :attr:`state` and
        :meth:`retry_after`: with two (``now - opened >= cooldown`` and ``opened + cooldown
        - now``), rounding once made a breaker open with 0 seconds to wait."""
        return self._opened_at + self.policy.cooldown - self._clock()

    def allow(self) -> bool:
        """Whether a call may go to the provider now; the caller then must :meth:`record`
        its outcome (a half-open breaker counts it as a probe)."""
        state = self.state
        if state is State.CLOSED:
            return True
        if state is State.OPEN:
            return False
        self._skipped += 1
        if self._skipped >= self._probe_every:
            self._skipped = 0
            return True
        return False

    def record(self, ok: bool) -> None:
        """The outcome of a call that :meth:`allow` let through."""
        state = self.state
        if state is State.HALF_OPEN:
            self._open() if not ok else self._close()
            return
        if state is State.OPEN:  # a call let through before the breaker opened
            return
        self._count(ok)
        if self._calls >= self.policy.min_calls and (
            self._failures >= self.policy.failure_rate * self._calls
        ):
            self._open()

    def counts(self) -> tuple[int, int]:
        """(calls, failures) in the window now."""
        self._trim(int(self._clock()))
        return self._calls, self._failures

    def _count(self, ok: bool) -> None:
        second = int(self._clock())
        self._trim(second)
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append([second, 0, 0])
        bucket = self._buckets[-1]
        bucket[1] += 1
        self._calls += 1
        if not ok:
            bucket[2] += 1
            self._failures += 1

    def _trim(self, second: int) -> None:
        oldest = second - math.ceil(self.policy.window) + 1
        while self._buckets and self._buckets[0][0] < oldest:
            _, calls, failures = self._buckets.popleft()
            self._calls -= calls
            self._failures -= failures

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._buckets.clear()
        self._calls = self._failures = 0
        self._move(State.OPEN)

    def _close(self) -> None:
        self._move(State.CLOSED)

    def _move(self, state: State) -> None:
        if state is self._state:
            return
        log.warning("circuit breaker of %s: %s -> %s", self.name, self._state.label, state.label)
        self._state = state
        if self.on_change is not None:
            self.on_change(self, state)
