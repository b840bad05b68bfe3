"""API keys (stored hashed, compared in constant time) and a per-key rate limit.

Each key has its own limiter from :func:`notifsvc.ratelimit.make_limiter`: ``rate`` requests
per second on average, up to :func:`~notifsvc.ratelimit.burst` at once. A request costs one
unit per notification it carries, so a batch of N costs N; a batch larger than the burst
could never be admitted and is refused as such, never let through for less.
"""

from __future__ import annotations

import hashlib
import hmac
import math

from aiolimiter import AsyncLimiter

from notifsvc.config import Secret
from notifsvc.ratelimit import burst, make_limiter


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

    def __init__(self, keys: tuple[Secret, ...], *, rate_per_second: float) -> None:
        self._digests = [_digest(k.reveal()) for k in keys]
        self._rate = rate_per_second
        make_limiter(rate_per_second)  # refuses an unusable rate now, not per request
        self._limiters: dict[bytes, AsyncLimiter | None] = {}

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
