"""The circuit breaker against a plain model of its rules, driven by an injected clock."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from notifsvc.breaker import Breaker, Policy, State


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def state_of(breaker: Breaker) -> State:
    """The state now (a call, so that type checkers do not pin it between two reads)."""
    return breaker.state


POLICY = Policy(failure_rate=0.5, window=10.0, min_calls=4, cooldown=5.0, probe_share=0.25)


def test_opens_at_the_failure_rate_once_enough_calls_were_seen() -> None:
    clock = Clock()
    breaker = Breaker("twilio", POLICY, clock)
    for ok in (False, False, True):  # 2 of 3 failed, but fewer than min_calls
        assert breaker.allow()
        breaker.record(ok)
    assert state_of(breaker) is State.CLOSED
    breaker.record(True)  # 2 of 4: the rate is reached
    assert state_of(breaker) is State.OPEN
    assert not breaker.allow()
    assert breaker.retry_after() == 5.0


class Ticking(Clock):
    """A clock that moves on by ``step`` at each reading (a real one, under load)."""

    step = 0.0

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_an_open_breaker_never_says_to_wait_zero_seconds() -> None:
    """The cool-down ends between retry_after()'s readings of the clock: it answers 0 only
    for a breaker that then is no longer open."""
    clock = Ticking()
    breaker = Breaker("twilio", POLICY, clock)
    for _ in range(4):
        breaker.record(False)
    assert state_of(breaker) is State.OPEN
    clock.now += POLICY.cooldown - 0.002
    clock.step = 0.0015  # the cool-down ends at the second reading
    waited = breaker.retry_after()
    clock.step = 0.0
    assert waited > 0 or breaker._state is not State.OPEN


def test_failures_older_than_the_window_are_forgotten() -> None:
    clock = Clock()
    breaker = Breaker("twilio", POLICY, clock)
    for _ in range(3):
        breaker.record(False)
    clock.now += 10.0
    breaker.record(False)
    assert state_of(breaker) is State.CLOSED
    assert breaker.counts() == (1, 1)


def test_half_opens_after_the_cool_down_probes_a_share_and_closes_on_success() -> None:
    clock = Clock()
    breaker = Breaker("twilio", POLICY, clock)
    for _ in range(4):
        breaker.record(False)
    clock.now += 4.9
    assert not breaker.allow()
    clock.now += 0.1
    assert state_of(breaker) is State.HALF_OPEN
    assert breaker.retry_after() == 0.0
    allowed = [breaker.allow() for _ in range(8)]
    assert allowed == [True, False, False, False, True, False, False, False]
    breaker.record(True)
    assert state_of(breaker) is State.CLOSED
    assert breaker.allow()


def test_a_failed_probe_opens_it_again_for_a_whole_cool_down() -> None:
    clock = Clock()
    breaker = Breaker("twilio", POLICY, clock)
    for _ in range(4):
        breaker.record(False)
    clock.now += 5.0
    assert breaker.allow()
    breaker.record(False)
    assert state_of(breaker) is State.OPEN
    assert breaker.retry_after() == 5.0


def test_state_changes_are_reported() -> None:
    seen: list[State] = []
    clock = Clock()
    breaker = Breaker("twilio", POLICY, clock)
    breaker.on_change = lambda _, state: seen.append(state)
    for _ in range(4):
        breaker.record(False)
    clock.now += 5.0
    breaker.allow()
    breaker.record(True)
    assert seen == [State.OPEN, State.HALF_OPEN, State.CLOSED]


class BreakerMachine(RuleBasedStateMachine):
    """Random calls, outcomes and clock steps; a plain model says what the state must be."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.policy = POLICY
        self.breaker = Breaker("p", self.policy, self.clock)
        self.model = State.CLOSED
        self.events: list[tuple[int, bool]] = []  # closed: (second, ok) of recorded calls
        self.opened_at = 0.0
        self.turned_away_since_probe = 0

    def _model_state(self) -> State:
        if self.model is State.OPEN and self.opened_at + self.policy.cooldown <= self.clock.now:
            self.model = State.HALF_OPEN
            self.turned_away_since_probe = 3  # the first call after the cool-down goes
        return self.model

    def _window(self) -> list[bool]:
        oldest = int(self.clock.now) - math.ceil(self.policy.window) + 1
        return [ok for second, ok in self.events if second >= oldest]

    @rule(seconds=st.floats(min_value=0.0, max_value=7.0))
    def tick(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule(ok=st.booleans())
    def call(self, ok: bool) -> None:
        state = self._model_state()
        expected = state is State.CLOSED
        if state is State.HALF_OPEN:
            self.turned_away_since_probe += 1
            expected = self.turned_away_since_probe >= 4
            if expected:
                self.turned_away_since_probe = 0
        assert self.breaker.allow() is expected
        if not expected:
            return
        self.breaker.record(ok)
        self._model_record(ok)

    def _model_record(self, ok: bool) -> None:
        if self.model is State.HALF_OPEN:
            if ok:
                self.model = State.CLOSED
            else:
                self._model_open()
            return
        self.events.append((int(self.clock.now), ok))
        window = self._window()
        failures = window.count(False)
        if len(window) >= self.policy.min_calls and failures >= 0.5 * len(window):
            self._model_open()

    def _model_open(self) -> None:
        self.model = State.OPEN
        self.opened_at = self.clock.now
        self.events = []

    @precondition(lambda self: self.model is State.OPEN)
    @rule()
    def open_sends_nothing(self) -> None:
        if self._model_state() is State.OPEN:
            assert not self.breaker.allow()
            assert 0.0 < self.breaker.retry_after() <= self.policy.cooldown

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert self.breaker.state is self._model_state()
        if self.model is not State.OPEN:
            assert self.breaker.retry_after() == 0.0


TestBreakerMachine = BreakerMachine.TestCase
TestBreakerMachine.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)


@given(st.lists(st.booleans(), min_size=1, max_size=200))
def test_never_opens_below_the_failure_rate(outcomes: list[bool]) -> None:
    breaker = Breaker("p", POLICY, Clock())  # the clock stands still: one window
    for i, ok in enumerate(outcomes):
        if breaker.state is State.OPEN:
            seen = outcomes[:i]
            assert len(seen) >= POLICY.min_calls
            break
        breaker.record(ok)
        seen = outcomes[: i + 1]
        if len(seen) < POLICY.min_calls or seen.count(False) < 0.5 * len(seen):
            assert state_of(breaker) is State.CLOSED
