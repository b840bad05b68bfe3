"""A fake Web Push service (RFC 8030): subscriptions it makes itself, VAPID checked, every
payload decrypted.

:meth:`FakePushService.subscribe` plays the browser: it makes a P-256 key pair and an auth
secret, keeps the private half and returns the subscription as JSON text (what
``PushSubscription.toJSON()`` gives). ``POST /push/{id}`` then takes a push the way a push
service does: the VAPID ``Authorization`` (an ES256 JWT whose ``aud`` is this service's
origin, ``exp`` in the future and at most 24 hours ahead, a ``sub``, and ``k`` the key the
subscription was made for: 403 otherwise), ``Content-Encoding: aes128gcm``, a ``TTL``, an
``Urgency`` if any and at most 4096 bytes of body; and it decrypts the body with the
subscription's private key, which proves the encryption end to end. Decrypted payloads
(JSON) are in :attr:`FakePushService.messages`.

An unknown subscription answers 404, an :meth:`~FakePushService.expire`\\ d one 410, as
push services do. ``POST /push/subscriptions`` makes a subscription over HTTP (for a person
trying ``notifsvc dev``). Errors have autopush's JSON shape.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import http_ece  # type: ignore[import-untyped]
import jwt
import orjson
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from notifsvc.channels.webpush import (
    MAX_BODY_BYTES,
    WebPushSettings,
    b64url_decode,
    b64url_encode,
    public_key_b64,
)
from notifsvc.config import Secret
from notifsvc.dev.fakes.captured import Delivery, pretty
from notifsvc.dev.fakes.http import HttpFake, Seen, remember
from notifsvc.dev.fakes.script import Reply, Script

SUBJECT = "mailto:push@notifsvc.example"
#: Longest a VAPID JWT may live (RFC 8292 section 2).
MAX_TOKEN_LIFETIME = 86_400
URGENCIES = frozenset({"very-low", "low", "normal", "high"})
_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")
_TTL = re.compile(r"[0-9]{1,10}")


def push_error(status: int, errno: int, message: str) -> Reply:
    """A reply shaped like Mozilla autopush's error body."""
    body = {"code": status, "errno": errno, "error": _REASONS.get(status, "Error")}
    return Reply(status, body | {"message": message})


_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    410: "Gone",
    413: "Payload Too Large",
}


@dataclass
class Subscriber:
    """The browser side of one subscription: what decrypts its pushes."""

    id: str
    text: str  # the subscription JSON handed out
    key: ec.EllipticCurvePrivateKey
    auth: bytes
    application_server_key: str
    expired: bool = False


@dataclass(frozen=True)
class Push:
    """One push the fake took: its subscription, headers and decrypted payload."""

    subscription: str  # the subscription JSON text
    ttl: int
    urgency: str | None
    topic: str | None
    message: dict[str, Any]
    at: float = field(default_factory=time.time)


def vapid_claims(header: str, audience: str, now: float) -> tuple[dict[str, Any], str] | str:
    """The verified claims and ``k`` of an ``Authorization: vapid t=..., k=...`` header, or
    why it is refused."""
    scheme, _, params = header.partition(" ")
    parts: dict[str, str] = {}
    for param in params.split(","):
        name, _, value = param.strip().partition("=")
        parts[name] = value
    token, k = parts.get("t"), parts.get("k")
    if scheme.lower() != "vapid" or not token or not k:
        return "expected Authorization: vapid t=<JWT>, k=<public key>"
    try:
        point = b64url_decode(k)
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        claims = jwt.decode(
            token, public, algorithms=["ES256"], audience=audience, options={"verify_exp": False}
        )
    except (ValueError, jwt.InvalidTokenError) as exc:
        return f"invalid VAPID JWT: {exc}"
    problem = _claims_problem(claims, now)
    return problem if problem is not None else (claims, k)


def _claims_problem(claims: dict[str, Any], now: float) -> str | None:
    exp = claims.get("exp")
    if not isinstance(exp, int):
        return "the JWT has no exp"
    if exp <= now:
        return "the JWT has expired"
    if exp > now + MAX_TOKEN_LIFETIME:
        return "the JWT's exp is more than 24 hours ahead"
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.startswith(("mailto:", "https:")):
        return "the JWT's sub must be a mailto: or https: contact"
    return None


def header_problem(request: web.Request) -> str | None:
    """What is wrong with the push's other headers (RFC 8030 section 5), or None."""
    if request.headers.get("Content-Encoding") != "aes128gcm":
        return "Content-Encoding must be aes128gcm"
    if not _TTL.fullmatch(request.headers.get("TTL", "")):
        return "a TTL header (seconds) is required"
    urgency = request.headers.get("Urgency")
    if urgency is not None and urgency not in URGENCIES:
        return "Urgency must be very-low, low, normal or high"
    topic = request.headers.get("Topic")
    if topic is not None and not _TOPIC.fullmatch(topic):
        return "Topic must be at most 32 base64url characters"
    return None


def content_refusal(request: web.Request, seen: Seen) -> Reply | None:
    """The answer to a push whose headers or size a push service refuses, or None."""
    problem = header_problem(request)
    if problem is not None:
        return push_error(400, 110, problem)
    if len(seen.body) > MAX_BODY_BYTES:
        return push_error(413, 104, f"the body is over {MAX_BODY_BYTES} bytes")
    return None


class FakePushService(HttpFake):
    """``vapid_key``: the application server's key that :meth:`config` hands the channel
    and :meth:`subscribe` subscribes with (a new one by default); ``clock`` (unix seconds)
    judges the JWT's ``exp``."""

    def __init__(
        self,
        *,
        vapid_key: ec.EllipticCurvePrivateKey | None = None,
        clock: Callable[[], float] = time.time,
        script: Script | None = None,
        keep: int | None = None,
    ) -> None:
        super().__init__(script, keep=keep)
        self.vapid_key = vapid_key or ec.generate_private_key(ec.SECP256R1())
        self.clock = clock
        #: The decrypted JSON payload of every push accepted (answered 201).
        self.messages: list[dict[str, Any]] = []
        #: The same pushes with their subscription and headers.
        self.pushes: list[Push] = []
        self.subscribers: dict[str, Subscriber] = {}

    @property
    def application_server_key(self) -> str:
        """The public key browsers subscribe with (and the channel's VAPID ``k``)."""
        return public_key_b64(self.vapid_key)

    def config(self) -> WebPushSettings:
        """The webpush channel's settings that point it at this fake."""
        raw = self.vapid_key.private_numbers().private_value.to_bytes(32, "big")
        return WebPushSettings(
            vapid_private_key=Secret(b64url_encode(raw)),
            vapid_subject=SUBJECT,
            allowed_http_hosts=frozenset({"127.0.0.1"}),
        )

    def subscribe(self, *, application_server_key: str | None = None) -> str:
        """A new subscription's JSON text, as a browser would hand it to its server; pushes
        must be signed with ``application_server_key`` (by default this fake's)."""
        key = ec.generate_private_key(ec.SECP256R1())
        auth = secrets.token_bytes(16)
        sid = secrets.token_urlsafe(16)
        point = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        keys = {"p256dh": b64url_encode(point), "auth": b64url_encode(auth)}
        body = {"endpoint": f"{self.url}/push/{sid}", "expirationTime": None, "keys": keys}
        text = orjson.dumps(body).decode()
        server_key = application_server_key or self.application_server_key
        self.subscribers[sid] = Subscriber(sid, text, key, auth, server_key)
        if self.keep is not None and len(self.subscribers) > self.keep:
            del self.subscribers[next(iter(self.subscribers))]
        return text

    def recipient(self) -> str:
        """A recipient this fake delivers to (for the shared fake tests and benchmarks)."""
        return self.subscribe()

    def expire(self, subscription: str) -> None:
        """From now on, pushes to ``subscription`` (its JSON text) answer 410 Gone."""
        self._subscriber(subscription).expired = True

    def _subscriber(self, subscription: str) -> Subscriber:
        endpoint = str(orjson.loads(subscription)["endpoint"])
        return self.subscribers[endpoint.rsplit("/", 1)[1]]

    def deliveries(self) -> list[Delivery]:
        """What was pushed, decrypted, for the outbox of ``notifsvc dev``."""
        return [_delivery(push) for push in self.pushes]

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/push/subscriptions", self._new_subscription)
        app.router.add_post("/push/{id}", self._push)

    async def _new_subscription(self, _request: web.Request) -> web.Response:
        return web.Response(text=self.subscribe(), status=201, content_type="application/json")

    def _refusal(self, request: web.Request, seen: Seen) -> Reply | None:
        subscriber = self.subscribers.get(request.match_info["id"])
        if subscriber is None:
            return push_error(404, 102, "no such subscription")
        if subscriber.expired:
            return push_error(410, 103, "the subscription has expired")
        verified = vapid_claims(request.headers.get("Authorization", ""), self.url, self.clock())
        if isinstance(verified, str):
            return push_error(401, 109, verified)
        if verified[1] != subscriber.application_server_key:
            return push_error(403, 109, "the VAPID key is not the subscription's")
        return content_refusal(request, seen)

    async def _push(self, request: web.Request) -> web.StreamResponse:
        seen = await self.record(request)
        refused = self._refusal(request, seen)
        if refused is not None:
            return web.json_response(refused.body, status=refused.status)
        scripted = await self.scripted()
        if scripted is not None:
            return scripted
        subscriber = self.subscribers[request.match_info["id"]]
        try:
            plaintext = http_ece.decrypt(
                seen.body,
                private_key=subscriber.key,
                auth_secret=subscriber.auth,
                version="aes128gcm",
            )
            message = orjson.loads(plaintext)
        except (http_ece.ECEException, orjson.JSONDecodeError, ValueError) as exc:
            message = f"cannot decrypt the payload: {exc}"
        if not isinstance(message, dict):
            error = push_error(400, 110, message if isinstance(message, str) else "not an object")
            return web.json_response(error.body, status=error.status)
        self._accept(request, seen, subscriber, message)
        location = f"{self.url}/message/{uuid.uuid4()}"
        return web.Response(status=201, headers={"Location": location})

    def _accept(
        self, request: web.Request, seen: Seen, subscriber: Subscriber, message: dict[str, Any]
    ) -> None:
        headers = request.headers
        push = Push(
            subscriber.text,
            int(headers["TTL"]),
            headers.get("Urgency"),
            headers.get("Topic"),
            message,
        )
        remember(self.messages, message, self.keep)
        remember(self.pushes, push, self.keep)
        self.deliver(seen)


def _delivery(push: Push) -> Delivery:
    message = push.message
    uid, body, title = (message.get(k) for k in ("uuid", "body", "title"))
    return Delivery(
        "webpush",
        push.at,
        push.subscription,
        body if isinstance(body, str) else pretty(message),
        title if isinstance(title, str) else None,
        uid if isinstance(uid, str) else None,
        {"TTL": str(push.ttl), "Urgency": push.urgency or "(none)"},
    )
