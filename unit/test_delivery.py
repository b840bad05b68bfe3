"""The delivery policy with a scripted channel and an injected clock (no provider, no time)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

from notifsvc.channels import AnyChannel, PermanentError, Throttled, TransientError
from notifsvc.config import Settings
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


class Scripted(AnyChannel):
    """Answers each send with the next scripted exception (None: success)."""

    name = "scripted"

    def __init__(self, settings: Settings, *script: BaseException | None) -> None:
        super().__init__(settings)
        self.script = list(script)
        self.sends = 0

    def validate_recipient(self, to: str) -> list[FieldError]:
        return [] if to != "nobody" else [FieldError("to", "is nobody")]

    async def send(self, notification: Notification) -> None:
        self.sends += 1
        step = self.script.pop(0) if self.script else None
        if step is not None:
            raise step


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
    assert p.retry_delay(dataclasses.replace(d, retry_after=90), 0) == 90


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
