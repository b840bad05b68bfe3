"""Shared pieces for channels that talk HTTP to their provider."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

import aiohttp

from notifsvc.channels.base import Channel, DeliveryError, PermanentError, TransientError

#: Statuses that mean "not now" rather than "never".
RETRIABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def classify_status(
    provider: str, status: int, headers: Mapping[str, str], detail: str
) -> DeliveryError | None:
    """None for a 2xx answer, otherwise the error it means."""
    if 200 <= status < 300:
        return None
    message = f"{provider} answered HTTP {status}: {detail[:200]}"
    if status in RETRIABLE_STATUSES or status >= 500:
        return TransientError(message, retry_after=parse_retry_after(headers.get("Retry-After")))
    return PermanentError(message)


def base_url_problem(variable: str, value: str) -> str | None:
    """Why a provider base URL setting is unusable, naming ``variable``, or None."""
    try:
        url = urlsplit(value)
    except ValueError:
        url = None
    if url is None or url.scheme not in {"http", "https"} or not url.hostname:
        return f"{variable} must be an http(s) URL, got {value!r}"
    return None


class HttpChannel(Channel):
    """A channel whose provider speaks HTTP: one aiohttp session, opened by :meth:`start`.

    The session's total timeout is ``NOTIFSVC_SEND_TIMEOUT_MS`` and it never raises for a
    status: the channel classifies answers. Subclasses post with ``allow_redirects=False``.
    """

    _session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.settings.send_timeout_ms / 1000)
            self._session = aiohttp.ClientSession(timeout=timeout, raise_for_status=False)

    async def stop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
