"""``fcm``: push to Android, iOS and web apps through Firebase Cloud Messaging (HTTP v1 API).

``POST {NOTIFSVC_FCM_API_URL}/v1/projects/{project_id}/messages:send`` with
``Authorization: Bearer <access token>`` and the JSON body::

    {"message": {"token": to,
                 "notification": {"title": subject, "body": txt},
                 "data": {"uuid": "<the notification's uuid>"},
                 "android": {"priority": "HIGH" | "NORMAL"},
                 "apns": {"headers": {"apns-priority": "10" | "5"}}}}

``title`` is left out without a subject; priority ``high`` is ``HIGH``/``10``, ``normal`` and
``low`` are ``NORMAL``/``5``. ``data.uuid`` lets the app drop a repeated push (a send whose
answer was lost is sent again). A notification with ``expires_at`` tells FCM how long it may
still be kept for an offline device, for every platform the token may be: ``android.ttl``
(the whole seconds left, e.g. ``"42s"``; ``"0s"``: now or never), ``apns.headers``
``apns-expiration`` (``expires_at`` as Unix seconds) and ``webpush.headers`` ``TTL`` (the
seconds left). Without it FCM keeps a message up to its default of four weeks.

The access token is an OAuth2 token of the service account whose key file
``NOTIFSVC_FCM_CREDENTIALS`` holds (or ``NOTIFSVC_FCM_CREDENTIALS_FILE`` names): google-auth
signs a JWT with the key and trades it at the key's ``token_uri``. :class:`AccessTokens`
refreshes it before it expires, one refresh at a time, in a thread (google-auth is blocking).

``to`` is a registration token: :data:`MIN_TOKEN_CHARS` to :data:`MAX_TOKEN_CHARS` characters
of ``A-Z a-z 0-9 _ - :``. FCM does not publish a format; the tokens it issues are about 150
to 200 characters of URL-safe base64 with one ``:`` (``<instance id>:APA91b...``). The floor
refuses what is certainly not one (an APNs device token is 64 hex digits); the ceiling only
bounds the work. The payload (``notification`` and ``data``, keys and values, in UTF-8) must
fit FCM's 4,096 bytes: :meth:`FcmChannel.validate` says so on ``txt`` or ``subject``.

Failures: ``UNREGISTERED`` (404), ``SENDER_ID_MISMATCH`` (403) and an ``INVALID_ARGUMENT``
(400) about the registration token are :class:`PermanentError` with reason ``token_invalid``
(the client should delete the token); 429 and ``QUOTA_EXCEEDED`` are :class:`Throttled`,
honouring ``Retry-After``; 5xx (``UNAVAILABLE``, ``INTERNAL``) and 401 are
:class:`TransientError` (a 401 also drops the cached access token, so that the next try
fetches a new one); other 4xx are :class:`PermanentError`. A token endpoint that cannot be
reached or refuses the key is a :class:`TransientError`: the fault is the deployment's, not
the notification's.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import datetime
import functools
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Final, Protocol, cast
from urllib.parse import quote

import google.auth.transport.requests
import msgspec
import orjson
from cryptography.hazmat.primitives import serialization
from google.oauth2 import service_account

from notifsvc.channels.base import (
    DeliveryError,
    PermanentError,
    Receipt,
    Throttled,
    TransientError,
)
from notifsvc.channels.http import (
    DETAIL_CHARS,
    Answer,
    HttpChannel,
    Request,
    base_url_problem,
    classify_status,
    json_field,
    parse_retry_after,
)
from notifsvc.config import Secret, Section, Settings, setting
from notifsvc.model import FieldError, Notification, Priority, Reason, uuid_text

log = logging.getLogger(__name__)

#: The OAuth2 scope of the FCM HTTP v1 API.
SCOPE: Final = "https://www.googleapis.com/auth/firebase.messaging"
MIN_TOKEN_CHARS: Final = 100
MAX_TOKEN_CHARS: Final = 4_096
TOKEN = re.compile(f"[A-Za-z0-9_:-]{{{MIN_TOKEN_CHARS},{MAX_TOKEN_CHARS}}}")
#: FCM's limit on a message's payload: ``notification`` and ``data``, keys and values.
MAX_PAYLOAD_BYTES: Final = 4_096
#: A Google Cloud project ID, and the older ``domain:project`` form.
PROJECT_ID = re.compile(r"[a-z][a-z0-9.:-]{0,98}[a-z0-9]")
#: Fields a service-account key file must have, as strings.
KEY_FIELDS: Final = ("client_email", "private_key", "token_uri")

#: Refresh the access token when fewer than this many seconds remain (or half its lifetime).
REFRESH_MARGIN: Final = 300.0
#: A token this close to its expiry is not used any more, even when a refresh failed.
EXPIRY_SLACK: Final = 30.0
#: After a failed early refresh, the current token is used this long before trying again.
REFRESH_RETRY: Final = 10.0
#: The lifetime assumed when the token endpoint gives none (Google's tokens last an hour).
DEFAULT_LIFETIME: Final = 3_600.0

_ANDROID_PRIORITY = {Priority.HIGH: "HIGH", Priority.NORMAL: "NORMAL", Priority.LOW: "NORMAL"}
_APNS_PRIORITY = {Priority.HIGH: "10", Priority.NORMAL: "5", Priority.LOW: "5"}
#: FcmError codes that mean the registration token is no use any more.
_TOKEN_GONE = frozenset({"UNREGISTERED", "SENDER_ID_MISMATCH"})
_FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"

#: The access token of the send under way, for :meth:`FcmChannel.request` (per task).
_BEARER: contextvars.ContextVar[str] = contextvars.ContextVar("fcm_bearer")


# --- settings ------------------------------------------------------------------------------


def _key_object(raw: str) -> dict[str, Any] | str:
    """The key file's JSON object, or why it is not one."""
    try:
        info = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "is not JSON (expected the content of a service-account key file)"
    if not isinstance(info, dict):
        return "is not a JSON object (expected the content of a service-account key file)"
    return info


def key_file_problem(raw: str) -> str | None:
    """Why ``raw`` is not a service-account key file's JSON, or None. Never quotes a value."""
    info = _key_object(raw)
    if isinstance(info, str):
        return info
    if info.get("type") != "service_account":
        return 'is not a service-account key (its "type" must be "service_account")'
    missing = [k for k in KEY_FIELDS if not isinstance(info.get(k), str) or not info[k]]
    if missing:
        return f"has no {', '.join(missing)}"
    if base_url_problem("token_uri", info["token_uri"]) is not None:
        return "has a token_uri that is not an http(s) URL"
    project = info.get("project_id")
    if project is not None and (not isinstance(project, str) or not PROJECT_ID.fullmatch(project)):
        return "has a project_id that is not a Google Cloud project ID"
    return None


def as_key_file(raw: str) -> Secret:
    """The parser of ``NOTIFSVC_FCM_CREDENTIALS``: the key file's JSON, its key loaded once to
    prove it readable (errors name what is wrong, never a value)."""
    problem = key_file_problem(raw)
    if problem is not None:
        raise ValueError(problem)
    pem = orjson.loads(raw)["private_key"].encode()
    try:
        serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise ValueError("has a private_key that is not an unencrypted PEM key") from None
    return Secret(raw.strip())


def as_project_id(raw: str) -> str:
    value = raw.strip()
    if not PROJECT_ID.fullmatch(value):
        raise ValueError("expected a Google Cloud project ID such as my-app-1234")
    return value


@dataclasses.dataclass(frozen=True)
class FcmSettings(Section, prefix="fcm"):
    """The Firebase project's service account."""

    credentials: Secret | None = setting(
        None,
        as_key_file,
        secret=True,
        doc="the text of the Firebase service account's JSON key file",
    )
    project_id: str | None = setting(
        None, as_project_id, doc="the Firebase project (default: the key file's `project_id`)"
    )
    api_url: str = setting("https://fcm.googleapis.com", str, doc="FCM HTTP v1 API base URL")

    def key_file(self) -> dict[str, Any]:
        """The key file's fields (the settings must be enabled: see :meth:`disabled_reason`)."""
        assert self.credentials is not None
        info: dict[str, Any] = orjson.loads(self.credentials.reveal())
        return info

    def project(self) -> str:
        """The project messages are sent in: ``project_id``, else the key file's."""
        return self.project_id or str(self.key_file().get("project_id") or "")

    def disabled_reason(self) -> str | None:
        missing = self.missing("credentials")
        if missing is not None or self.credentials is None:
            return missing
        problem = key_file_problem(self.credentials.reveal())
        if problem is not None:
            return f"{self.env_name('credentials')} {problem}"
        if not self.project():
            return (
                f"{self.env_name('project_id')} is not set and "
                f"{self.env_name('credentials')} has no project_id"
            )
        return base_url_problem(self.env_name("api_url"), self.api_url)


# --- the message ---------------------------------------------------------------------------


def notification_of(notification: Notification) -> dict[str, str]:
    """The ``notification`` object: ``title`` (only with a subject) and ``body``."""
    shown = {"title": notification.subject} if notification.subject else {}
    return shown | {"body": notification.txt}


def data_of(notification: Notification) -> dict[str, str]:
    return {"uuid": uuid_text(notification.uuid)}


def payload_bytes(notification: Notification) -> int:
    """The size FCM limits: the keys and values of ``notification`` and ``data``, in UTF-8."""
    parts = notification_of(notification) | data_of(notification)
    return sum(len(k.encode()) + len(v.encode()) for k, v in parts.items())


def message_of(notification: Notification, now: float | None = None) -> dict[str, Any]:
    """The ``message`` of a ``messages:send`` request sent at ``now`` (unix seconds, default
    the wall clock: only a notification with ``expires_at`` needs it)."""
    android: dict[str, Any] = {"priority": _ANDROID_PRIORITY[notification.priority]}
    apns = {"apns-priority": _APNS_PRIORITY[notification.priority]}
    message = {
        "token": notification.to,
        "notification": notification_of(notification),
        "data": data_of(notification),
        "android": android,
        "apns": {"headers": apns},
    }
    expires_at = notification.expires_at
    if expires_at is not None:
        left = notification.seconds_left(time.time() if now is None else now)
        android["ttl"] = f"{left}s"
        apns["apns-expiration"] = str(math.floor(expires_at))
        message["webpush"] = {"headers": {"TTL": str(left)}}
    return message


# --- answers -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class FcmFailure:
    """What an error answer's ``{"error": {...}}`` says."""

    status: str  # the canonical code: NOT_FOUND, INVALID_ARGUMENT, ...
    message: str
    error_code: str | None  # the FcmError detail's: UNREGISTERED, QUOTA_EXCEEDED, ...
    fields: tuple[str, ...]  # the BadRequest detail's field violations

    @property
    def summary(self) -> str:
        return f"{self.error_code or self.status or 'error'}: {self.message}"

    def token_invalid(self, http_status: int) -> bool:
        """Whether the registration token is the cause (the client should delete it)."""
        if self.error_code in _TOKEN_GONE:
            return True
        invalid = http_status == 400 and self.error_code in {None, "INVALID_ARGUMENT"}
        named = "message.token" in self.fields or "registration token" in self.message.lower()
        return invalid and named


def _details(error: Mapping[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    code: str | None = None
    fields: list[str] = []
    details = error.get("details")
    for detail in details if isinstance(details, list) else ():
        kind = detail.get("@type") if isinstance(detail, dict) else None
        if kind == _FCM_ERROR and isinstance(detail.get("errorCode"), str):
            code = detail["errorCode"]
        elif kind == _BAD_REQUEST and isinstance(detail.get("fieldViolations"), list):
            fields += [
                str(v.get("field")) for v in detail["fieldViolations"] if isinstance(v, dict)
            ]
    return code, tuple(fields)


def parse_failure(text: str) -> FcmFailure | None:
    """The error of an answer's body, or None when it is not FCM's error JSON."""
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    code, fields = _details(error)
    status, message = error.get("status"), error.get("message")
    return FcmFailure(
        status if isinstance(status, str) else "",
        message if isinstance(message, str) else "",
        code,
        fields,
    )


def classify_response(status: int, headers: Mapping[str, str], text: str) -> DeliveryError | None:
    """None when FCM took the message, otherwise the error its answer means."""
    failure = parse_failure(text)
    error = classify_status("fcm", status, headers, failure.summary if failure else text)
    if error is None:
        return None
    retry_after = parse_retry_after(headers.get("Retry-After"))
    if failure is not None and failure.token_invalid(status):
        return PermanentError(str(error), reason=Reason.TOKEN_INVALID)
    if failure is not None and failure.error_code == "QUOTA_EXCEEDED":
        return Throttled(str(error), retry_after=retry_after)
    if status == 401:  # an expired or revoked access token, or FCM's APNs/Web Push key
        return TransientError(str(error), retry_after=retry_after)
    return error


# --- access tokens -------------------------------------------------------------------------


class Refreshable(Protocol):
    """What :class:`AccessTokens` uses of google-auth's credentials."""

    token: str | None
    expiry: datetime.datetime | None

    def refresh(self, request: Any) -> None: ...


def credentials_of(config: FcmSettings) -> Refreshable:
    """google-auth's service-account credentials for ``config`` (parses the key: no I/O)."""
    make = service_account.Credentials.from_service_account_info
    credentials = make(config.key_file(), scopes=[SCOPE])  # type: ignore[no-untyped-call]
    return cast(Refreshable, credentials)


def _seconds_left(expiry: datetime.datetime | None) -> float:
    """Seconds until ``expiry`` (google-auth's naive UTC datetime)."""
    if expiry is None:
        return DEFAULT_LIFETIME
    if expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=datetime.UTC)
    return (expiry - datetime.datetime.now(datetime.UTC)).total_seconds()


class AccessTokens:
    """The service account's access token, refreshed before it expires.

    :meth:`get` answers the cached token until fewer than :data:`REFRESH_MARGIN` seconds (or
    half its lifetime) remain on ``clock`` (monotonic seconds); then the next caller starts
    a refresh and concurrent callers wait for that same one. A refresh that fails while the
    token is still good leaves it in use. Failures are :class:`TransientError`.
    """

    def __init__(
        self,
        credentials: Refreshable,
        *,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self._credentials = credentials
        self._timeout = timeout
        self._clock = clock
        self._secrets = secrets  # scrubbed from the text of a failed refresh
        self._transport = google.auth.transport.requests.Request()
        self._token: str | None = None
        self._expires_at = 0.0
        self._refresh_at = 0.0
        self._pending: asyncio.Task[str] | None = None
        #: Completed refreshes (for tests and logs).
        self.refreshes = 0

    def usable(self) -> str | None:
        """The cached token while it is not about to expire."""
        if self._token is not None and self._clock() < self._expires_at - EXPIRY_SLACK:
            return self._token
        return None

    async def get(self) -> str:
        """A token to send with; raises :class:`TransientError` when none can be had."""
        if self._token is not None and self._clock() < self._refresh_at:
            return self._token
        try:
            return await self._refreshed()
        except TransientError as exc:
            token = self.usable()
            if token is None:
                raise
            self._refresh_at = min(self._clock() + REFRESH_RETRY, self._expires_at - EXPIRY_SLACK)
            log.warning("fcm access token refresh failed, the current one is kept: %s", exc)
            return token

    def drop(self, token: str) -> None:
        """FCM refused ``token`` (401): fetch a new one next time."""
        if token == self._token:
            self._token = None
            self._refresh_at = self._expires_at = 0.0

    async def close(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()  # the thread finishes on its own, bounded by the timeout
            with contextlib.suppress(asyncio.CancelledError, DeliveryError):
                await pending
        self._transport.session.close()

    async def _refreshed(self) -> str:
        if self._pending is None:
            self._pending = asyncio.create_task(self._refresh())
            self._pending.add_done_callback(self._settled)
        try:
            return await asyncio.wait_for(asyncio.shield(self._pending), self._timeout)
        except TimeoutError:
            raise TransientError(f"fcm access token request timed out ({self._timeout}s)") from None
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # this send is cancelled, not just the refresh (by close())
            raise TransientError("fcm channel stopped while fetching an access token") from None

    def _settled(self, task: asyncio.Task[str]) -> None:
        if task is self._pending:
            self._pending = None
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have timed out

    async def _refresh(self) -> str:
        started = self._clock()
        try:
            token, lifetime = await asyncio.to_thread(self._refresh_blocking)
        except Exception as exc:  # noqa: BLE001 - google-auth's errors, or a malformed answer
            raise TransientError(self._failure(exc)) from None
        self._token = token
        self._expires_at = started + lifetime
        self._refresh_at = self._expires_at - min(REFRESH_MARGIN, lifetime / 2)
        self.refreshes += 1
        log.debug("fcm access token refreshed, valid for %.0fs", lifetime)
        return token

    def _refresh_blocking(self) -> tuple[str, float]:
        request = functools.partial(self._transport, timeout=self._timeout)
        self._credentials.refresh(request)
        token = self._credentials.token
        if not token:
            raise ValueError("the token endpoint answered without an access token")
        return token, _seconds_left(self._credentials.expiry)

    def _failure(self, exc: BaseException) -> str:
        detail = str(exc.args[0]) if exc.args else ""
        for secret in (*self._secrets, self._token or ""):
            if secret:
                detail = detail.replace(secret, "[redacted]")
        shown = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        return f"fcm could not get an access token: {shown[:DETAIL_CHARS]}"


# --- the channel ---------------------------------------------------------------------------


class FcmChannel(HttpChannel[FcmSettings]):
    name = "fcm"
    Config = FcmSettings
    fake = "notifsvc.dev.fakes.fcm:FakeFcm"
    push = True
    #: Leaves room for a subject and ``data`` within :data:`MAX_PAYLOAD_BYTES` (ASCII text).
    max_body_chars = 4_000
    recipient_pattern: ClassVar[str] = f"^{TOKEN.pattern}$"

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """``clock``: monotonic seconds, by which access tokens expire; ``wall``: unix
        seconds, by which a notification's remaining time to live is counted (tests inject
        both)."""
        super().__init__(settings)
        self._clock = clock
        self._wall = wall
        self.tokens: AccessTokens | None = None

    def validate_recipient(self, to: str) -> list[FieldError]:
        if TOKEN.fullmatch(to):
            return []
        return [
            FieldError(
                "to",
                f"must be an FCM registration token: {MIN_TOKEN_CHARS} to {MAX_TOKEN_CHARS} "
                "characters of A-Z, a-z, 0-9, '_', '-' and ':'",
            )
        ]

    def validate(self, notification: Notification) -> list[FieldError]:
        errors = super().validate(notification)
        size = payload_bytes(notification)
        if size <= MAX_PAYLOAD_BYTES or any(e.field == "txt" for e in errors):
            return errors
        limit = f"FCM takes at most {MAX_PAYLOAD_BYTES} bytes (keys and values, UTF-8)"
        untitled = msgspec.structs.replace(notification, subject=None)
        if notification.subject and payload_bytes(untitled) <= MAX_PAYLOAD_BYTES:
            return [
                *errors,
                FieldError("subject", f"and txt make a payload of {size} bytes; {limit}"),
            ]
        return [*errors, FieldError("txt", f"makes a payload of {size} bytes; {limit}")]

    async def start(self) -> None:
        timeout = self.settings.send_timeout_ms / 1000
        await super().start()
        if self.tokens is None:
            key = str(self.config.key_file().get("private_key", ""))
            self.tokens = AccessTokens(
                credentials_of(self.config), timeout=timeout, clock=self._clock, secrets=(key,)
            )

    async def stop(self) -> None:
        tokens, self.tokens = self.tokens, None
        if tokens is not None:
            await tokens.close()
        await super().stop()

    async def send(self, notification: Notification) -> Receipt | None:
        tokens = self.tokens
        if self._session is None or tokens is None:
            raise TransientError("fcm channel is not started")
        bearer = _BEARER.set(await tokens.get())
        try:
            return await super().send(notification)
        finally:
            _BEARER.reset(bearer)

    def message_id(self, answer: Answer) -> str | None:
        """FCM's name for the message (``projects/<id>/messages/<id>``)."""
        return json_field(answer.body, "name")

    def url(self) -> str:
        project = quote(self.config.project(), safe=":")
        return f"{self.config.api_url.rstrip('/')}/v1/projects/{project}/messages:send"

    def build_request(self, notification: Notification, access_token: str) -> Request:
        body = orjson.dumps({"message": message_of(notification, self._wall())})
        headers = {
            "Authorization": f"Bearer {access_token}",
            "Content-Type": "application/json; charset=UTF-8",
        }
        return Request(self.url(), body, headers, "fcm", secrets=(access_token,))

    def request(self, notification: Notification) -> Request:
        token = _BEARER.get(None)
        if token is None:
            raise TransientError("fcm has no access token for this send")
        return self.build_request(notification, token)

    def classify(self, answer: Answer, request: Request) -> DeliveryError | None:
        if answer.status == 401 and self.tokens is not None:
            self.tokens.drop(request.secrets[0])
        return classify_response(answer.status, answer.headers, answer.text)
