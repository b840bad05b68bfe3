"""The delivery policy of a channel, in one place: what to do after each send attempt.

- Before any attempt the channel's own validation runs again: a notification it would
  refuse (written to a topic by something other than the receiver) fails with the reason.
- A throttled answer (:class:`~notifsvc.channels.Throttled`, or any retriable error
  carrying ``retry_after``) never spends an attempt. It pauses the whole channel for that
  long; a pause longer than :data:`MAX_INLINE_PAUSE`, or more than :data:`MAX_THROTTLES`
  of them in one pass, moves the notification to the retry lane instead, due when the
  provider asked. What bounds throttling is time: once a notification is older than
  ``NOTIFSVC_THROTTLE_BUDGET_SECONDS`` it fails with a reason starting ``throttled``.
- Other retriable errors are retried in process with exponential backoff and jitter, up to
  ``NOTIFSVC_INPROCESS_ATTEMPTS``; then the notification goes to the channel's retry lane,
  due after ``NOTIFSVC_RETRY_DELAY_MS``, doubling with each pass (at most
  :data:`MAX_RETRY_DELAY`), without holding up fresh traffic.
- A permanent error, or ``NOTIFSVC_MAX_ATTEMPTS`` attempts in all, fails the notification;
  so does any unexpected exception raised by the channel (a bug there must not stop the
  stage).
- A notification whose ``expires_at`` has passed is never sent: checked before the pass and
  again right before every send (after any wait for a slot, a pause, a backoff or the rate
  limiter), it ends :attr:`~notifsvc.model.State.EXPIRED` with the attempts it took.
Sends share one rate limiter (``NOTIFSVC_SEND_RATE`` per second, 0 for none): the rate of
the whole cluster, of which this replica spends the share :meth:`DeliveryPolicy.set_share`
gives it.

Every answer of a pass, throttled ones included, is an :class:`~notifsvc.attempts.Attempt`
on the :class:`Delivery` (``log``), timed by the policy's clock; see
:mod:`notifsvc.attempts` for how they are numbered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, NamedTuple

from notifsvc import metrics
from notifsvc.attempts import Attempt, AttemptOutcome
from notifsvc.batching import backoff
from notifsvc.channels import AnyChannel, DeliveryError, PermanentError, Throttled, TransientError
from notifsvc.channels.base import Receipt
from notifsvc.config import Settings
from notifsvc.db.store import Outcome, Replayed
from notifsvc.model import Notification, Reason, State
from notifsvc.ratelimit import SharedLimiter

log = logging.getLogger(__name__)

#: Throttled answers waited out in process for one notification in one pass.
MAX_THROTTLES = 3
#: Longest provider-imposed pause waited out in process.
MAX_INLINE_PAUSE = 10.0
#: Pause after a throttled answer that did not say for how long (doubling per throttle).
DEFAULT_PAUSE = 1.0
#: Cap of the backoff between in-process attempts.
MAX_BACKOFF = 5.0
#: Longest wait before a notification is taken up again from the retry lane.
MAX_RETRY_DELAY = 120.0
#: Reasons of notifications failed because the provider kept throttling start with this.
THROTTLED = Reason.THROTTLED

Clock = Callable[[], float]


class Delivery(NamedTuple):
    """What became of one notification: SENT, FAILED, FORWARDED (retry lane, later), or
    EXPIRED (its ``expires_at`` passed before it was sent: it never will be)."""

    notification: Notification
    state: State
    attempts: int  # made now
    total: int  # made so far, across passes
    error: str | None = None
    retry_after: float = 0.0  # the provider's own wish, for the retry lane
    log: tuple[Attempt, ...] = ()  # this pass's attempts, in order (throttled ones too)

    @property
    def sent(self) -> bool:
        return self.state is State.SENT

    def outcome(self) -> Outcome:
        return Outcome(self.notification.uuid, self.state, self.attempts, self.error)

    @classmethod
    def expired(cls, n: Notification, *, attempts: int = 0, total: int = 0) -> Delivery:
        """``n`` not sent because its ``expires_at`` passed, after ``attempts`` attempts in
        this pass (``total`` in all)."""
        assert n.expires_at is not None, "only a notification with expires_at expires"
        when = datetime.fromtimestamp(n.expires_at, UTC).isoformat(timespec="seconds")
        why = f"{State.EXPIRED.value}: its expires_at ({when}) passed before it was sent"
        return cls(n, State.EXPIRED, attempts, total, why)

    def with_log(self, log: tuple[Attempt, ...]) -> Delivery:
        """This delivery with its attempts (what ``_replace`` does, more cheaply: it runs
        once per notification)."""
        n, state, error = self.notification, self.state, self.error
        return Delivery(n, state, self.attempts, self.total, error, self.retry_after, log)


class _Run(NamedTuple):
    """Where a pass starts: the attempts made so far, how many of them were made before an
    operator's requeue (outside the attempt budget), and when that requeue was (the
    throttling budget's start; None: the notification's acceptance)."""

    prior: int
    budget_from: int = 0
    since: float | None = None


def _start(prior: int, replayed: Replayed | None) -> _Run:
    """Where a pass over a notification with ``prior`` attempts (and ``replayed``) starts."""
    return _Run(prior, min(replayed.attempts, prior), replayed.at) if replayed else _Run(prior)


def is_throttle(exc: DeliveryError) -> bool:
    """A "slow down" from the provider, as opposed to a failed attempt."""
    return isinstance(exc, Throttled) or (exc.retriable and exc.retry_after is not None)


class Tried(NamedTuple):
    """One call of the channel: when (by the policy's clock), and what came of it."""

    started: float
    finished: float
    receipt: Receipt | None = None
    error: DeliveryError | None = None
    error_class: str | None = None  # the error's class, or what the policy made one of

    def entry(self, n: Notification, provider: str, number: int, seq: int = 0) -> Attempt:
        """The attempt row; ``seq`` > 0 for a throttled answer (see :mod:`notifsvc.attempts`).
        Its provider is the one that answered (:mod:`notifsvc.providers`), else ``provider``."""
        error, receipt = self.error, self.receipt
        message_id = None
        if error is not None:
            if seq:
                outcome = AttemptOutcome.THROTTLED
            else:
                retriable = error.retriable
                outcome = AttemptOutcome.TRANSIENT if retriable else AttemptOutcome.PERMANENT
            answered, status = error.provider, error.status
        elif receipt is not None:
            outcome, answered, status = AttemptOutcome.SENT, receipt.provider, receipt.status
            message_id = receipt.message_id
        else:  # the common answer: sent, nothing more said
            outcome, answered, status = AttemptOutcome.SENT, None, None
        return Attempt(
            n.uuid,
            number,
            seq,
            outcome,
            self.started,
            self.finished,
            answered or provider,
            status=status,
            message_id=message_id,
            error_class=self.error_class,
            error=None if error is None else str(error),
        )


class Throttle:
    """A channel-wide pause, set by the provider's ``Retry-After``."""

    def __init__(
        self,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._until = 0.0
        self._clock = clock
        self._sleep = sleep

    def hold(self, seconds: float) -> None:
        self._until = max(self._until, self._clock() + min(seconds, MAX_INLINE_PAUSE))

    def remaining(self) -> float:
        return max(0.0, self._until - self._clock())

    async def wait(self) -> None:
        """Return once no pause is in force (a pause set meanwhile is waited out too)."""
        while True:
            left = self._until - self._clock()
            if left <= 0:
                return
            await self._sleep(left)


def outer_deadline(send_timeout: float) -> float:
    """The policy's bound on a send: a little past ``NOTIFSVC_SEND_TIMEOUT_MS``, so that a
    channel's own timeout (with the same value) fires first even on a loaded event loop and
    the channel classifies it (naming its provider); this one only bounds a channel that
    has none."""
    return send_timeout + min(1.0, send_timeout / 2)


class Deadlines:
    """``asyncio.timeout(seconds)`` for every send of a policy, sharing one timer.

    An ``asyncio.timeout`` per send made and cancelled a timer handle per send: 21 % of a
    log notificator's CPU. With one duration, deadlines fall due in the order they were
    set, so they wait in a queue and one ``call_at`` handle, armed at the oldest unfinished
    one, cancels each send that overran (then moves on to the next). The send then raises
    :class:`TimeoutError`, as with ``asyncio.timeout``; a cancellation from elsewhere still
    propagates as :class:`asyncio.CancelledError`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._queue: deque[_Deadline] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def within(self) -> _Deadline:
        """A context manager: the current task is cancelled if it is still inside at the
        deadline, and the cancellation comes out of the block as :class:`TimeoutError`."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        assert task is not None, "a deadline belongs to a task"
        if loop is not self._loop:  # a new loop (tests): nothing of the old one is due
            self._queue.clear()
            self._loop, self._timer = loop, None
        entry = _Deadline(self, loop.time() + self.seconds, task)
        self._queue.append(entry)
        if self._timer is None:
            self._timer = loop.call_at(entry.at, self._expire)
        return entry

    def trim(self) -> None:
        """Drop the finished deadlines at the head of the queue (sends mostly end in order)."""
        queue = self._queue
        while queue and queue[0].done:
            queue.popleft()

    def _expire(self) -> None:
        """Cancel the sends whose deadline passed; arm the timer for the next one."""
        self._timer = None
        loop, queue = self._loop, self._queue
        assert loop is not None
        now = loop.time()
        while queue and (queue[0].done or queue[0].at <= now):
            entry = queue.popleft()
            if not entry.done:
                entry.expired = True
                entry.task.cancel()
        if queue:
            self._timer = loop.call_at(queue[0].at, self._expire)


class _Deadline:
    """One send's deadline in :class:`Deadlines`."""

    __slots__ = ("at", "cancelling", "done", "expired", "owner", "task")

    def __init__(self, owner: Deadlines, at: float, task: asyncio.Task[Any]) -> None:
        self.owner = owner
        self.at = at
        self.task = task
        self.cancelling = task.cancelling()
        self.expired = False
        self.done = False

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        self.done = True
        self.owner.trim()
        expired = self.expired and kind is asyncio.CancelledError
        if expired and self.task.uncancel() <= self.cancelling:
            raise TimeoutError from exc


class DeliveryPolicy:
    def __init__(
        self,
        settings: Settings,
        channel: AnyChannel,
        *,
        clock: Clock = time.time,
        throttle: Throttle | None = None,
    ) -> None:
        self.settings = settings
        self.channel = channel
        self.throttle = throttle or Throttle()
        self._clock = clock  # wall clock: a notification's age counts from its accepted_at
        # NOTIFSVC_SEND_RATE is the whole cluster's: this replica spends its share of it
        self._limiter = SharedLimiter(settings.send_rate)
        self._deadlines = Deadlines(outer_deadline(settings.send_timeout_ms / 1000))
        # the metric children of this channel, looked up once rather than per send; the
        # latencies are added per batch (flush_metrics)
        self._end_to_end = metrics.Observations(metrics.END_TO_END.labels(channel.name))
        self._provider_seconds = metrics.Observations(metrics.PROVIDER_SECONDS.labels(channel.name))
        self._retries = metrics.RETRIES.labels(channel.name)
        self._send_now = channel.synchronous_send()

    def flush_metrics(self) -> None:
        """Add the latencies observed since the last call to their histograms (the
        notificator calls it once per written part of a batch)."""
        self._end_to_end.flush()
        self._provider_seconds.flush()

    def retry_delay(self, d: Delivery, passes: int) -> float:
        """Seconds before the retry lane takes ``d`` up again, after ``passes`` earlier ones."""
        delay = self.settings.retry_delay_ms / 1000 * (1 << min(passes, 16))
        return min(MAX_RETRY_DELAY, max(delay, d.retry_after))

    def set_share(self, fraction: float, *, idle: float | None = None) -> None:
        """Send at ``fraction`` of ``NOTIFSVC_SEND_RATE`` from now on: this replica's share
        of the cluster-wide rate (the notificator recomputes it on every rebalance). With
        ``fraction`` 0, sends already in flight go on at ``idle`` of the rate (see
        :class:`~notifsvc.ratelimit.SharedLimiter`)."""
        self._limiter.set_share(fraction, idle=idle)

    @property
    def share(self) -> float:
        """This replica's current share of ``NOTIFSVC_SEND_RATE``."""
        return self._limiter.share

    def worst_case_seconds(self) -> float:
        """The longest one pass over a notification can take (bounds a graceful drain)."""
        tries = self.settings.inprocess_attempts
        sends = (tries + MAX_THROTTLES) * self.settings.send_timeout_ms / 1000
        return sends + (tries - 1) * MAX_BACKOFF + MAX_THROTTLES * MAX_INLINE_PAUSE

    async def deliver(
        self,
        n: Notification,
        *,
        prior: int,
        slots: asyncio.Semaphore,
        replayed: Replayed | None = None,
    ) -> Delivery:
        """One pass over ``n``, whose attempts so far are ``prior``. After an operator's
        requeue (``replayed``), the attempts made before it do not count against
        ``NOTIFSVC_MAX_ATTEMPTS`` and the throttling budget counts from the requeue. A
        notification whose ``expires_at`` has passed is not sent (:meth:`Delivery.expired`),
        neither now nor between the attempts of the pass."""
        refused = self._refused(n, prior)
        if refused is not None:
            return refused
        history: list[Attempt] = []
        done = await self._pass(n, _start(prior, replayed), slots, history)
        return done.with_log(tuple(history))

    def deliver_now(
        self,
        n: Notification,
        *,
        prior: int,
        slots: asyncio.Semaphore,
        replayed: Replayed | None = None,
    ) -> Delivery | Coroutine[Any, Any, Delivery] | None:
        """:meth:`deliver` without a coroutine where nothing would wait: a channel whose
        send is a plain function (:meth:`~notifsvc.channels.Channel.synchronous_send`), no
        pause in force, no send rate. Then the :class:`Delivery` when the first answer
        settles it, else the rest of the pass to await (one attempt made, with ``slots``);
        None when it sent nothing: :meth:`deliver` it. The caller has seen a free slot in
        ``slots`` (the notificator looks once per batch: it starts a batch's notifications
        without awaiting, so no slot changes hands meanwhile)."""
        send = self._send_now
        if send is None or self._limiter.rate or self.throttle.remaining():
            return None
        refused = self._refused(n, prior)  # also the last moment before the send to check
        if refused is not None:
            return refused
        tried = self._attempt_now(n, send)
        if tried.error is None:
            entry = tried.entry(n, self.channel.name, prior + 1)
            return self._sent(n, 1, prior, (entry,))
        return self._rest(n, _start(prior, replayed), slots, tried)

    async def _rest(
        self, n: Notification, run: _Run, slots: asyncio.Semaphore, first: Tried
    ) -> Delivery:
        """The pass of :meth:`deliver_now` after its first answer, ``first``."""
        history: list[Attempt] = []
        done = await self._pass(n, run, slots, history, first)
        return done.with_log(tuple(history))

    def _refused(self, n: Notification, prior: int) -> Delivery | None:
        """The verdict on ``n`` before any attempt: expired, or not deliverable (the
        channel's validation); None to go on."""
        if n.expires_at is not None and n.expired(self._clock()):
            return Delivery.expired(n, total=prior)
        problems = self.channel.validate(n)
        if problems:
            reason = "; ".join(f"{p.field}: {p.message}" for p in problems)
            return self._failed(n, 0, prior, f"not deliverable by {self.channel.name}: {reason}")
        return None

    async def _pass(
        self,
        n: Notification,
        run: _Run,
        slots: asyncio.Semaphore,
        history: list[Attempt],
        first: Tried | None = None,
    ) -> Delivery:
        """Attempts until a verdict (``first``: the answer to the first, already made);
        each one is appended to ``history``."""
        prior = run.prior
        attempts = throttles = 0
        while True:
            if first is not None:
                tried, first = first, None
            else:
                try:
                    async with slots:
                        tried = await self._attempt(n, attempts + throttles)
                except _ExpiredBeforeSend:  # while it waited for a slot, a pause, a backoff
                    return Delivery.expired(n, attempts=attempts, total=prior + attempts)
            exc = tried.error
            number = prior + attempts + 1  # of this attempt, or of the one a throttle holds back
            if exc is None:
                history.append(tried.entry(n, self.channel.name, number))
                return self._sent(n, attempts + 1, prior)
            if is_throttle(exc):
                throttles += 1
                history.append(tried.entry(n, self.channel.name, number, _seq(tried, history)))
                verdict = self._after_throttle(n, exc, throttles, attempts, run)
                if verdict is not None:
                    return verdict
                continue
            attempts += 1
            history.append(tried.entry(n, self.channel.name, number))
            verdict = self._verdict(n, exc, attempts, run)
            if verdict is not None:
                return verdict
            await asyncio.sleep(backoff(attempts, base=0.1, cap=MAX_BACKOFF))

    def _after_throttle(
        self, n: Notification, exc: DeliveryError, throttles: int, attempts: int, run: _Run
    ) -> Delivery | None:
        """None to wait the pause out here; otherwise the retry lane, or failure once the
        notification's throttling budget is spent."""
        prior = run.prior
        pause = exc.retry_after
        if pause is None:
            pause = min(MAX_INLINE_PAUSE, DEFAULT_PAUSE * 2 ** (throttles - 1))
        age = self._clock() - (n.due_at if run.since is None else run.since)
        if age + pause > self.settings.throttle_budget_seconds:
            why = f"{THROTTLED}: the provider kept throttling for {age:.0f}s ({exc})"
            return self._failed(n, attempts, prior, why)
        if pause <= MAX_INLINE_PAUSE and throttles <= MAX_THROTTLES:
            self.throttle.hold(pause)
            return None
        self._log("postponed (throttled)", n, prior + attempts, str(exc))
        error = f"{THROTTLED}: {exc}"
        return Delivery(n, State.FORWARDED, attempts, prior + attempts, error, retry_after=pause)

    def _verdict(
        self, n: Notification, exc: DeliveryError, attempts: int, run: _Run
    ) -> Delivery | None:
        """None to try again now; otherwise the notification's fate for this pass."""
        prior = run.prior
        total = prior + attempts
        if not exc.retriable or total - run.budget_from >= self.settings.max_attempts:
            return self._failed(n, attempts, prior, str(exc))
        if attempts >= self.settings.inprocess_attempts:
            self._log("postponed", n, total, str(exc))
            return Delivery(n, State.FORWARDED, attempts, total, str(exc))
        return None

    def _failed(self, n: Notification, attempts: int, prior: int, error: str) -> Delivery:
        self._log("failed", n, prior + attempts, error, level=logging.WARNING)
        return Delivery(n, State.FAILED, attempts, prior + attempts, error)

    def _log(
        self, what: str, n: Notification, total: int, error: str, *, level: int = logging.INFO
    ) -> None:
        context = {"uuid": n.uuid, "channel": self.channel.name}
        log.log(level, "%s %s after %d attempts: %s", n.uuid, what, total, error, extra=context)

    def _sent(
        self, n: Notification, attempts: int, prior: int, tried: tuple[Attempt, ...] = ()
    ) -> Delivery:
        self._end_to_end.observe(max(0.0, time.time() - n.accepted_at))
        return Delivery(n, State.SENT, attempts, prior + attempts, None, 0.0, tried)

    async def _attempt(self, n: Notification, earlier: int) -> Tried:
        """One send; every failure comes back as a :class:`DeliveryError` in the result."""
        if self.throttle.remaining():  # no coroutine per send while no pause is in force
            await self.throttle.wait()
        if self._limiter.rate:
            await self._limiter.acquire()
        if n.expires_at is not None and n.expired(self._clock()):
            raise _ExpiredBeforeSend  # the last moment before the send to check it
        if earlier:
            self._retries.inc()
        started, wall = time.monotonic(), self._clock()
        try:
            with self._deadlines.within():
                receipt = await self.channel.send(n)
        except Exception as exc:  # noqa: BLE001 - classified, a channel's bug logged, in _answered
            return self._answered(n, started, wall, None, exc)
        return self._answered(n, started, wall, receipt, None)

    def _attempt_now(
        self, n: Notification, send: Callable[[Notification], Receipt | None]
    ) -> Tried:
        """:meth:`_attempt` through a channel's synchronous send (nothing to wait for; no
        deadline could interrupt it)."""
        started, wall = time.monotonic(), self._clock()
        try:
            receipt = send(n)
        except Exception as exc:  # noqa: BLE001 - classified, a channel's bug logged, in _answered
            return self._answered(n, started, wall, None, exc)
        return self._answered(n, started, wall, receipt, None)

    def _answered(
        self,
        n: Notification,
        started: float,
        wall: float,
        receipt: Receipt | None,
        failure: Exception | None,
    ) -> Tried:
        """The answer to a send begun at ``started`` (monotonic) and ``wall``: its receipt,
        or what it raised as a :class:`DeliveryError` (a channel's bug fails this
        notification only)."""
        self._provider_seconds.observe(time.monotonic() - started)
        error: DeliveryError | None = None
        if isinstance(failure, TimeoutError):
            error = self._timed_out(failure)
        elif isinstance(failure, DeliveryError):
            error = failure
        elif failure is not None:
            log.error(
                "%s: unexpected error sending %s", self.channel.name, n.uuid, exc_info=failure
            )
            error = self._unexpected(failure)
        return Tried(wall, self._clock(), receipt, error, _error_class(error))

    def _timed_out(self, exc: TimeoutError) -> DeliveryError:
        error = TransientError(f"{self.channel.name} send timed out")
        error.__cause__ = exc
        return error

    def _unexpected(self, exc: Exception) -> DeliveryError:
        why = f"unexpected {type(exc).__name__} in {self.channel.name}: {exc}"
        error = PermanentError(why)
        error.__cause__ = exc
        return error


class _ExpiredBeforeSend(Exception):
    """Raised by :meth:`DeliveryPolicy._attempt` instead of sending an expired notification."""


def _error_class(error: DeliveryError | None) -> str | None:
    """The class of what went wrong: the exception a channel (or this policy) turned into
    ``error`` (``TimeoutError``, ``ClientConnectorError``, ``SMTPRecipientsRefused``, ...),
    else ``error``'s own (an answer classified: ``TransientError``, ``Throttled``, ...)."""
    if error is None:
        return None
    origin = error.__cause__ or error.__context__
    return type(origin or error).__name__


def _seq(tried: Tried, history: list[Attempt]) -> int:
    """A throttled answer's ``seq``: its start in Unix milliseconds, above every earlier one
    of the pass (so unique even when the clock stands still)."""
    return max(round(tried.started * 1000), max((a.seq for a in history), default=0) + 1, 1)
