"""API keys (stored hashed, compared in constant time) and a per-key rate limit.

``NOTIFSVC_RATE_LIMIT_PER_KEY`` is the limit of the whole cluster of receivers. Each
receiver process enforces its share of it, ``rate / processes`` with ``processes`` =
``NOTIFSVC_RECEIVER_REPLICAS`` x the ``--workers`` of each replica: no coordination, no
database round trip per request, and the processes' limits add up to the configured one.
The price: a key whose requests all land on one process gets only that process's share
(README, "Per-key limit across receivers").

Each key has its own limiter from :func:`notifsvc.ratelimit.make_limiter`: the process's
rate on average, up to :func:`~notifsvc.ratelimit.burst` of it at once. A request costs one
unit per notification it carries, so a batch of N costs N; a batch larger than the burst
could never be admitted and is refused as such, never let through for less. A share that
cannot be enforced (below :data:`~notifsvc.ratelimit.MIN_RATE`, or whose share of the burst
is below one notification) is refused at start-up.
"""

from __future__ import annotations

import hashlib
import hmac
import math

from aiolimiter import AsyncLimiter

from notifsvc.config import ConfigError, Secret, env_name
from notifsvc.ratelimit import MIN_RATE, burst, make_limiter


def share_problem(rate_per_second: float, replicas: int, workers: int) -> str | None:
    """Why each of ``replicas`` x ``workers`` receiver processes cannot enforce its share of
    a per-key limit of ``rate_per_second`` (0: off), or None."""
    processes = replicas * workers
    if rate_per_second == 0 or processes == 1:
        return None
    share = rate_per_second / processes
    split = (
        f"{env_name('rate_limit_per_key')}={rate_per_second:g} split over {processes} receiver "
        f"processes ({env_name('receiver_replicas')}={replicas} x {workers} workers each)"
    )
    if share < MIN_RATE:
        return f"{split} leaves each {share:g}/s, below the least enforceable {MIN_RATE:g}/s"
    if burst(rate_per_second) / processes < 1:
        return (
            f"{split} leaves each a burst of {burst(rate_per_second) / processes:.2g} "
            f"notifications, below 1: set it to at least {processes} or run fewer processes"
        )
    return None


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class Unauthorized(Exception):
    pass


class RateLimited(Exception):
    """Over the key's budget; ``retry_after`` whole seconds, or None when waiting cannot
    help (the request costs more than the key may ever spend at once)."""

    def __init__(self, message: str, retry_after: int | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Gate:
    """Who may post, and how fast. With no keys configured everyone may, unthrottled."""

    def __init__(
        self,
        keys: tuple[Secret, ...],
        *,
        rate_per_second: float,
        replicas: int = 1,
        workers: int = 1,
    ) -> None:
        """``rate_per_second`` is the cluster's; this process takes 1 / (``replicas`` x
        ``workers``) of it. :class:`~notifsvc.config.ConfigError` if that cannot be enforced."""
        self._digests = [_digest(k.reveal()) for k in keys]
        problem = share_problem(rate_per_second, replicas, workers)
        if problem is not None:
            raise ConfigError([problem])
        self._rate = rate_per_second / (replicas * workers)
        make_limiter(self._rate)  # refuses an unusable rate now, not per request
        self._limiters: dict[bytes, AsyncLimiter | None] = {}

    @property
    def rate(self) -> float:
        """Notifications per second one key may send through this process (0: no limit)."""
        return self._rate

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    @property
    def burst(self) -> float | None:
        """Most notifications one key may send at once; None without a rate limit."""
        return burst(self._rate) if self._rate > 0 else None

    def identify(self, authorization: str | None) -> bytes:
        """The digest of a valid ``Bearer`` key, or :class:`Unauthorized`."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("send Authorization: Bearer <api key>")
        presented = _digest(token.strip())
        matched = False
        for known in self._digests:  # every key is compared: timing says nothing of which
            matched |= hmac.compare_digest(presented, known)
        if not matched:
            raise Unauthorized("the API key is not valid")
        return presented

    async def admit(self, key: bytes, cost: int = 1, *, prepaid: int = 0) -> None:
        """Spend ``cost`` units of the key's budget (``prepaid`` of them spent already), or
        raise :class:`RateLimited`."""
        if key not in self._limiters:
            self._limiters[key] = make_limiter(self._rate)
        limiter = self._limiters[key]
        if limiter is None:
            return
        if cost > limiter.max_rate:
            raise RateLimited(
                f"{cost} notifications in one request exceed this API key's burst of "
                f"{math.floor(limiter.max_rate)}; send at most that many per request",
                retry_after=None,
            )
        due = cost - prepaid
        if due <= 0:
            return
        if not limiter.has_capacity(due):
            retry_after = max(1, math.ceil(due / self._rate))
            raise RateLimited(f"rate limit exceeded; retry in {retry_after}s", retry_after)
        await limiter.acquire(due)  # has capacity, so this does not wait
