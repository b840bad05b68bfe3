"""API keys (stored hashed, compared in constant time) and a per-key rate limit."""

from __future__ import annotations

import hashlib
import hmac
import math

from aiolimiter import AsyncLimiter

from notifsvc.config import Secret


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class Unauthorized(Exception):
    pass


class RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"rate limit exceeded; retry in {retry_after}s")
        self.retry_after = retry_after


class Gate:
    """Who may post, and how fast. With no keys configured everyone may, unthrottled."""

    def __init__(self, keys: tuple[Secret, ...], *, rate_per_second: float) -> None:
        self._digests = [_digest(k.reveal()) for k in keys]
        self._rate = rate_per_second
        self._limiters: dict[bytes, AsyncLimiter] = {}

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

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

    async def admit(self, key: bytes, cost: int = 1) -> None:
        """Spend ``cost`` of the key's budget, or raise :class:`RateLimited`."""
        if self._rate <= 0:
            return
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = AsyncLimiter(self._rate, 1.0)
        cost = min(cost, int(limiter.max_rate))
        if not limiter.has_capacity(cost):
            raise RateLimited(max(1, math.ceil(cost / self._rate)))
        await limiter.acquire(cost)  # has capacity, so this does not wait
