"""A fake APNs provider API: HTTP/2 over TLS (hypercorn), token-based auth, Apple's answers.

It serves ``POST /3/device/{token}`` on 127.0.0.1 with a certificate of its own CA (made by
``trustme``; :meth:`FakeApns.config` names the CA file in ``ca_file``) and signs nothing
itself: it makes a P-256 key pair and a key id, hands the private key to the channel
through :meth:`FakeApns.config`, and checks every provider token (ES256, ``kid``, ``iss``,
at most an hour old, changed at most once per 20 minutes on a connection) with the public
one. It checks the topic, the path's device token, the ``apns-*`` headers and the payload
(at most 4,096 bytes, an ``aps`` dictionary), and answers as Apple does: an empty 200 with
``apns-id``, or a status with ``{"reason": ...}``. A request over HTTP/1.1 gets a 400
(Apple speaks only HTTP/2).

``unregistered`` holds device tokens answered 410 ``Unregistered`` (with ``timestamp``);
``script`` fails, throttles or hangs on demand (:func:`apns_error` makes Apple-shaped
replies). ``seen`` holds every request, ``messages`` those delivered, ``provider_tokens``
each distinct provider token accepted. Needs the ``dev`` extra (hypercorn) and trustme.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import orjson
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypercorn.asyncio import serve
from hypercorn.config import Config, Sockets
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope, Scope

from notifsvc.channels.apns import MAX_PAYLOAD_BYTES, ApnsSettings
from notifsvc.config import Secret
from notifsvc.dev.fakes.base import Service
from notifsvc.dev.fakes.captured import Delivery
from notifsvc.dev.fakes.http import remember
from notifsvc.dev.fakes.script import Hang, Reply, Script

log = logging.getLogger(__name__)

TOPIC = "com.example.notifsvc"
TEAM_ID = "TEAM123456"
KEY_ID = "KEY1234567"
DEVICE_TOKEN = "5e1f" * 16
#: Apple refuses a provider token older than this, and a new one sooner than the next.
TOKEN_MAX_AGE = 3600.0
TOKEN_MIN_INTERVAL = 20 * 60.0
PUSH_TYPES = frozenset(
    {"alert", "background", "location", "voip", "complication", "fileprovider", "mdm"}
    | {"liveactivity", "pushtotalk"}
)
_PATH = re.compile(r"/3/device/([^/]*)")
_DEVICE_TOKEN = re.compile(r"(?:[0-9A-Fa-f]{2}){32,100}")
_DIGITS = re.compile(r"[0-9]{1,10}")
_APNS_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: Most bytes of a request body read (APNs itself stops at 4,096 and answers 413).
_MAX_BODY = 64 * 1024
#: Connections whose current provider token is remembered, and verified provider tokens.
_CONNECTIONS = 1024


def apns_error(
    status: int, reason: str, *, retry_after: int | None = None, timestamp: int | None = None
) -> Reply:
    """An answer shaped like APNs' errors: ``{"reason": ...}`` (and ``timestamp``, in ms)."""
    body: dict[str, object] = {"reason": reason}
    if timestamp is not None:
        body["timestamp"] = timestamp
    headers = {} if retry_after is None else {"retry-after": str(retry_after)}
    return Reply(status, body, headers)


@dataclass(frozen=True)
class Push:
    """One request as the fake received it; names of ``headers`` are lower case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    http_version: str
    #: The client's address: one per connection.
    client: tuple[str, int] | None
    at: float = field(default_factory=time.time)  # wall clock

    @property
    def device_token(self) -> str:
        match = _PATH.fullmatch(self.path)
        return match.group(1) if match else ""

    @property
    def payload(self) -> Any:
        """The JSON body, decoded."""
        return orjson.loads(self.body)


class _ClosingSSLObject(ssl.SSLObject):
    """TLS that closes after sending its close_notify, without waiting for the client's.

    An idle HTTP/2 client (httpx reads only while a request waits for its answer) never
    sends one, and asyncio would then hold each such connection, and the fake's stop(), for
    30 seconds."""

    def unwrap(self) -> None:
        with contextlib.suppress(ssl.SSLWantReadError):
            super().unwrap()


class _Config(Config):
    """Hypercorn's configuration, remembering the port its socket was bound to."""

    port = 0

    def create_sockets(self) -> Sockets:
        sockets = super().create_sockets()
        self.port = sockets.secure_sockets[0].getsockname()[1]
        return sockets

    def create_ssl_context(self) -> ssl.SSLContext | None:
        context = super().create_ssl_context()
        if context is not None:
            context.sslobject_class = _ClosingSSLObject
        return context


class FakeApns(Service):
    """``clock`` (wall-clock seconds) judges the provider tokens' age; inject the channel's."""

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        topic: str = TOPIC,
        team_id: str = TEAM_ID,
        key_id: str = KEY_ID,
        script: Script | None = None,
        keep: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.topic, self.team_id, self.key_id = topic, team_id, key_id
        self.script = script if script is not None else Script()
        self.keep = keep
        self.clock = clock
        self.signing_key = ec.generate_private_key(ec.SECP256R1())
        #: Device tokens answered 410 Unregistered.
        self.unregistered: set[str] = set()
        self.seen: list[Push] = []
        self.messages: list[Push] = []
        self.provider_tokens: list[str] = []
        self.port = 0
        self._connections: dict[tuple[str, int] | None, tuple[str, float]] = {}
        self._verified: dict[str, float] = {}  # provider token -> iat: verify each once
        self._files: tempfile.TemporaryDirectory[str] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def ca_file(self) -> Path:
        """The CA certificate (PEM) that signed the server's certificate; set by start()."""
        if self._files is None:
            raise RuntimeError("FakeApns is not started")
        return Path(self._files.name) / "ca.pem"

    @property
    def key_pem(self) -> str:
        """The private key the channel signs with, as the text of a ``.p8`` file."""
        return self.signing_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    def config(self) -> ApnsSettings:
        """The apns channel's settings that point it at this fake."""
        return ApnsSettings(
            api_url=self.url,
            key=Secret(self.key_pem),
            key_id=self.key_id,
            team_id=self.team_id,
            topic=self.topic,
            ca_file=self.ca_file,
        )

    def recipient(self) -> str:
        """A device token this fake delivers to (for the shared fake tests and benchmarks)."""
        return DEVICE_TOKEN

    def deliveries(self) -> list[Delivery]:
        """What was delivered, for the outbox of ``notifsvc dev``."""
        return [_delivery(push) for push in self.messages]

    async def start(self) -> None:
        if self._task is not None:
            return
        self._stopping = asyncio.Event()
        self._files = tempfile.TemporaryDirectory(prefix="notifsvc-fake-apns-")
        config = self._server_config(Path(self._files.name))
        ready = asyncio.Event()

        async def serving() -> None:  # called once every socket listens
            ready.set()
            await self._stopping.wait()

        self._task = asyncio.create_task(serve(self._app, config, shutdown_trigger=serving))
        waiting = asyncio.create_task(ready.wait())
        await asyncio.wait({self._task, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if not ready.is_set():
            await self.stop()
            raise RuntimeError("the fake APNs server did not start")
        self.port = config.port

    async def stop(self) -> None:
        self.script.release()
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            await task
        files, self._files = self._files, None
        if files is not None:
            files.cleanup()

    def _server_config(self, folder: Path) -> _Config:
        ca = trustme.CA()
        cert = ca.issue_cert(self.host, "localhost")
        ca.cert_pem.write_to_path(str(folder / "ca.pem"))
        cert.private_key_pem.write_to_path(str(folder / "key.pem"))
        for i, pem in enumerate(cert.cert_chain_pems):
            pem.write_to_path(str(folder / "cert.pem"), append=i > 0)
        config = _Config()
        config.bind = [f"{self.host}:0"]
        config.certfile, config.keyfile = str(folder / "cert.pem"), str(folder / "key.pem")
        # http/1.1 stays on offer so that such a client gets a readable 400, not a failed
        # handshake; h2 first, as APNs.
        config.alpn_protocols = ["h2", "http/1.1"]
        config.errorlog = log
        config.accesslog = None
        config.graceful_timeout = 1.0
        return config

    # The ASGI application.

    async def _app(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "http":
            body = await _read_body(receive)
            if body is not None:
                reply = await self._handle(scope, body, receive)
                if reply is not None:
                    await _answer(send, reply)

    async def _handle(
        self, scope: HTTPScope, body: bytes, receive: ASGIReceiveCallable
    ) -> Reply | None:
        """The answer to a request, or None for a hanging one: the app never answers it
        (when the fake stops, hypercorn ends the stream with its own 500)."""
        pairs = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]
        headers = dict(pairs)
        push = Push(
            scope["method"], scope["path"], headers, body, scope["http_version"], scope["client"]
        )
        remember(self.seen, push, self.keep)
        refusal = self._refusal(push, len(headers) != len(pairs))
        if refusal is not None:
            return refusal
        step = self.script.next()
        if isinstance(step, Hang):
            await _hang(self.script, receive)
            return None
        if step is not None and not (200 <= step.status < 300 and step.body is None):
            return step
        remember(self.messages, push, self.keep)
        return Reply(200, None, {"apns-id": headers.get("apns-id") or str(uuid.uuid4())})

    def _refusal(self, push: Push, duplicates: bool) -> Reply | None:
        """Apple's answer to a request it would refuse, or None."""
        if push.http_version != "2":
            return apns_error(400, f"HTTP/{push.http_version} is not supported: use HTTP/2")
        if push.method != "POST":
            return apns_error(405, "MethodNotAllowed")
        if not _PATH.fullmatch(push.path):
            return apns_error(404, "BadPath")
        if duplicates:
            return apns_error(400, "DuplicateHeaders")
        return (
            self._auth_refusal(push)
            or self._header_refusal(push)
            or _payload_refusal(push)
            or self._device_refusal(push)
        )

    def _auth_refusal(self, push: Push) -> Reply | None:
        scheme, _, token = push.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return apns_error(403, "MissingProviderToken")
        now = self.clock()
        iat = self._verified_iat(token)
        if iat is None or iat > now + 60:  # not ours, or issued in the future
            return apns_error(403, "InvalidProviderToken")
        if now - iat > TOKEN_MAX_AGE:
            return apns_error(403, "ExpiredProviderToken")
        current = self._connections.get(push.client)
        if current is not None and current[0] != token:
            if now - current[1] < TOKEN_MIN_INTERVAL:
                return apns_error(429, "TooManyProviderTokenUpdates")
            current = None
        if current is None:
            self._connections.pop(push.client, None)
            self._connections[push.client] = (token, now)
            while len(self._connections) > _CONNECTIONS:
                del self._connections[next(iter(self._connections))]
        if token not in self.provider_tokens:
            remember(self.provider_tokens, token, self.keep)
        return None

    def _verified_iat(self, token: str) -> float | None:
        """The ``iat`` of a provider token signed by our key for our team, else None."""
        if token in self._verified:
            return self._verified[token]
        iat = self._verify(token)
        if iat is not None:
            self._verified[token] = iat
            while len(self._verified) > _CONNECTIONS:
                del self._verified[next(iter(self._verified))]
        return iat

    def _verify(self, token: str) -> float | None:
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(
                token,
                self.signing_key.public_key(),
                algorithms=["ES256"],
                options={"verify_iat": False, "require": ["iss", "iat"]},
            )
        except jwt.InvalidTokenError:
            return None
        iat = claims.get("iat")
        if header.get("kid") != self.key_id or claims.get("iss") != self.team_id:
            return None
        if not isinstance(iat, int) or isinstance(iat, bool):
            return None
        return float(iat)

    def _header_refusal(self, push: Push) -> Reply | None:
        h = push.headers
        checks = (
            ("MissingTopic", not h.get("apns-topic")),
            ("TopicDisallowed", h.get("apns-topic") != self.topic),
            ("InvalidPushType", h.get("apns-push-type", "alert") not in PUSH_TYPES),
            ("BadPriority", h.get("apns-priority", "10") not in {"10", "5", "1"}),
            ("BadExpirationDate", not _DIGITS.fullmatch(h.get("apns-expiration", "0"))),
            ("BadMessageId", not _APNS_ID.fullmatch(h.get("apns-id", str(uuid.uuid4())))),
            ("BadCollapseId", len(h.get("apns-collapse-id", "").encode()) > 64),
        )
        reason = next((reason for reason, bad in checks if bad), None)
        return None if reason is None else apns_error(400, reason)

    def _device_refusal(self, push: Push) -> Reply | None:
        token = push.device_token
        if not token:
            return apns_error(400, "MissingDeviceToken")
        if not _DEVICE_TOKEN.fullmatch(token):
            return apns_error(400, "BadDeviceToken")
        if token in self.unregistered:
            return apns_error(410, "Unregistered", timestamp=int(self.clock() * 1000))
        return None


def _payload_refusal(push: Push) -> Reply | None:
    if not push.body:
        return apns_error(400, "PayloadEmpty")
    if len(push.body) > MAX_PAYLOAD_BYTES:
        return apns_error(413, "PayloadTooLarge")
    try:
        data = push.payload
    except orjson.JSONDecodeError:
        data = None
    aps = data.get("aps") if isinstance(data, dict) else None
    alerting = push.headers.get("apns-push-type", "alert") == "alert"
    if not isinstance(aps, dict) or (alerting and "alert" not in aps):
        return apns_error(400, "BadPayload")  # the fake's own word: Apple's is not documented
    return None


async def _lifespan(receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    while True:
        event = await receive()
        if event["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif event["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _hang(script: Script, receive: ASGIReceiveCallable) -> None:
    """Wait until the fake stops or the client resets the request.

    Answering once released could stall hypercorn's shutdown (a stream the client gave up
    on, on a connection whose close the server has not read yet), so nothing is sent."""
    waits = {asyncio.ensure_future(script.hang()), asyncio.ensure_future(_disconnect(receive))}
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in waits:
        task.cancel()


async def _disconnect(receive: ASGIReceiveCallable) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _read_body(receive: ASGIReceiveCallable) -> bytes | None:
    """The request body (at most :data:`_MAX_BODY` bytes), or None if the client left."""
    body = b""
    while True:
        event = await receive()
        if event["type"] != "http.request":
            return None
        body = (body + event["body"])[:_MAX_BODY]
        if not event["more_body"]:
            return body


async def _answer(send: ASGISendCallable, reply: Reply) -> None:
    if reply.body is None:
        body = b""
    elif isinstance(reply.body, str):
        body = reply.body.encode()
    else:
        body = orjson.dumps(reply.body)
    headers: Iterable[tuple[bytes, bytes]] = [
        (k.lower().encode(), v.encode()) for k, v in reply.headers.items()
    ]
    if body:
        headers = [*headers, (b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _delivery(push: Push) -> Delivery:
    aps = push.payload.get("aps", {})
    alert = aps.get("alert") if isinstance(aps, dict) else None
    alert = alert if isinstance(alert, dict) else {"body": str(alert or "")}
    details = {k: v for k, v in push.headers.items() if k.startswith("apns-") and k != "apns-id"}
    title = alert.get("title")
    return Delivery(
        "apns",
        push.at,
        push.device_token,
        str(alert.get("body", "")),
        str(title) if title is not None else None,
        push.headers.get("apns-id"),
        details,
    )
