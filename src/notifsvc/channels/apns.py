"""``apns``: push to Apple devices through the APNs provider API (HTTP/2, token-based auth).

``POST {NOTIFSVC_APNS_API_URL}/3/device/{to}`` over HTTP/2 only (httpx without HTTP/1.1,
one connection multiplexing the sends) with the headers ``authorization: bearer <JWT>``,
``apns-topic`` (the app's bundle id), ``apns-push-type: alert``, ``apns-priority`` (10 for
high and normal, 5 for low), ``apns-expiration`` (0, or ``NOTIFSVC_APNS_TTL_SECONDS`` after
the notification was accepted; for a notification with ``expires_at``, that time, or the
setting's if sooner, so APNs never delivers it late) and ``apns-id`` (the notification's
UUID, so that a repeated send is recognisable), and the body
``{"aps": {"alert": {"title": subject, "body": txt}}}`` (no title without a subject), at
most 4,096 bytes. ``to`` is a device token: 64 hexadecimal characters today, accepted up to
200 (whole bytes) since Apple says the length may change.

The provider token is an ES256 JWT signed with the team's ``.p8`` key (header ``alg``,
``kid``; claims ``iss`` = team id, ``iat``). Apple refuses tokens older than an hour and
answers 429 to a provider that changes its token more often than every 20 minutes, so one
token is reused by every send and replaced after :data:`TOKEN_REFRESH_SECONDS`.

Answers: 410 (``Unregistered``, ``ExpiredToken``), ``BadDeviceToken`` and
``DeviceTokenNotForTopic`` are ``token_invalid`` :class:`PermanentError`\\ s; 429 is
:class:`Throttled` (``Retry-After`` honoured when given); 5xx, timeouts and connection
errors are :class:`TransientError`; 403 ``ExpiredProviderToken``/``InvalidProviderToken``
drop the token (the next send signs a new one) and are transient; every other 4xx
(``PayloadTooLarge``, ``BadTopic``, ``TopicDisallowed``, ...) is permanent, naming Apple's
reason.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote

import httpx
import jwt
import msgspec
import orjson
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from notifsvc.channels.base import (
    Channel,
    DeliveryError,
    PermanentError,
    Receipt,
    Throttled,
    TransientError,
)
from notifsvc.channels.http import (
    DETAIL_CHARS,
    MAX_ANSWER_BYTES,
    RETRIABLE_STATUSES,
    Request,
    base_url_problem,
    parse_retry_after,
)
from notifsvc.config import Secret, Section, Settings, as_readable_file, setting
from notifsvc.model import FieldError, Notification, Priority, Reason, uuid_text

log = logging.getLogger(__name__)

#: Largest JSON body APNs takes for an alert (VoIP pushes may have 5,120 bytes).
MAX_PAYLOAD_BYTES = 4096
#: A device token: whole bytes in hexadecimal, 32 of them today, up to 100 accepted.
DEVICE_TOKEN = re.compile(r"(?:[0-9A-Fa-f]{2}){32,100}")
#: A provider token is replaced when it is this old (Apple refuses one older than an hour
#: and answers TooManyProviderTokenUpdates to more than one new token per 20 minutes).
TOKEN_REFRESH_SECONDS = 50 * 60
#: ``reason`` values meaning the device token is no use any more: the client should delete it.
TOKEN_INVALID_REASONS = frozenset(
    {"BadDeviceToken", "DeviceTokenNotForTopic", "Unregistered", "ExpiredToken"}
)
#: 403 reasons that a freshly signed provider token cures.
STALE_PROVIDER_TOKEN_REASONS = frozenset({"ExpiredProviderToken", "InvalidProviderToken"})
#: ``reason`` values of a 4xx answer that may go away by themselves.
TRANSIENT_REASONS = STALE_PROVIDER_TOKEN_REASONS | {"IdleTimeout"}
PRIORITIES: Mapping[Priority, str] = {Priority.HIGH: "10", Priority.NORMAL: "10", Priority.LOW: "5"}

_EMPTY_PAYLOAD = len(b'{"aps":{"alert":{"body":""}}}')


def payload(notification: Notification) -> bytes:
    """The JSON body APNs gets for ``notification``: an alert with title and body."""
    alert = {"title": notification.subject} if notification.subject else {}
    return orjson.dumps({"aps": {"alert": alert | {"body": notification.txt}}})


def payload_problem(notification: Notification) -> FieldError | None:
    """The field to blame when the JSON body would exceed :data:`MAX_PAYLOAD_BYTES`."""
    size = len(payload(notification))
    if size <= MAX_PAYLOAD_BYTES:
        return None
    why = f"makes an APNs payload of {size} bytes; the limit is {MAX_PAYLOAD_BYTES}"
    untitled = msgspec.structs.replace(notification, subject=None)
    if notification.subject and len(payload(untitled)) <= MAX_PAYLOAD_BYTES:
        return FieldError("subject", f"together with txt {why}")
    return FieldError("txt", why)


def load_key(pem: str) -> ec.EllipticCurvePrivateKey:
    """The P-256 private key of a ``.p8`` file's text (``\\n`` escapes allowed, as a
    one-line environment variable has them); ``ValueError`` saying why not, never quoting it."""
    text = pem.strip()
    if "\n" not in text and "\\n" in text:
        text = text.replace("\\n", "\n")
    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError("is not an unencrypted PEM private key (the .p8 file's text)") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("is not a P-256 (ES256) key") from None
    return key


def _seconds(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be a number of seconds, 0 or more")
    return value


@dataclass(frozen=True)
class ApnsSettings(Section, prefix="apns"):
    """The team's APNs signing key and the app the notifications are for."""

    api_url: str = setting(
        "https://api.push.apple.com",
        str,
        doc="APNs base URL (`https://api.sandbox.push.apple.com` for development builds)",
    )
    key: Secret | None = setting(
        None, Secret, secret=True, doc="the text of the team's `.p8` token signing key"
    )
    key_id: str | None = setting(None, str, doc="the signing key's 10-character key id")
    team_id: str | None = setting(None, str, doc="the Apple developer team id (JWT `iss`)")
    topic: str | None = setting(None, str, doc="the app's bundle id (`apns-topic`)")
    ca_file: Path | None = setting(
        None, as_readable_file, doc="CA bundle to trust instead of the system's"
    )
    ttl_seconds: int = setting(
        0,
        _seconds,
        doc="how long APNs retries an offline device (0: now or never; a notification with "
        "`expires_at` until then, at most this long when above 0)",
    )

    def disabled_reason(self) -> str | None:
        missing = self.missing("key", "key_id", "team_id", "topic")
        return missing or base_url_problem(self.env_name("api_url"), self.api_url) or self._key()

    def _key(self) -> str | None:
        try:
            load_key(self.key.reveal() if self.key is not None else "")
        except ValueError as exc:
            return f"{self.env_name('key')} {exc}"
        return None


@dataclass(frozen=True, slots=True)
class ProviderToken:
    value: str
    issued_at: float


class ProviderTokens:
    """One ES256 provider token shared by every send, signed again when it is
    :data:`TOKEN_REFRESH_SECONDS` old or was refused. :meth:`current` never awaits, so
    concurrent sends on one event loop cannot sign two tokens at once."""

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey,
        key_id: str,
        team_id: str,
        clock: Callable[[], float],
    ) -> None:
        self._key, self._key_id, self._team_id, self._clock = key, key_id, team_id, clock
        self._token: ProviderToken | None = None

    def current(self) -> str:
        now = self._clock()
        token = self._token
        if token is None or not 0 <= now - token.issued_at < TOKEN_REFRESH_SECONDS:
            token = self._token = self._sign(now)
        return token.value

    def discard(self, value: str) -> None:
        """Forget ``value`` if it is still the current token (APNs refused it); when many
        sends fail with the same token, only the first refusal costs a new one."""
        if self._token is not None and self._token.value == value:
            self._token = None

    def _sign(self, now: float) -> ProviderToken:
        claims = {"iss": self._team_id, "iat": int(now)}
        headers = {"kid": self._key_id, "typ": None}  # typ None: the header is alg and kid
        value = jwt.encode(claims, self._key, algorithm="ES256", headers=headers)
        log.info("apns: signed a new provider token (key %s, team %s)", self._key_id, self._team_id)
        return ProviderToken(value, float(int(now)))


def answer_reason(body: bytes) -> tuple[str | None, int | None]:
    """``reason`` and ``timestamp`` (ms since the epoch) of an APNs error body, if any."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    reason, stamp = data.get("reason"), data.get("timestamp")
    usable = isinstance(stamp, int) and not isinstance(stamp, bool) and 0 <= stamp < 2**53
    return (str(reason)[:DETAIL_CHARS] if reason else None), (stamp if usable else None)


def _since(timestamp: int | None) -> str:
    if timestamp is None:
        return ""
    try:
        when = datetime.fromtimestamp(timestamp / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return ""
    return f" (inactive since {when.isoformat(timespec='seconds')})"


def classify_response(status: int, headers: Mapping[str, str], body: bytes) -> DeliveryError | None:
    """None when APNs took the notification, otherwise the error its answer means."""
    if 200 <= status < 300:
        return None
    reason, timestamp = answer_reason(body)
    if reason is None:
        reason = body.decode(errors="replace")[:DETAIL_CHARS] or "no reason given"
    message = f"apns answered HTTP {status}: {reason}"
    retry_after = parse_retry_after(headers.get("retry-after"))
    if status == 410 or reason in TOKEN_INVALID_REASONS:
        return PermanentError(message + _since(timestamp), reason=Reason.TOKEN_INVALID)
    if status == 429:
        return Throttled(message, retry_after=retry_after)
    if status in RETRIABLE_STATUSES or status >= 500 or reason in TRANSIENT_REASONS:
        return TransientError(message, retry_after=retry_after)
    return PermanentError(message)


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


class ApnsChannel(Channel[ApnsSettings]):
    name = "apns"
    Config = ApnsSettings
    fake = "notifsvc.dev.fakes.apns:FakeApns"
    push = True
    #: The longest ASCII ``txt`` that fits the payload; :meth:`validate` checks the bytes.
    max_body_chars = MAX_PAYLOAD_BYTES - _EMPTY_PAYLOAD
    recipient_pattern: ClassVar[str] = "^(?:[0-9A-Fa-f]{2}){32,100}$"

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        """``clock``: wall-clock seconds, for the provider token and ``apns-expiration``."""
        super().__init__(settings)
        self.clock = clock
        self._client: httpx.AsyncClient | None = None
        self._tokens: ProviderTokens | None = None

    def validate_recipient(self, to: str) -> list[FieldError]:
        if DEVICE_TOKEN.fullmatch(to):
            return []
        why = "must be an APNs device token: 64 to 200 hexadecimal digits (whole bytes)"
        return [FieldError("to", why)]

    def validate(self, notification: Notification) -> list[FieldError]:
        errors = super().validate(notification)
        if not any(e.field == "txt" for e in errors):
            problem = payload_problem(notification)
            errors += [problem] if problem is not None else []
        return errors

    async def start(self) -> None:
        if self._client is not None:
            return
        config = self.config
        key = load_key(config.key.reveal() if config.key is not None else "")
        self._tokens = ProviderTokens(key, config.key_id or "", config.team_id or "", self.clock)
        concurrency = self.settings.send_concurrency
        self._client = httpx.AsyncClient(
            http1=False,  # HTTP/2 only, as APNs: over TLS by ALPN, over plain http directly
            http2=True,
            verify=_tls(config.ca_file),
            timeout=httpx.Timeout(self._timeout()),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            follow_redirects=False,
            trust_env=False,
        )

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _timeout(self) -> float:
        return self.settings.send_timeout_ms / 1000

    def request(self, notification: Notification, token: str) -> Request:
        """The request that delivers ``notification`` with provider token ``token``."""
        config = self.config
        url = f"{config.api_url.rstrip('/')}/3/device/{quote(notification.to, safe='')}"
        headers = {
            "authorization": f"bearer {token}",
            "apns-topic": config.topic or "",
            "apns-push-type": "alert",
            "apns-priority": PRIORITIES[notification.priority],
            "apns-expiration": str(self._expiration(notification)),
            "apns-id": uuid_text(notification.uuid),
            "content-type": "application/json",
        }
        return Request(url, payload(notification), headers, "apns", secrets=(token,))

    def _expiration(self, notification: Notification) -> int:
        """Unix seconds after which APNs stops trying (0: now or never). A notification's
        own ``expires_at`` is the client's wish; a positive setting caps it."""
        ttl = self.config.ttl_seconds
        expires_at = notification.expires_at
        capped = int((notification.accepted_at or self.clock()) + ttl) if ttl else 0
        if expires_at is None:
            return capped
        wish = math.floor(expires_at)
        return min(wish, capped) if capped else wish

    async def send(self, notification: Notification) -> Receipt:
        client, tokens = self._client, self._tokens
        if client is None or tokens is None:
            raise TransientError(f"{self.name} channel is not started")
        request: Request | None = None
        token = ""
        try:
            token = tokens.current()
            request = self.request(notification, token)
            answer = await self._exchange(client, request)
        except (TimeoutError, httpx.HTTPError) as exc:  # no answer, or a broken one
            raise TransientError(_failure(request, exc, "request failed")) from None
        except Exception as exc:  # noqa: BLE001 - a bug or a surprise: never escape a send
            raise PermanentError(_failure(request, exc, "send failed unexpectedly")) from None
        if answer.status == 403 and answer_reason(answer.body)[0] in STALE_PROVIDER_TOKEN_REASONS:
            tokens.discard(token)
        error = classify_response(answer.status, answer.headers, answer.body)
        if error is not None:
            error.status = answer.status
            raise error
        return Receipt(answer.headers.get("apns-id"), answer.status)

    async def _exchange(self, client: httpx.AsyncClient, request: Request) -> _Answer:
        async with (
            asyncio.timeout(self._timeout()),
            client.stream(
                "POST", request.url, content=request.body, headers=dict(request.headers)
            ) as response,
        ):
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) >= MAX_ANSWER_BYTES:
                    break
        return _Answer(response.status_code, response.headers, body[:MAX_ANSWER_BYTES])


def _tls(ca_file: Path | None) -> ssl.SSLContext | bool:
    """The certificates to trust: ``ca_file`` only, when set; else httpx's default bundle."""
    return True if ca_file is None else ssl.create_default_context(cafile=str(ca_file))


def _failure(request: Request | None, exc: BaseException, what: str) -> str:
    detail = str(exc) if request is None else request.scrub(str(exc))
    shown = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return f"apns {what}: {shown[:DETAIL_CHARS]}"
