"""``webpush``: push to browsers through Web Push (RFC 8030) with VAPID (RFC 8292) and an
encrypted payload (RFC 8291, ``aes128gcm``).

``to`` is a browser ``PushSubscription`` as JSON text (what ``subscription.toJSON()``
gives): ``{"endpoint": "https://...", "keys": {"p256dh": "<base64url>", "auth":
"<base64url>"}}``, ``expirationTime`` optional. The receiver checks its shape cheaply
(:func:`parse_subscription`): the endpoint is an https URL (http only for the hosts of
``NOTIFSVC_WEBPUSH_ALLOWED_HTTP_HOSTS``) without credentials, at most
:data:`MAX_ENDPOINT_CHARS` long, not a private or loopback address, on a host of
``NOTIFSVC_WEBPUSH_ALLOWED_HOSTS`` when that is set (an entry also admits its
subdomains); ``keys.p256dh`` is an uncompressed P-256 point on the curve and ``keys.auth``
16 bytes. Each problem is a :class:`~notifsvc.model.FieldError` on ``to``.

A send POSTs the JSON ``{"title": subject, "body": txt, "uuid": ...}``, encrypted for the
subscription with a fresh key pair, to the endpoint with ``Authorization: vapid t=<JWT>,
k=<public key>``, ``TTL`` (``NOTIFSVC_WEBPUSH_TTL_SECONDS``; for a notification with
``expires_at``, the whole seconds left until then, or the setting if fewer and above 0, so a
push service never delivers it late), ``Urgency`` (our priority) and
``Content-Encoding: aes128gcm``. The encrypted body must fit :data:`MAX_BODY_BYTES`,
so :meth:`WebPushChannel.validate` refuses a longer payload. The VAPID JWT (ES256, ``aud``
the endpoint's origin, ``exp`` :data:`TOKEN_LIFETIME` ahead, ``sub`` the contact of
``NOTIFSVC_WEBPUSH_VAPID_SUBJECT``) is cached per origin and signed anew
:data:`TOKEN_REFRESH_MARGIN` before it expires.

Answers: 201 (any 2xx) is delivered; 404 and 410 are a :class:`PermanentError` with reason
``token_invalid`` (the subscription is gone: delete it); 413 is permanent (payload too
large); 429 is :class:`Throttled` and 5xx :class:`TransientError` (both honouring
``Retry-After``); 400, 401 and 403 are permanent, 401/403 logged as a VAPID problem.

The endpoint URL is a capability (its path identifies the browser), so errors name its host
only, as the webhook channel does.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final, cast
from urllib.parse import SplitResult, urlsplit

import http_ece  # type: ignore[import-untyped]
import orjson
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid.jwt import sign as vapid_sign  # type: ignore[import-untyped]

from notifsvc.channels.base import DeliveryError, PermanentError
from notifsvc.channels.http import DETAIL_CHARS, Answer, HttpChannel, Request, classify_status
from notifsvc.channels.webhook import MAX_URL_CHARS, host_of, url_secrets
from notifsvc.config import Secret, Section, Settings, as_csv, setting
from notifsvc.model import FieldError, Notification, Priority, Reason, uuid_text

log = logging.getLogger(__name__)

#: Largest encrypted body every push service must take (RFC 8030 section 7.2).
MAX_BODY_BYTES: Final = 4096
#: The ``aes128gcm`` header: salt (16), record size (4), key id length (1), our key (65).
HEADER_BYTES: Final = 16 + 4 + 1 + 65
#: Per record: the padding delimiter and the AEAD tag.
RECORD_OVERHEAD: Final = 1 + 16
#: Longest plaintext that fits one record of :data:`MAX_BODY_BYTES` (RFC 8291: 3993).
MAX_PAYLOAD_BYTES: Final = MAX_BODY_BYTES - HEADER_BYTES - RECORD_OVERHEAD
#: Longest accepted ``to``: the JSON text of a subscription.
MAX_SUBSCRIPTION_CHARS: Final = 4096
#: Longest accepted endpoint URL (the webhook channel's limit).
MAX_ENDPOINT_CHARS: Final = MAX_URL_CHARS
#: Lifetime of a VAPID JWT (RFC 8292 allows at most 24 hours).
TOKEN_LIFETIME: Final = 12 * 3600
#: A cached JWT is replaced this long before its ``exp``.
TOKEN_REFRESH_MARGIN: Final = 3600
#: Origins whose JWT is cached (endpoints are client-supplied: the cache is bounded).
TOKEN_CACHE_SIZE: Final = 1024
#: Longest ``TTL`` accepted: 28 days, what push services keep a message at most.
MAX_TTL_SECONDS: Final = 2_419_200
DEFAULT_TTL_SECONDS: Final = 86_400
#: ``Urgency`` (RFC 8030 section 5.3) for each of our priorities.
URGENCY: Final = {Priority.HIGH: "high", Priority.NORMAL: "normal", Priority.LOW: "low"}

_B64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")
_SUBJECT = re.compile(r"(mailto:[^@\s]+@[^@\s]+|https://[^\s/?#]+[^\s]*)", re.IGNORECASE)
_KEY_HELP = "must be a P-256 private key: PEM, or base64url of the raw 32 bytes or of the DER"
_P256_POINT_BYTES = 65
_AUTH_BYTES = 16


def b64url_decode(text: str) -> bytes:
    """Bytes of unpadded (or padded) base64url text; ValueError for anything else."""
    if not _B64URL.fullmatch(text) or len(text.rstrip("=")) % 4 == 1:
        raise ValueError("not base64url")
    data = text.rstrip("=")
    try:
        return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    except binascii.Error as exc:
        raise ValueError("not base64url") from exc


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def load_vapid_key(text: str) -> ec.EllipticCurvePrivateKey:
    """The VAPID signing key from PEM, base64url raw 32 bytes or base64url DER.

    Raises ValueError whose message never quotes the key."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key: Any = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            raw = b64url_decode(text)
            if len(raw) == 32:
                key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
            else:
                key = serialization.load_der_private_key(raw, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError(_KEY_HELP) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(_KEY_HELP)
    return key


def public_key_b64(key: ec.EllipticCurvePrivateKey) -> str:
    """The public half as browsers take it (``applicationServerKey``) and VAPID's ``k``."""
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64url_encode(point)


def _vapid_key_setting(raw: str) -> Secret:
    load_vapid_key(raw)  # checked now, kept secret
    return Secret(raw.strip())


def _subject_setting(raw: str) -> str:
    subject = raw.strip()
    if not _SUBJECT.fullmatch(subject):
        raise ValueError("must be a mailto: address or an https: URL to contact you")
    return subject


def _ttl_setting(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= MAX_TTL_SECONDS:
        raise ValueError(f"must be between 0 and {MAX_TTL_SECONDS} seconds (28 days)")
    return value


@dataclass(frozen=True)
class WebPushSettings(Section, prefix="webpush"):
    vapid_private_key: Secret | None = setting(
        None,
        _vapid_key_setting,
        secret=True,
        doc="VAPID P-256 private key (PEM, or base64url of the raw 32 bytes); browsers "
        "subscribe with its public half; none: the channel is off",
    )
    vapid_subject: str | None = setting(
        None,
        _subject_setting,
        doc="VAPID contact (`sub`): `mailto:ops@example.com` or an https: URL",
    )
    ttl_seconds: int = setting(
        DEFAULT_TTL_SECONDS,
        _ttl_setting,
        doc="how long a push service keeps a message for an offline browser (`TTL`), 0 to "
        "2419200 (a notification with `expires_at`: until then, at most this long above 0)",
    )
    allowed_hosts: frozenset[str] = setting(
        frozenset(),
        as_csv,
        doc="comma-separated push service hosts endpoints may use (each with its "
        "subdomains); empty: any public https host",
    )
    allowed_http_hosts: frozenset[str] = setting(
        frozenset(),
        as_csv,
        doc="hosts (`host` or `host:port`) endpoints may reach over plain http (local fakes)",
    )

    def disabled_reason(self) -> str | None:
        missing = self.missing("vapid_private_key", "vapid_subject")
        if missing or self.vapid_private_key is None:
            return missing
        try:
            load_vapid_key(self.vapid_private_key.reveal())
        except ValueError as exc:
            return f"{self.env_name('vapid_private_key')} {exc}"
        return None


@dataclass(frozen=True, slots=True)
class Subscription:
    """A parsed, valid push subscription."""

    endpoint: str
    origin: str
    host: str
    p256dh: ec.EllipticCurvePublicKey
    auth: bytes


class BadSubscription(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _text_problem(endpoint: str) -> str | None:
    if len(endpoint) > MAX_ENDPOINT_CHARS:
        return f"is longer than {MAX_ENDPOINT_CHARS} characters"
    if any(c.isspace() or not c.isprintable() for c in endpoint) or "\\" in endpoint:
        return "must not contain spaces, control characters or backslashes"
    return None


def _split(endpoint: str) -> tuple[SplitResult, int | None] | None:
    try:
        url = urlsplit(endpoint)
        return url, url.port
    except ValueError:
        return None


def _private_host(host: str) -> bool:
    """Loopback, private, link-local and other non-public addresses, and ``localhost``."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not address.is_global or address.is_multicast


def _host_allowed(host: str, allowed: frozenset[str]) -> bool:
    return not allowed or any(host == a or host.endswith("." + a) for a in allowed)


def _parts(endpoint: str) -> tuple[SplitResult, int | None] | str:
    """The parts of an http(s) URL without credentials, or why ``endpoint`` is not one."""
    problem = _text_problem(endpoint)
    split = _split(endpoint) if problem is None else None
    if problem is not None or split is None:
        return problem or "is not a URL"
    if split[0].scheme not in {"http", "https"} or not split[0].hostname:
        return "must be an https URL"
    if "@" in split[0].netloc:
        return "must not contain credentials (user:password@)"
    return split


def endpoint_problem(endpoint: str, config: WebPushSettings) -> str | None:
    """Why ``endpoint`` may not be pushed to, or None; quotes at most its host."""
    parts = _parts(endpoint)
    if isinstance(parts, str):
        return parts
    url, port = parts
    host = url.hostname or ""
    plain = config.allowed_http_hosts
    if host in plain or f"{host}:{port}" in plain:  # listed by the operator: also https
        return None
    if url.scheme == "http":
        return f"must be https (http only for {_env('allowed_http_hosts')})"
    if host not in config.allowed_hosts and _private_host(host):
        return f"host {host!r} is not a public address"
    if not _host_allowed(host, config.allowed_hosts):
        return f"host {host!r} is not in {_env('allowed_hosts')}"
    return None


def _env(name: str) -> str:
    return WebPushSettings.env_name(name)


def origin_of(endpoint: str) -> str:
    """``scheme://host[:port]`` of a valid endpoint, without the scheme's default port."""
    url = urlsplit(endpoint)
    port = url.port
    default = {"https": 443, "http": 80}[url.scheme]
    host = url.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{url.scheme}://{host}" if port in {None, default} else f"{url.scheme}://{host}:{port}"


def _decode_key(keys: dict[str, Any], name: str, size: int, problems: list[str]) -> bytes | None:
    value = keys.get(name)
    if value is None:
        problems.append(f"subscription JSON has no keys.{name}")
        return None
    if not isinstance(value, str):
        problems.append(f"subscription JSON keys.{name} must be a base64url string")
        return None
    try:
        data = b64url_decode(value)
    except ValueError:
        problems.append(f"subscription JSON keys.{name} is not base64url")
        return None
    if len(data) != size:
        problems.append(f"subscription JSON keys.{name} must be {size} bytes, not {len(data)}")
        return None
    return data


def _point(data: bytes, problems: list[str]) -> ec.EllipticCurvePublicKey | None:
    if data[0] != 4:
        problems.append("subscription JSON keys.p256dh must be an uncompressed P-256 point")
        return None
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), data)
    except ValueError:
        problems.append("subscription JSON keys.p256dh is not a point on the P-256 curve")
        return None


def _keys(data: dict[str, Any], problems: list[str]) -> tuple[Any, bytes | None]:
    keys = data.get("keys")
    if keys is None:
        problems.append("subscription JSON has no keys (keys.p256dh and keys.auth)")
        return None, None
    if not isinstance(keys, dict):
        problems.append("subscription JSON keys must be an object with p256dh and auth")
        return None, None
    raw = _decode_key(keys, "p256dh", _P256_POINT_BYTES, problems)
    point = _point(raw, problems) if raw is not None else None
    return point, _decode_key(keys, "auth", _AUTH_BYTES, problems)


def _endpoint(data: dict[str, Any], config: WebPushSettings, problems: list[str]) -> str | None:
    endpoint = data.get("endpoint")
    if endpoint is None:
        problems.append("subscription JSON has no endpoint")
        return None
    if not isinstance(endpoint, str):
        problems.append("subscription JSON endpoint must be a string")
        return None
    problem = endpoint_problem(endpoint, config)
    if problem is not None:
        problems.append(f"subscription JSON endpoint {problem}")
        return None
    return endpoint


def _object(to: str) -> dict[str, Any]:
    if len(to) > MAX_SUBSCRIPTION_CHARS:
        raise BadSubscription(
            [f"subscription JSON is longer than {MAX_SUBSCRIPTION_CHARS} characters"]
        )
    try:
        data = orjson.loads(to)
    except orjson.JSONDecodeError:
        raise BadSubscription(["must be a browser PushSubscription as JSON text"]) from None
    if not isinstance(data, dict):
        raise BadSubscription(["subscription JSON must be an object with endpoint and keys"])
    return data


def parse_subscription(to: str, config: WebPushSettings) -> Subscription:
    """The subscription ``to`` describes, or :class:`BadSubscription` listing every problem.

    Pure and cheap: JSON parsing, URL checks, base64url and one point-on-curve check."""
    data = _object(to)
    problems: list[str] = []
    endpoint = _endpoint(data, config, problems)
    point, auth = _keys(data, problems)
    expiration = data.get("expirationTime")
    if expiration is not None and (
        isinstance(expiration, bool) or not isinstance(expiration, int | float)
    ):
        problems.append("subscription JSON expirationTime must be a number or null")
    if problems or endpoint is None or point is None or auth is None:
        raise BadSubscription(problems)
    return Subscription(endpoint, origin_of(endpoint), host_of(endpoint), point, auth)


def payload(notification: Notification) -> bytes:
    """The plaintext the browser's service worker receives (``event.data.json()``)."""
    return orjson.dumps(
        {
            "title": notification.subject,
            "body": notification.txt,
            "uuid": uuid_text(notification.uuid),
        }
    )


def encrypt(plaintext: bytes, subscription: Subscription) -> bytes:
    """``plaintext`` as one ``aes128gcm`` record for ``subscription`` (RFC 8291)."""
    sender = ec.generate_private_key(ec.SECP256R1())
    body = http_ece.encrypt(
        plaintext,
        salt=os.urandom(16),
        private_key=sender,
        dh=subscription.p256dh,
        auth_secret=subscription.auth,
        version="aes128gcm",
    )
    return cast(bytes, body)


class VapidSigner:
    """VAPID JWTs (RFC 8292), one cached per origin and signed again
    :data:`TOKEN_REFRESH_MARGIN` before it expires (``clock``: unix seconds)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, subject: str, clock: Callable[[], float]):
        self.key = key
        self.subject = subject
        self.clock = clock
        self.public_key = public_key_b64(key)
        self._tokens: OrderedDict[str, tuple[str, int]] = OrderedDict()

    def token(self, origin: str) -> str:
        """The JWT for ``origin`` (a push service's ``scheme://host[:port]``)."""
        now = self.clock()
        cached = self._tokens.get(origin)
        if cached is not None and now < cached[1] - TOKEN_REFRESH_MARGIN:
            self._tokens.move_to_end(origin)
            return cached[0]
        exp = int(now) + TOKEN_LIFETIME
        claims = {"aud": origin, "exp": exp, "sub": self.subject}
        token = cast(str, vapid_sign(claims, self.key))
        self._tokens[origin] = (token, exp)
        self._tokens.move_to_end(origin)
        while len(self._tokens) > TOKEN_CACHE_SIZE:
            self._tokens.popitem(last=False)
        return token

    def forget(self, origin: str) -> None:
        """Drop the cached JWT of ``origin`` (its push service refused it)."""
        self._tokens.pop(origin, None)


def classify_response(answer: Answer, label: str) -> DeliveryError | None:
    """None for a 2xx answer, otherwise the error it means (see the module docstring)."""
    status = answer.status
    if status in {404, 410}:
        detail = f"{label} answered HTTP {status}: the subscription is gone or unknown"
        return PermanentError(detail, reason=Reason.TOKEN_INVALID)
    if status == 413:
        return PermanentError(f"{label} answered HTTP 413: the payload is too large")
    if status in {401, 403}:
        return PermanentError(
            f"{label} answered HTTP {status}: VAPID authorization refused "
            f"(is the subscription's applicationServerKey our key?): {answer.text[:DETAIL_CHARS]}"
        )
    return classify_status(label, status, answer.headers, answer.text)


class WebPushChannel(HttpChannel[WebPushSettings]):
    name = "webpush"
    Config = WebPushSettings
    fake = "notifsvc.dev.fakes.webpush:FakePushService"
    push = True
    #: The longest ``txt`` that fits :data:`MAX_PAYLOAD_BYTES` (3,923: ASCII, no subject);
    #: :meth:`validate` checks the exact size of the payload.
    max_body_chars = MAX_PAYLOAD_BYTES - len(b'{"title":null,"body":"","uuid":""}') - 36
    #: A necessary condition on ``to`` (a JSON object), published in the OpenAPI document.
    recipient_pattern: ClassVar[str] = "^[ \\t\\n\\r]*[{]"

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(settings)
        self.clock = clock
        self._signer: VapidSigner | None = None

    def validate_recipient(self, to: str) -> list[FieldError]:
        try:
            parse_subscription(to, self.config)
        except BadSubscription as exc:
            return [FieldError("to", problem) for problem in exc.problems]
        return []

    def validate(self, notification: Notification) -> list[FieldError]:
        errors = super().validate(notification)
        if any(e.field == "txt" for e in errors):
            return errors
        size = len(payload(notification))
        if size > MAX_PAYLOAD_BYTES:
            field = "subject" if notification.subject else "txt"
            what = "with txt makes" if notification.subject else "makes"
            errors.append(
                FieldError(
                    field,
                    f"{what} a payload of {size} bytes as JSON; at most {MAX_PAYLOAD_BYTES} "
                    "fit one encrypted Web Push message",
                )
            )
        return errors

    @property
    def signer(self) -> VapidSigner:
        """The VAPID signer, made from the settings on first use."""
        if self._signer is None:
            secret, subject = self.config.vapid_private_key, self.config.vapid_subject
            if secret is None or subject is None:
                raise PermanentError(f"webpush is not configured: {self.config.disabled_reason()}")
            self._signer = VapidSigner(load_vapid_key(secret.reveal()), subject, self.clock)
        return self._signer

    async def start(self) -> None:
        log.info(
            "webpush: VAPID public key (the applicationServerKey browsers subscribe with): %s",
            self.signer.public_key,
        )
        await super().start()

    def request(self, notification: Notification) -> Request:
        try:
            subscription = parse_subscription(notification.to, self.config)
        except BadSubscription as exc:  # accepted under other settings, or never validated
            label = f"webpush to {host_of(_endpoint_text(notification.to))}"
            raise PermanentError(f"{label}: the subscription {exc}") from None
        label = f"webpush to {subscription.host}"
        token = self.signer.token(subscription.origin)
        headers = {
            "Authorization": f"vapid t={token}, k={self.signer.public_key}",
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "TTL": str(self._ttl(notification)),
            "Urgency": URGENCY[notification.priority],
        }
        body = encrypt(payload(notification), subscription)
        secrets = (*url_secrets(subscription.endpoint), token)
        return Request(subscription.endpoint, body, headers, label, secrets)

    def _ttl(self, notification: Notification) -> int:
        """Seconds a push service may keep it: the setting, or the time left until the
        notification's own ``expires_at`` (capped by a setting above 0)."""
        ttl = self.config.ttl_seconds
        if notification.expires_at is None:
            return ttl
        left = notification.seconds_left(self.clock()) or 0
        return min(left, ttl) if ttl else left

    def classify(self, answer: Answer, request: Request) -> DeliveryError | None:
        error = classify_response(answer, request.label)
        if answer.status in {401, 403}:
            origin = origin_of(request.url)
            self.signer.forget(origin)
            log.warning(
                "%s refused our VAPID authorization (HTTP %d): the subscription was made "
                "with another applicationServerKey than %s, or %s/%s are wrong",
                request.label,
                answer.status,
                self.signer.public_key,
                _env("vapid_private_key"),
                _env("vapid_subject"),
            )
        return error


def _endpoint_text(to: str) -> str:
    """The endpoint of a subscription that did not parse, if it has one (for its host)."""
    try:
        data = orjson.loads(to)
    except orjson.JSONDecodeError:
        return ""
    endpoint = data.get("endpoint") if isinstance(data, dict) else None
    return endpoint if isinstance(endpoint, str) else ""
