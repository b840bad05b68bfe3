"""The delivery policy of a channel, in one place: what to do after each send attempt.

- A throttled answer (an error carrying ``retry_after``, e.g. HTTP 429) pauses the whole
  channel for that long and does not spend an attempt; a pause longer than
  :data:`MAX_INLINE_PAUSE`, or more than :data:`MAX_THROTTLES` of them, moves the
  notification to the retry lane instead, due when the provider asked.
- Other retriable errors are retried in process with exponential backoff and jitter, up to
  ``NOTIFSVC_INPROCESS_ATTEMPTS``; then the notification goes to the channel's retry lane,
  to be taken up again when due (without holding up fresh traffic).
- A permanent error, or ``NOTIFSVC_MAX_ATTEMPTS`` attempts in all, fails the notification.
Sends share one rate limiter (``NOTIFSVC_SEND_RATE`` per second, 0 for none).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from aiolimiter import AsyncLimiter

from notifsvc import metrics
from notifsvc.batching import backoff
from notifsvc.channels import Channel, DeliveryError, TransientError
from notifsvc.config import Settings
from notifsvc.db.store import Outcome
from notifsvc.model import Notification, State

log = logging.getLogger(__name__)

#: Throttled answers waited out in process for one notification.
MAX_THROTTLES = 3
#: Longest provider-imposed pause waited out in process.
MAX_INLINE_PAUSE = 10.0
#: Cap of the backoff between in-process attempts.
MAX_BACKOFF = 5.0
#: Longest wait before a notification is taken up again from the retry lane.
MAX_RETRY_DELAY = 120.0


@dataclass(frozen=True, slots=True)
class Delivery:
    """What became of one notification: SENT, FAILED, or FORWARDED (retry lane, later)."""

    notification: Notification
    state: State
    attempts: int  # made now
    total: int  # made so far, across passes
    error: str | None = None
    retry_after: float = 0.0  # the provider's own wish, for the retry lane

    @property
    def sent(self) -> bool:
        return self.state is State.SENT

    def outcome(self) -> Outcome:
        return Outcome(self.notification.uuid, self.state, self.attempts, self.error)


class Throttle:
    """A channel-wide pause, set by the provider's ``Retry-After``."""

    def __init__(self) -> None:
        self._until = 0.0

    def hold(self, seconds: float) -> None:
        self._until = max(self._until, time.monotonic() + min(seconds, MAX_INLINE_PAUSE))

    async def wait(self) -> None:
        """Return once no pause is in force (a pause set meanwhile is waited out too)."""
        while True:
            left = self._until - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(left)


class DeliveryPolicy:
    def __init__(self, settings: Settings, channel: Channel) -> None:
        self.settings = settings
        self.channel = channel
        self.throttle = Throttle()
        self._limiter = AsyncLimiter(settings.send_rate, 1.0) if settings.send_rate > 0 else None

    def retry_delay(self, d: Delivery) -> float:
        """Seconds before the retry lane takes ``d`` up again."""
        passes = max(0, d.total // self.settings.inprocess_attempts - 1)
        delay = self.settings.retry_delay_ms / 1000 * (1 << passes)
        return min(MAX_RETRY_DELAY, max(delay, d.retry_after))

    def worst_case_seconds(self) -> float:
        """The longest one pass over a notification can take (bounds a graceful drain)."""
        tries = self.settings.inprocess_attempts
        sends = (tries + MAX_THROTTLES) * self.settings.send_timeout_ms / 1000
        return sends + (tries - 1) * MAX_BACKOFF + MAX_THROTTLES * MAX_INLINE_PAUSE

    async def deliver(self, n: Notification, *, prior: int, slots: asyncio.Semaphore) -> Delivery:
        attempts = throttled = 0
        while True:
            try:
                async with slots:
                    await self._attempt(n, attempts + throttled)
                return self._sent(n, attempts + 1, prior)
            except DeliveryError as exc:
                pause = exc.retry_after if exc.retriable else None
                if pause is not None and pause <= MAX_INLINE_PAUSE and throttled < MAX_THROTTLES:
                    throttled += 1
                    self.throttle.hold(pause)
                    continue
                attempts += 1
                verdict = self._verdict(n, exc, attempts, prior)
                if verdict is not None:
                    return verdict
                await asyncio.sleep(backoff(attempts, base=0.1, cap=MAX_BACKOFF))

    def _verdict(
        self, n: Notification, exc: DeliveryError, attempts: int, prior: int
    ) -> Delivery | None:
        """None to try again now; otherwise the notification's fate for this pass."""
        total = prior + attempts
        error = str(exc)
        if not exc.retriable or total >= self.settings.max_attempts:
            context = {"uuid": n.uuid, "channel": self.channel.name}
            log.warning("%s failed after %d attempts: %s", n.uuid, total, error, extra=context)
            return Delivery(n, State.FAILED, attempts, total, error)
        if exc.retry_after is not None or attempts >= self.settings.inprocess_attempts:
            later = exc.retry_after or 0.0
            context = {"uuid": n.uuid, "channel": self.channel.name}
            log.info("%s postponed after %d attempts: %s", n.uuid, total, error, extra=context)
            return Delivery(n, State.FORWARDED, attempts, total, error, retry_after=later)
        return None

    def _sent(self, n: Notification, attempts: int, prior: int) -> Delivery:
        metrics.END_TO_END.labels(self.channel.name).observe(max(0.0, time.time() - n.accepted_at))
        return Delivery(n, State.SENT, attempts, prior + attempts)

    async def _attempt(self, n: Notification, earlier: int) -> None:
        await self.throttle.wait()
        if self._limiter is not None:
            await self._limiter.acquire()
        if earlier:
            metrics.RETRIES.labels(self.channel.name).inc()
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.settings.send_timeout_ms / 1000):
                await self.channel.send(n)
        except TimeoutError as exc:
            raise TransientError(f"{self.channel.name} send timed out") from exc
        finally:
            elapsed = time.monotonic() - started
            metrics.PROVIDER_SECONDS.labels(self.channel.name).observe(elapsed)
