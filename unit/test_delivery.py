"""The delivery policy with a scripted channel and an injected clock (no provider, no time)."""

from __future__ import annotations

import asyncio
import itertools
import unittest.mock
import uuid
from collections.abc import Callable

import hypothesis
import msgspec
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from notifsvc.attempts import Attempt, AttemptOutcome
from notifsvc.channels import AnyChannel, PermanentError, Throttled, TransientError
from notifsvc.channels.base import Receipt
from notifsvc.config import Settings
from notifsvc.db.store import Replayed
from notifsvc.delivery import (
    MAX_RETRY_DELAY,
    MAX_THROTTLES,
    THROTTLED,
    Delivery,
    DeliveryPolicy,
    Throttle,
)
from notifsvc.model import FieldError, Notification, State

ACCEPTED = 1_000_000.0
#: A scripted step: never answer (the policy's send timeout ends it).
HANG = object()
#: A scripted step: the channel's own timeout of NOTIFSVC_SEND_TIMEOUT_MS ends it.
OWN_TIMEOUT = object()
Step = BaseException | Receipt | object | None


class Scripted(AnyChannel):
    """Answers each send with the next scripted step: an exception to raise, a receipt to
    return, :data:`HANG`, or None (success, nothing said)."""

    name = "scripted"

    def __init__(self, settings: Settings, *script: Step) -> None:
        super().__init__(settings)
        self.script = list(script)
        self.sends = 0

    def validate_recipient(self, to: str) -> list[FieldError]:
        return [] if to != "nobody" else [FieldError("to", "is nobody")]

    async def send(self, notification: Notification) -> Receipt | None:
        self.sends += 1
        step = self.script.pop(0) if self.script else None
        if step is HANG:
            await asyncio.Event().wait()
        if step is OWN_TIMEOUT:
            await asyncio.sleep(self.settings.send_timeout_ms / 1000)
            step = TransientError("scripted: provider timed out")
        if isinstance(step, BaseException):
            raise step
        return step if isinstance(step, Receipt) else None


def policy(channel: AnyChannel, now: float = ACCEPTED + 1) -> DeliveryPolicy:
    return DeliveryPolicy(channel.settings, channel, clock=lambda: now)


def note(to: str = "ops") -> Notification:
    return Notification(uuid.uuid4(), "scripted", to, "hi", accepted_at=ACCEPTED)


async def deliver(p: DeliveryPolicy, prior: int = 0) -> Delivery:
    return await p.deliver(note(), prior=prior, slots=asyncio.Semaphore(1))


async def test_throttling_never_spends_an_attempt() -> None:
    settings = Settings(max_attempts=1)  # a single spent attempt would fail it
    channel = Scripted(settings, *[Throttled("429", retry_after=0)] * MAX_THROTTLES, None)
    done = await deliver(policy(channel))
    assert done.state is State.SENT and done.attempts == 1 and channel.sends == MAX_THROTTLES + 1


async def test_a_long_throttle_moves_to_the_retry_lane_with_no_attempt_spent() -> None:
    channel = Scripted(Settings(), Throttled("429", retry_after=600))
    done = await deliver(policy(channel), prior=2)
    assert done.state is State.FORWARDED and done.attempts == 0 and done.total == 2
    assert done.retry_after == 600 and (done.error or "").startswith(THROTTLED)


async def test_persistent_throttling_moves_on_after_a_few_inline_pauses() -> None:
    channel = Scripted(Settings(), *[Throttled("429", retry_after=0)] * 10)
    done = await deliver(policy(channel))
    assert done.state is State.FORWARDED and done.attempts == 0
    assert channel.sends == MAX_THROTTLES + 1


async def test_throttling_past_the_budget_fails_with_reason_throttled() -> None:
    settings = Settings(throttle_budget_seconds=60)
    channel = Scripted(settings, Throttled("429", retry_after=0))
    done = await deliver(policy(channel, now=ACCEPTED + 61))
    assert done.state is State.FAILED and (done.error or "").startswith(THROTTLED)


async def test_a_retry_after_on_a_5xx_counts_as_throttling() -> None:
    channel = Scripted(Settings(max_attempts=1), TransientError("503", retry_after=0), None)
    assert (await deliver(policy(channel))).state is State.SENT


async def test_transient_errors_spend_attempts_then_go_to_the_retry_lane() -> None:
    settings = Settings(inprocess_attempts=2, max_attempts=5)
    channel = Scripted(settings, TransientError("500"), TransientError("500"))
    done = await deliver(policy(channel), prior=1)
    assert done.state is State.FORWARDED and done.attempts == 2 and done.total == 3


async def test_permanent_errors_and_exhausted_attempts_fail() -> None:
    channel = Scripted(Settings(), PermanentError("400"))
    assert (await deliver(policy(channel))).state is State.FAILED
    channel = Scripted(Settings(max_attempts=3), TransientError("500"))
    done = await deliver(policy(channel), prior=2)
    assert done.state is State.FAILED and done.total == 3


async def test_an_unexpected_exception_in_a_channel_fails_only_that_notification() -> None:
    channel = Scripted(Settings(), ZeroDivisionError("channel bug"))
    done = await deliver(policy(channel))
    assert done.state is State.FAILED and "ZeroDivisionError" in (done.error or "")


async def test_a_notification_the_channel_refuses_fails_without_a_send() -> None:
    channel = Scripted(Settings())
    p = policy(channel)
    done = await p.deliver(note("nobody"), prior=0, slots=asyncio.Semaphore(1))
    assert done.state is State.FAILED and "is nobody" in (done.error or "")
    assert channel.sends == 0


def test_the_retry_delay_doubles_with_each_pass_up_to_its_cap() -> None:
    settings = Settings(retry_delay_ms=30_000)
    p = policy(Scripted(settings))
    d = Delivery(note(), State.FORWARDED, 3, 3)
    delays = [p.retry_delay(d, passes) for passes in range(4)]
    assert delays == [30, 60, MAX_RETRY_DELAY, MAX_RETRY_DELAY]
    assert p.retry_delay(d._replace(retry_after=90), 0) == 90


async def test_a_fractional_send_rate_still_lets_sends_through() -> None:
    """NOTIFSVC_SEND_RATE=0.5 passed validation but made every acquire() fail."""
    channel = Scripted(Settings(send_rate=0.5))
    assert (await deliver(policy(channel))).state is State.SENT


async def test_a_retry_after_pauses_the_channel_for_that_long_before_the_next_try() -> None:
    """The throttle waits out the provider's Retry-After (on an injected clock: no time
    passes in this test)."""
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    throttle = Throttle(clock=lambda: now[0], sleep=sleep)
    channel = Scripted(Settings(), Throttled("429", retry_after=2.5), None)
    p = DeliveryPolicy(channel.settings, channel, clock=lambda: ACCEPTED + 1, throttle=throttle)
    done = await deliver(p)
    assert done.state is State.SENT and done.attempts == 1
    assert slept == [2.5] and channel.sends == 2


# The attempt log: what one pass returns for the history (notifsvc.attempts).


def logged(channel: AnyChannel, clock_start: float = ACCEPTED + 1) -> DeliveryPolicy:
    """A policy whose clock moves one second each time it is read."""
    tick = itertools.count()
    return DeliveryPolicy(channel.settings, channel, clock=lambda: clock_start + next(tick))


def summary(log: tuple[Attempt, ...]) -> list[tuple[int, AttemptOutcome, int | None]]:
    return [(a.number, a.outcome, a.status) for a in log]


def assert_consistent(done: Delivery, prior: int) -> None:
    """Counted attempts are numbered prior + 1, prior + 2, ... and are the pass's attempts;
    keys are unique; times run forward."""
    counted = [a.number for a in done.log if a.counted]
    assert counted == list(range(prior + 1, prior + 1 + done.attempts))
    assert len({a.key for a in done.log}) == len(done.log)
    assert all(a.seq == 0 for a in done.log if a.counted)
    assert all(a.seq > 0 for a in done.log if not a.counted)
    times = [t for a in done.log for t in (a.started_at, a.finished_at)]
    assert times == sorted(times)
    assert {a.uuid for a in done.log} <= {done.notification.uuid}
    assert {a.provider for a in done.log} <= {"scripted"}


async def test_a_transient_error_then_success_logs_both_numbered_after_prior() -> None:
    channel = Scripted(
        Settings(max_attempts=5),
        TransientError("scripted answered HTTP 503: busy", status=503),
        Receipt("m-1", 201),
    )
    done = await deliver(logged(channel), prior=2)
    assert done.state is State.SENT and done.attempts == 2
    assert summary(done.log) == [(3, AttemptOutcome.TRANSIENT, 503), (4, AttemptOutcome.SENT, 201)]
    failed, sent = done.log
    assert failed.error == "scripted answered HTTP 503: busy"
    assert failed.error_class == "TransientError" and failed.message_id is None
    assert sent.message_id == "m-1" and sent.error is None and sent.error_class is None
    assert_consistent(done, prior=2)


async def test_a_throttled_answer_is_logged_but_not_counted() -> None:
    channel = Scripted(Settings(max_attempts=1), Throttled("429", retry_after=0, status=429), None)
    done = await deliver(logged(channel))
    assert done.state is State.SENT and done.attempts == 1
    assert summary(done.log) == [(1, AttemptOutcome.THROTTLED, 429), (1, AttemptOutcome.SENT, None)]
    throttled = done.log[0]
    assert not throttled.counted and throttled.seq == round(throttled.started_at * 1000)
    assert throttled.error_class == "Throttled"
    assert_consistent(done, prior=0)


async def test_throttled_answers_keep_unique_keys_when_the_clock_stands_still() -> None:
    channel = Scripted(Settings(), *[Throttled("429", retry_after=0)] * 10)
    done = await deliver(policy(channel))  # a clock that never moves
    assert done.state is State.FORWARDED and done.attempts == 0
    assert len(done.log) == MAX_THROTTLES + 1 == channel.sends
    assert all(a.outcome is AttemptOutcome.THROTTLED and a.number == 1 for a in done.log)
    seqs = [a.seq for a in done.log]
    assert seqs == sorted(set(seqs))
    assert_consistent(done, prior=0)


async def test_a_retry_after_on_a_5xx_is_logged_as_throttled() -> None:
    channel = Scripted(Settings(), TransientError("503", retry_after=0, status=503), None)
    done = await deliver(logged(channel), prior=1)
    assert summary(done.log) == [(2, AttemptOutcome.THROTTLED, 503), (2, AttemptOutcome.SENT, None)]


async def test_a_permanent_error_is_one_permanent_attempt() -> None:
    channel = Scripted(Settings(), PermanentError("scripted answered HTTP 400: no", status=400))
    done = await deliver(logged(channel))
    assert done.state is State.FAILED
    assert summary(done.log) == [(1, AttemptOutcome.PERMANENT, 400)]
    assert done.log[0].error_class == "PermanentError"
    assert_consistent(done, prior=0)


async def test_a_timeout_is_a_transient_attempt_of_class_timeout_error() -> None:
    channel = Scripted(Settings(send_timeout_ms=20), HANG, None)
    done = await deliver(logged(channel))
    assert done.state is State.SENT and done.attempts == 2
    assert summary(done.log) == [
        (1, AttemptOutcome.TRANSIENT, None),
        (2, AttemptOutcome.SENT, None),
    ]
    assert done.log[0].error_class == "TimeoutError"
    assert done.log[0].error == "scripted send timed out"
    assert_consistent(done, prior=0)


async def test_the_channels_own_timeout_of_the_same_length_fires_before_the_policys() -> None:
    channel = Scripted(Settings(send_timeout_ms=20), OWN_TIMEOUT, None)
    done = await deliver(logged(channel))
    assert done.state is State.SENT
    assert done.log[0].error == "scripted: provider timed out"  # classified by the channel


async def test_an_unexpected_exception_is_a_permanent_attempt_of_its_class() -> None:
    channel = Scripted(Settings(), ZeroDivisionError("channel bug"))
    done = await deliver(logged(channel))
    assert summary(done.log) == [(1, AttemptOutcome.PERMANENT, None)]
    assert done.log[0].error_class == "ZeroDivisionError"


async def test_exhausted_attempts_end_the_log_at_max_attempts() -> None:
    settings = Settings(max_attempts=3, inprocess_attempts=5)
    channel = Scripted(settings, *[TransientError("500")] * 5)
    done = await deliver(logged(channel), prior=1)
    assert done.state is State.FAILED and done.total == 3
    assert summary(done.log) == [
        (2, AttemptOutcome.TRANSIENT, None),
        (3, AttemptOutcome.TRANSIENT, None),
    ]
    assert_consistent(done, prior=1)


async def test_a_notification_the_channel_refuses_has_no_attempts() -> None:
    p = logged(Scripted(Settings()))
    done = await p.deliver(note("nobody"), prior=0, slots=asyncio.Semaphore(1))
    assert done.state is State.FAILED and done.log == ()


async def test_a_replayed_notification_gets_a_fresh_budget_and_numbers_on() -> None:
    # Failed after its 3 attempts, then replayed by an operator: 3 more may be made,
    # numbered 4 to 6, so that the attempt history keeps the first three.
    settings = Settings(max_attempts=3, inprocess_attempts=5)
    channel = Scripted(settings, *[TransientError("500")] * 5)
    p = logged(channel)
    replayed = Replayed(3, ACCEPTED + 1)
    done = await p.deliver(note(), prior=3, slots=asyncio.Semaphore(1), replayed=replayed)
    assert done.state is State.FAILED and done.total == 6 and done.attempts == 3
    assert [a.number for a in done.log] == [4, 5, 6]
    assert channel.sends == 3


async def test_without_a_replay_the_spent_budget_fails_at_once() -> None:
    settings = Settings(max_attempts=3, inprocess_attempts=5)
    channel = Scripted(settings, *[TransientError("500")] * 5)
    done = await deliver(logged(channel), prior=3)
    assert done.state is State.FAILED and channel.sends == 1


async def test_a_replay_base_above_the_attempts_made_counts_from_the_attempts_made() -> None:
    # A header claiming more earlier attempts than the notification has cannot buy more
    # than max_attempts new ones.
    settings = Settings(max_attempts=2, inprocess_attempts=5)
    channel = Scripted(settings, *[TransientError("500")] * 5)
    p = logged(channel)
    replayed = Replayed(50, ACCEPTED + 1)
    done = await p.deliver(note(), prior=1, slots=asyncio.Semaphore(1), replayed=replayed)
    assert done.state is State.FAILED and channel.sends == 2 and done.total == 3


async def test_a_replay_restarts_the_throttling_budget() -> None:
    # Accepted two hours ago (past the one-hour throttling budget), requeued a second ago:
    # a throttled answer is waited out instead of failing the notification at once.
    settings = Settings(throttle_budget_seconds=3600)
    channel = Scripted(settings, Throttled("429", retry_after=0.01, status=429), None)
    now = ACCEPTED + 7200
    p = DeliveryPolicy(settings, channel, clock=lambda: now)
    replayed = Replayed(1, now - 1)
    done = await p.deliver(note(), prior=1, slots=asyncio.Semaphore(1), replayed=replayed)
    assert done.state is State.SENT and channel.sends == 2


async def test_without_a_replay_an_old_notification_fails_when_throttled() -> None:
    settings = Settings(throttle_budget_seconds=3600)
    channel = Scripted(settings, Throttled("429", retry_after=0.01, status=429), None)
    p = DeliveryPolicy(settings, channel, clock=lambda: ACCEPTED + 7200)
    done = await p.deliver(note(), prior=1, slots=asyncio.Semaphore(1))
    assert done.state is State.FAILED and done.error is not None
    assert done.error.startswith(str(THROTTLED))


async def test_a_scheduled_notification_counts_its_throttling_budget_from_its_send_at() -> None:
    # Accepted two hours ago for a send_at a second ago: the wait for its time is not age.
    settings = Settings(throttle_budget_seconds=3600)
    channel = Scripted(settings, Throttled("429", retry_after=0.01, status=429), None)
    now = ACCEPTED + 7200
    p = DeliveryPolicy(settings, channel, clock=lambda: now)
    scheduled = msgspec.structs.replace(note(), send_at=now - 1)
    done = await p.deliver(scheduled, prior=0, slots=asyncio.Semaphore(1))
    assert done.state is State.SENT and channel.sends == 2


# Expiry: a notification whose expires_at has passed is never sent.


class Ticking(Scripted):
    """A scripted channel on a clock that each send moves on by ``step`` seconds; it notes
    the clock at each send."""

    def __init__(self, settings: Settings, step: float, *script: Step) -> None:
        super().__init__(settings, *script)
        self.now = ACCEPTED + 1
        self.step = step
        self.sent_at: list[float] = []

    async def send(self, notification: Notification) -> Receipt | None:
        self.sent_at.append(self.now)
        self.now += self.step
        return await super().send(notification)


def expiring(channel: Ticking, in_seconds: float) -> tuple[DeliveryPolicy, Notification]:
    p = DeliveryPolicy(channel.settings, channel, clock=lambda: channel.now)
    n = msgspec.structs.replace(note(), expires_at=channel.now + in_seconds)
    return p, n


async def test_an_expired_notification_is_not_sent() -> None:
    channel = Ticking(Settings(), 1.0)
    p, n = expiring(channel, 0.0)  # expires_at is now: expired
    done = await p.deliver(n, prior=2, slots=asyncio.Semaphore(1))
    assert done.state is State.EXPIRED and channel.sends == 0
    assert (done.attempts, done.total, done.log) == (0, 2, ())
    assert done.error is not None and done.error.startswith("expired: ")
    assert done.outcome().state is State.EXPIRED


async def test_a_notification_before_its_expiry_is_sent() -> None:
    channel = Ticking(Settings(), 1.0)
    p, n = expiring(channel, 0.5)
    done = await p.deliver(n, prior=0, slots=asyncio.Semaphore(1))
    assert done.sent and channel.sends == 1


async def test_one_that_expires_between_attempts_is_not_sent_again() -> None:
    settings = Settings(inprocess_attempts=5, max_attempts=10)
    channel = Ticking(settings, 10.0, TransientError("503"), TransientError("503"), None)
    p, n = expiring(channel, 15.0)  # the second send is at +10 s, the third would be at +20
    done = await p.deliver(n, prior=1, slots=asyncio.Semaphore(1))
    assert done.state is State.EXPIRED and channel.sends == 2
    assert (done.attempts, done.total) == (2, 3)
    assert [a.number for a in done.log] == [2, 3]  # its attempts are still recorded


async def test_one_that_expires_during_a_throttle_pause_is_not_sent_again() -> None:
    channel = Ticking(Settings(), 5.0, Throttled("429", retry_after=0), None)
    p, n = expiring(channel, 2.0)
    done = await p.deliver(n, prior=0, slots=asyncio.Semaphore(1))
    assert done.state is State.EXPIRED and channel.sends == 1
    assert done.attempts == 0 and [a.outcome for a in done.log] == [AttemptOutcome.THROTTLED]


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.given(
    steps=st.lists(st.sampled_from(["transient", "throttled", "ok"]), max_size=6).filter(
        lambda s: s.count("transient") <= 2  # each waits a real backoff of up to 0.2 s
    ),
    step=st.floats(min_value=0.0, max_value=10.0),
    expires_in=st.floats(min_value=-5.0, max_value=60.0),
)
def test_no_send_ever_happens_at_or_after_expiry(
    steps: list[str], step: float, expires_in: float
) -> None:
    answers = {
        "transient": TransientError("503"),
        "throttled": Throttled("429", retry_after=0),
        "ok": None,
    }
    config = Settings(inprocess_attempts=10, max_attempts=20)
    channel = Ticking(config, step, *[answers[s] for s in steps])
    p, n = expiring(channel, expires_in)
    assert n.expires_at is not None
    done = asyncio.run(p.deliver(n, prior=0, slots=asyncio.Semaphore(1)))
    assert all(at < n.expires_at for at in channel.sent_at)
    if done.state is State.EXPIRED:
        assert channel.now >= n.expires_at
        assert done.attempts == sum(a.counted for a in done.log)


# The fast path: deliver_now, for a channel whose send never waits (no task, slot, deadline).


class Immediate(Scripted):
    """A scripted channel whose send never waits, on a clock that each send moves on by
    ``step`` seconds: it offers the policy its send as a plain function."""

    def __init__(self, settings: Settings, step: float, *script: Step) -> None:
        super().__init__(settings, *script)
        self.now = ACCEPTED + 1
        self.step = step

    def synchronous_send(self) -> Callable[[Notification], Receipt | None]:
        return self.answer

    async def send(self, notification: Notification) -> Receipt | None:
        return self.answer(notification)

    def answer(self, notification: Notification) -> Receipt | None:
        self.sends += 1
        self.now += self.step
        step = self.script.pop(0) if self.script else None
        if isinstance(step, BaseException):
            raise step
        return step if isinstance(step, Receipt) else None


_ANSWERS: dict[str, Callable[[], Step]] = {
    "ok": lambda: None,
    "receipt": lambda: Receipt("m-1", 202, "other"),
    "transient": lambda: TransientError("503", status=503),
    "permanent": lambda: PermanentError("400", status=400),
    "throttled": lambda: Throttled("429", retry_after=0),
    "long throttle": lambda: Throttled("429", retry_after=600),
    "timeout": lambda: TimeoutError("took too long"),
    "bug": lambda: ZeroDivisionError("channel bug"),
}


async def _fast(p: DeliveryPolicy, n: Notification, prior: int, again: Replayed | None) -> Delivery:
    now = p.deliver_now(n, prior=prior, slots=asyncio.Semaphore(1), replayed=again)
    assert now is not None, "nothing holds the fast path up here"
    return now if isinstance(now, Delivery) else await now


async def _slow(p: DeliveryPolicy, n: Notification, prior: int, again: Replayed | None) -> Delivery:
    return await p.deliver(n, prior=prior, slots=asyncio.Semaphore(1), replayed=again)


def one_pass(
    settings: Settings,
    script: list[Callable[[], Step]],
    step: float,
    n: Notification,
    prior: int,
    again: Replayed | None,
    *,
    fast: bool,
) -> tuple[Delivery, int, float]:
    """A pass over ``n`` through ``deliver_now`` or ``deliver`` (no backoff waits): its
    delivery, the sends made, and the channel's clock after them."""
    channel = Immediate(settings, step, *[answer() for answer in script])
    p = DeliveryPolicy(settings, channel, clock=lambda: channel.now)
    with unittest.mock.patch("notifsvc.delivery.backoff", return_value=0.0):
        done = asyncio.run((_fast if fast else _slow)(p, n, prior, again))
    return done, channel.sends, channel.now


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.example(  # a requeue's fresh budget: one more attempt
    steps=["transient", "ok"],
    step=0.0,
    expires_in=None,
    to="ops",
    prior=2,
    replay=(1, ACCEPTED + 0.5),
    limits=(2, 3),
)
@hypothesis.given(
    steps=st.lists(st.sampled_from(sorted(_ANSWERS)), max_size=6),
    step=st.sampled_from([0.0, 4.0]),
    expires_in=st.sampled_from([None, -1.0, 0.0, 3.0, 50.0]),
    to=st.sampled_from(["ops", "nobody"]),
    prior=st.integers(0, 4),
    replay=st.sampled_from([None, (1, ACCEPTED + 0.5), (9, ACCEPTED - 100.0)]),
    limits=st.sampled_from([(1, 1), (2, 3), (3, 5), (5, 20)]),
)
def test_the_fast_path_ends_a_pass_as_the_coroutine_does(
    steps: list[str],
    step: float,
    expires_in: float | None,
    to: str,
    prior: int,
    replay: tuple[int, float] | None,
    limits: tuple[int, int],
) -> None:
    settings = Settings(inprocess_attempts=limits[0], max_attempts=limits[1])
    n = msgspec.structs.replace(note(to), expires_at=None)
    if expires_in is not None:
        n = msgspec.structs.replace(n, expires_at=ACCEPTED + 1 + expires_in)
    again = Replayed(*replay) if replay else None
    script = [_ANSWERS[s] for s in steps]
    fast = one_pass(settings, script, step, n, prior, again, fast=True)
    assert fast == one_pass(settings, script, step, n, prior, again, fast=False)


async def test_the_fast_path_sends_nothing_where_it_would_wait() -> None:
    """(With no free send slot it is not asked at all: unit/test_notificator.py.)"""
    channel = Immediate(Settings(), 0.0)
    p = policy(channel)
    p.throttle.hold(5)
    assert p.deliver_now(note(), prior=0, slots=asyncio.Semaphore(1)) is None  # a pause
    limited = DeliveryPolicy(Settings(send_rate=1000), channel)
    assert limited.deliver_now(note(), prior=0, slots=asyncio.Semaphore(1)) is None
    waits = DeliveryPolicy(Settings(), Scripted(Settings()))  # its send is a coroutine
    assert waits.deliver_now(note(), prior=0, slots=asyncio.Semaphore(1)) is None
    assert channel.sends == 0


async def test_the_fast_path_takes_the_callers_word_for_a_free_slot() -> None:
    """The notificator checks its slots once per batch (nothing it starts awaits)."""
    channel = Immediate(Settings(), 0.0)
    taken = asyncio.Semaphore(1)
    await taken.acquire()
    done = policy(channel).deliver_now(note(), prior=0, slots=taken)
    assert isinstance(done, Delivery) and done.sent and channel.sends == 1


async def test_the_fast_path_sends_at_once_and_numbers_the_attempt_after_prior() -> None:
    channel = Immediate(Settings(), 0.0, Receipt("m-7", 201))
    done = policy(channel).deliver_now(note(), prior=2, slots=asyncio.Semaphore(1))
    assert isinstance(done, Delivery) and done.sent and channel.sends == 1
    assert (done.attempts, done.total) == (1, 3)
    assert [(a.number, a.message_id, a.status, a.provider) for a in done.log] == [
        (3, "m-7", 201, "scripted")
    ]


def _observed(channel: str) -> tuple[float, float]:
    """How many end-to-end and provider latencies the histograms hold for ``channel``."""

    def count(name: str) -> float:
        return REGISTRY.get_sample_value(f"{name}_count", {"channel": channel}) or 0.0

    return count("notifsvc_end_to_end_seconds"), count("notifsvc_provider_seconds")


async def test_latencies_reach_their_histograms_when_the_policy_flushes_them() -> None:
    channel = Scripted(Settings(max_attempts=3), TransientError("503"), None)
    p = policy(channel)
    before = _observed("scripted")
    done = await deliver(p)
    assert done.state is State.SENT
    assert _observed("scripted") == before  # kept until the batch's flush
    p.flush_metrics()
    assert _observed("scripted") == (before[0] + 1, before[1] + 2)  # one sent, two calls
    p.flush_metrics()
    assert _observed("scripted") == (before[0] + 1, before[1] + 2)  # each observed once
