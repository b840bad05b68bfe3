"""Shared pieces for channels that talk HTTP to their provider.

:class:`HttpChannel` owns the whole exchange: it POSTs the :class:`Request` a channel builds
(never following a redirect), reads at most :data:`MAX_ANSWER_BYTES` of the answer and lets
the channel classify it. Whatever goes wrong on the way becomes a
:class:`~notifsvc.channels.base.DeliveryError`: timeouts and connection errors are
transient, anything unexpected is permanent for the notification, so that no send can
escape the delivery policy.

Where an error proves that the provider did not take the message, it is marked
``failover`` (see :class:`~notifsvc.channels.base.DeliveryError`): a connection that was
never made (refused, DNS, TLS: :class:`aiohttp.ClientConnectorError`, or a connect
timeout) and an answer 429 or 5xx. A timeout or a dropped connection after the request
went out is not: the provider may have sent the message.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from urllib.parse import urlsplit

import aiohttp
import orjson

from notifsvc.channels.base import (
    C,
    Channel,
    DeliveryError,
    PermanentError,
    Receipt,
    Throttled,
    TransientError,
)
from notifsvc.model import Notification

#: Statuses that mean "not now" rather than "never" (429 is :class:`Throttled`).
RETRIABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
#: Longest wait a ``Retry-After`` may ask for; longer requests are clamped to it.
MAX_RETRY_AFTER = 86_400.0
#: Most bytes of a provider's answer read into memory; the rest is never read.
MAX_ANSWER_BYTES = 64 * 1024
#: Characters of an answer or exception message quoted in an error.
DETAIL_CHARS = 200
#: Failures before any byte of the request went out: another provider may send it.
NOT_SENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)


def proves_not_taken(status: int) -> bool:
    """An answer status that says the provider did not take the message (429, 5xx)."""
    return status == 429 or status >= 500


_DELTA_SECONDS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() also accepts '²' and '٣'
_REDACTED = "[redacted]"


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date).

    Never raises: anything unusable (garbage, non-ASCII digits, a date no calendar holds) is
    None, and a usable value is clamped to ``[0, MAX_RETRY_AFTER]``.
    """
    if not value:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        # More digits than a day has seconds would overflow float() long before they matter.
        return MAX_RETRY_AFTER if len(value) > 6 else min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:  # "-0000": UTC by RFC 5322, not local time
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


def classify_status(
    provider: str, status: int, headers: Mapping[str, str], detail: str
) -> DeliveryError | None:
    """None for a 2xx answer, otherwise the error it means: 429 is :class:`Throttled`."""
    if 200 <= status < 300:
        return None
    message = f"{provider} answered HTTP {status}: {detail[:DETAIL_CHARS]}"
    retry_after = parse_retry_after(headers.get("Retry-After"))
    if status == 429:
        return Throttled(message, retry_after=retry_after, status=status)
    if status in RETRIABLE_STATUSES or status >= 500:
        return TransientError(message, retry_after=retry_after, status=status)
    return PermanentError(message, status=status)


def json_field(body: bytes, name: str) -> str | None:
    """A string field of a JSON object answer (a provider's message id), else None."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    found = value.get(name) if isinstance(value, dict) else None
    return found if isinstance(found, str) else None


def base_url_problem(variable: str, value: str) -> str | None:
    """Why a provider base URL setting is unusable, naming ``variable``, or None."""
    try:
        url = urlsplit(value)
    except ValueError:
        url = None
    if url is None or url.scheme not in {"http", "https"} or not url.hostname:
        return f"{variable} must be an http(s) URL, got {value!r}"
    return None


@dataclass(frozen=True, slots=True)
class Request:
    """What a channel POSTs, and how its errors may speak of it.

    ``label`` names the provider in every error message; each string of ``secrets`` is
    replaced by ``[redacted]`` wherever it would appear in one (answer bodies, exception
    messages), and exceptions are then not chained, so that their text stays out of logs.
    """

    url: str
    body: bytes
    headers: Mapping[str, str]
    label: str
    secrets: tuple[str, ...] = ()

    def scrub(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, _REDACTED)
        return text


@dataclass(frozen=True, slots=True)
class Answer:
    """The provider's answer: status, headers and at most :data:`MAX_ANSWER_BYTES` of body."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    #: The body decoded (invalid UTF-8 replaced) with the request's secrets scrubbed.
    text: str


async def read_bounded(content: aiohttp.StreamReader, limit: int = MAX_ANSWER_BYTES) -> bytes:
    """At most ``limit`` bytes of ``content``; the rest is left unread (and the connection
    is then closed rather than reused)."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class HttpChannel(Channel[C]):
    """A channel whose provider speaks HTTP: one aiohttp session, opened by :meth:`start`.

    The session's total timeout is ``NOTIFSVC_SEND_TIMEOUT_MS`` and it never raises for a
    status. :meth:`send` POSTs :meth:`request` without following redirects (a 3xx is then
    classified like any other answer) and raises what :meth:`classify` makes of the answer
    (carrying the answer's status), or returns a :class:`Receipt` of it.
    """

    _session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.settings.send_timeout_ms / 1000)
            # As many connections as concurrent sends (aiohttp's default caps them at 100).
            connector = aiohttp.TCPConnector(limit=self.settings.send_concurrency)
            self._session = aiohttp.ClientSession(
                timeout=timeout, connector=connector, raise_for_status=False
            )

    async def stop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    @abstractmethod
    def request(self, notification: Notification) -> Request:
        """The request that delivers ``notification``; may raise :class:`DeliveryError`."""

    @abstractmethod
    def classify(self, answer: Answer, request: Request) -> DeliveryError | None:
        """None when ``answer`` means delivered, otherwise the error it means."""

    def message_id(self, answer: Answer) -> str | None:
        """The provider's id for the message it took (``answer`` meant delivered), where its
        answer gives one; None by default."""
        return None

    async def send(self, notification: Notification) -> Receipt | None:
        session = self._session
        if session is None:
            raise TransientError(f"{self.name} channel is not started")
        request: Request | None = None
        try:
            request = self.request(notification)
            answer = await self._exchange(session, request)
            error = self.classify(answer, request)
        except DeliveryError:
            raise
        except (TimeoutError, aiohttp.ClientError) as exc:
            failure = _failure(request, exc, self.name, "request failed")
            transient = TransientError(failure)
            transient.failover = isinstance(exc, NOT_SENT)
            raise transient from _cause(request, exc)
        except Exception as exc:  # noqa: BLE001 - a bug or a surprise: never escape a send
            failure = _failure(request, exc, self.name, "send failed unexpectedly")
            raise PermanentError(failure) from _cause(request, exc)
        if error is not None:
            if error.status is None:  # classified from the body, e.g. Slack's "ok": false
                error.status = answer.status
            error.failover = error.failover or (error.retriable and proves_not_taken(answer.status))
            raise error
        return self._receipt(answer)

    def _receipt(self, answer: Answer) -> Receipt:
        """A delivered answer's receipt; a failing :meth:`message_id` only loses the id."""
        try:
            message_id = self.message_id(answer)
        except Exception:  # noqa: BLE001 - the provider took it: that must stand
            message_id = None
        return Receipt(message_id, answer.status)

    async def _exchange(self, session: aiohttp.ClientSession, request: Request) -> Answer:
        async with session.post(
            request.url, data=request.body, headers=dict(request.headers), allow_redirects=False
        ) as resp:
            body = await read_bounded(resp.content)
        text = request.scrub(body.decode(errors="replace"))
        return Answer(resp.status, resp.headers, body, text)


def _failure(request: Request | None, exc: BaseException, name: str, what: str) -> str:
    label = request.label if request is not None else name
    detail = str(exc) if request is None else request.scrub(str(exc))
    shown = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return f"{label} {what}: {shown[:DETAIL_CHARS]}"


def _cause(request: Request | None, exc: BaseException) -> BaseException | None:
    """``exc`` as the cause, unless its text may hold a secret of the request."""
    return None if request is None or request.secrets else exc
