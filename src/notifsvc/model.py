"""The notification, its validation from client JSON and its wire format on the topics."""

from __future__ import annotations

import hashlib
import math
import re
import time
import uuid as uuid_mod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import msgspec
import orjson


class Priority(StrEnum):
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class State(StrEnum):
    """A notification row's state: received -> forwarded -> sending -> sent | failed;
    received | forwarded -> canceled (an operator's DELETE); failed -> forwarded (a retry or
    replay); sending -> forwarded (a transient failure: the row waits in the retry lane);
    received -> scheduled -> forwarded (a ``send_at`` in the future, now due); any unfinished
    state -> expired (its ``expires_at`` passed before it was sent); scheduled -> canceled."""

    RECEIVED = "received"
    #: Waiting for its ``send_at`` in a delay tier (or, far ahead, in the database).
    SCHEDULED = "scheduled"
    FORWARDED = "forwarded"
    #: A notificator claimed it (:meth:`notifsvc.db.store.Store.claim`): it may be sent now.
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    #: Canceled before anything was sent; never sent afterwards.
    CANCELED = "canceled"
    #: Its ``expires_at`` passed before it was sent; never sent afterwards.
    EXPIRED = "expired"


class Reason(StrEnum):
    """Why a notification failed, where a client can act on it: the code a failure's text
    (``last_error``) starts with, shown as ``reason`` by ``GET /notification/{uuid}``."""

    #: The provider kept throttling past ``NOTIFSVC_THROTTLE_BUDGET_SECONDS``.
    THROTTLED = "throttled"
    #: The device token or push subscription is no longer valid: delete it.
    TOKEN_INVALID = "token_invalid"  # noqa: S105 - a failure code, not a credential
    #: It stayed unfinished longer than ``NOTIFSVC_REDRIVE_EXPIRE_SECONDS``.
    EXPIRED_UNFINISHED = "expired_unfinished"


def reason_of(error: str | None) -> Reason | None:
    """The :class:`Reason` a failure's text starts with, if any."""
    if not error:
        return None
    code = error.split(":", 1)[0].split(" ", 1)[0]
    try:
        return Reason(code)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class FieldError:
    """One failing field of a request, in the shape of an RFC 9457 extension member."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class InvalidNotification(ValueError):
    """A request or a message that does not describe a valid notification."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))


#: Latest ``accepted_at`` taken from a topic (2100-01-01): later is not a clock reading.
MAX_ACCEPTED_AT = 4_102_444_800.0
#: Unix seconds as a topic message may carry them (checked where msgspec decodes one).
_WireTime = Annotated[float, msgspec.Meta(ge=0, le=MAX_ACCEPTED_AT)]


class Notification(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One notification. A msgspec struct: built in C, and decoded straight from the bytes
    of a topic message (the router and every notificator decode each one; see
    :meth:`decode`). Its JSON names are those of the wire (``destination`` for ``channel``);
    the ranges of its times are checked only when it is decoded."""

    uuid: uuid_mod.UUID
    channel: str = msgspec.field(name="destination")
    to: str
    txt: str
    subject: str | None = None
    priority: Priority = Priority.NORMAL
    accepted_at: _WireTime = 0.0  # unix seconds, set by the receiver
    #: Where status-callback events go (notifsvc/events.py), if anywhere.
    callback_url: str | None = None
    #: The id of the API key that posted it (its callback secrets), set by the receiver.
    client: str | None = None
    #: Unix seconds before which it must not be sent (None: now).
    send_at: _WireTime | None = None
    #: Unix seconds after which it must never be sent (None: never expires).
    expires_at: _WireTime | None = None

    @property
    def due_at(self) -> float:
        """When its delivery began: its ``send_at`` when it was scheduled, else its
        acceptance (budgets of age count from here, not from the wait for ``send_at``)."""
        return max(self.accepted_at, self.send_at or 0.0)

    def expired(self, now: float) -> bool:
        """Whether it may no longer be sent at ``now`` (unix seconds)."""
        return self.expires_at is not None and now >= self.expires_at

    def seconds_left(self, now: float) -> int | None:
        """Whole seconds from ``now`` until ``expires_at`` (0 once past; None: no expiry),
        for a push service's time to live."""
        return None if self.expires_at is None else max(0, math.floor(self.expires_at - now))

    def encode(self) -> bytes:
        """The value written to Kafka: compact JSON, the same shape on every topic."""
        value = wire_value(
            uuid=uuid_text(self.uuid),
            channel=self.channel,
            to=self.to,
            txt=self.txt,
            subject=self.subject,
            priority=self.priority,
            at=self.accepted_at,
        )
        if self.callback_url is not None:
            value["callback_url"] = self.callback_url
        if self.client is not None:
            value["client"] = self.client
        if self.send_at is not None:
            value["send_at"] = self.send_at
        if self.expires_at is not None:
            value["expires_at"] = self.expires_at
        return orjson.dumps(value)

    @property
    def key(self) -> bytes:
        """The Kafka key: the UUID's canonical text."""
        return uuid_bytes(self.uuid)

    def fingerprint(self) -> bytes:
        """A digest of what the client asked for, to tell a retry from a conflicting re-post."""
        # Each part followed by a NUL, hashed in one call (the same digest as one update per
        # part and NUL, which it replaced: see unit/test_model.py).
        parts = (self.channel, self.to, self.txt, self.subject or "", self.priority.value, "")
        text = "\x00".join(parts)
        if self.send_at is not None:  # (a notification without one keeps its old digest)
            text += f"send_at={self.send_at!r}"
        return hashlib.sha256(text.encode()).digest()

    @classmethod
    def decode(cls, raw: bytes | None) -> Notification:
        """Parse a Kafka value; raises :class:`InvalidNotification` for anything malformed."""
        if raw is None:
            raise InvalidNotification([FieldError("", "message has no value")])
        plain = _decode_plain(raw)
        if plain is not None:
            return plain
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidNotification([FieldError("", f"not JSON: {exc}")]) from exc
        return parse(data, accepted_at=_accepted_at(data))


def wire_value(
    *,
    uuid: str,
    channel: str,
    to: str,
    txt: str,
    subject: str | None,
    priority: Priority,
    at: float,
) -> dict[str, Any]:
    """What :meth:`Notification.encode` writes of every notification (the optional fields
    follow); also the receiver's, which encodes an ordinary request without building a
    :class:`Notification` (``notifsvc.api.validation.Validator.plain_record``)."""
    return {
        "uuid": uuid,
        "destination": channel,
        "to": to,
        "txt": txt,
        "subject": subject,
        "priority": priority.value,
        "accepted_at": at,
    }


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of the request body; validation and the OpenAPI document both read these."""

    name: str
    required: bool
    description: str
    enum: tuple[str, ...] | None = None
    format: str | None = None
    example: str | int | None = None
    #: Its JSON type: ``string`` (``format`` says which, e.g. ``date-time``) or ``integer``.
    kind: str = "string"


REQUEST_FIELDS = (
    FieldSpec(
        "uuid",
        True,
        "Client-generated idempotency key: a retry must reuse it.",
        format="uuid",
        example="0b5d7a4e-3f1c-4c39-9d3e-2f4d1c1b9a77",
    ),
    FieldSpec("destination", True, "Channel name, case-insensitive.", example="EMAIL"),
    FieldSpec("to", True, "Recipient; its format is the channel's.", example="ops@example.com"),
    FieldSpec(
        "txt", True, "Message body; the channel sets its maximum length.", example="Disk full"
    ),
    FieldSpec(
        "subject",
        False,
        "Subject line (email; slack shows it bold; webhook passes it on; sms ignores it).",
        example="Alert",
    ),
    FieldSpec(
        "priority",
        False,
        "Delivery priority (default normal).",
        enum=tuple(p.value for p in Priority),
        example="high",
    ),
    FieldSpec(
        "callback_url",
        False,
        "Where signed status events (notification.sent, .failed, .attempt_failed) are POSTed; "
        "an http(s) URL on a host of NOTIFSVC_CALLBACK_ALLOWED_HOSTS.",
        format="uri",
    ),
    FieldSpec(
        "send_at",
        False,
        "When to send it: an RFC 3339 time with an offset, at most "
        "NOTIFSVC_SCHEDULE_HORIZON_SECONDS ahead, not more than "
        "NOTIFSVC_SCHEDULE_TOLERANCE_SECONDS in the past (default: now).",
        format="date-time",
    ),
    FieldSpec(
        "expires_at",
        False,
        "After when it must never be sent (RFC 3339, with an offset): later than send_at "
        "and than now; not together with ttl_seconds.",
        format="date-time",
    ),
    FieldSpec(
        "ttl_seconds",
        False,
        "Seconds after send_at (or after acceptance) when it must never be sent; "
        "not together with expires_at.",
        kind="integer",
        example=300,
    ),
)
FIELDS = tuple(f.name for f in REQUEST_FIELDS)
_REQUIRED = tuple(f.name for f in REQUEST_FIELDS if f.required)
#: The fields a request writes as JSON strings of text (not times, not numbers).
_TEXTS = tuple(f.name for f in REQUEST_FIELDS if f.kind == "string" and f.format != "date-time")
_INTERNAL = ("accepted_at", "client")
#: Times a topic message carries as unix seconds (a request writes them as RFC 3339).
_WIRE_TIMES = ("send_at", "expires_at")
#: A request's ``ttl_seconds`` at most (ten years); a topic message carries ``expires_at``.
MAX_TTL_SECONDS = 315_360_000


def _accepted_at(data: Any) -> float:
    """The internal ``accepted_at`` of a message read from a topic (0.0 when absent)."""
    value = data.get("accepted_at") if isinstance(data, dict) else None
    if value is None:
        return 0.0
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not 0 <= value <= MAX_ACCEPTED_AT:
        why = f"must be unix seconds between 0 and {MAX_ACCEPTED_AT:.0f}"
        raise InvalidNotification([FieldError("accepted_at", why)])
    return float(value)


#: Writes a UUID as JSON: its canonical text in quotes, in C.
_UUID_JSON = msgspec.json.Encoder()


def uuid_bytes(uid: uuid_mod.UUID) -> bytes:
    """``str(uid).encode()`` in a quarter of the time (``UUID.__str__`` is Python code, and
    the receiver, the router and every notificator write a UUID's text per notification)."""
    return _UUID_JSON.encode(uid)[1:-1]


def uuid_text(uid: uuid_mod.UUID) -> str:
    """``str(uid)``, as :func:`uuid_bytes` writes it."""
    return uuid_bytes(uid).decode()


#: What :meth:`Notification.encode` may write.
_WIRE = frozenset(FIELDS + _INTERNAL) - {"ttl_seconds"}
#: Reads a message in the very shape :meth:`Notification.encode` writes.
_PLAIN = msgspec.json.Decoder(Notification)


def _decode_plain(raw: bytes) -> Notification | None:
    """A message in the very shape :meth:`Notification.encode` writes, decoded by msgspec
    in one pass, without :func:`parse`'s lists of errors (the router and every notificator
    decode each message); None for anything else, which :func:`parse` then judges, so a
    message decodes exactly as it would through :func:`parse` alone. msgspec checks the
    field types, the times' ranges, the priority (a value of its enum) and the UUID; the
    rest of the rules are checked here: no NUL in a text, a channel already normalised, a
    client id not empty."""
    try:
        n = _PLAIN.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):  # (msgspec's ValidationError too)
        return None
    texts = (n.channel, n.to, n.txt, n.subject or "", n.callback_url or "", n.client or "")
    if "\x00" in "".join(texts) or n.client == "":
        return None
    return n if n.channel == n.channel.strip().lower() else None


def _wire_time(data: dict[str, Any], name: str, errors: list[FieldError]) -> float | None:
    """``send_at`` or ``expires_at`` of a message read from a topic: unix seconds, or None."""
    value = data.get(name)
    if value is None:
        return None
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and 0 <= value <= MAX_ACCEPTED_AT:
        return float(value)
    errors.append(FieldError(name, f"must be unix seconds between 0 and {MAX_ACCEPTED_AT:.0f}"))
    return None


def parse(data: Any, *, accepted_at: float | None = None, now: float | None = None) -> Notification:
    """Validate a decoded JSON object as a notification (channel rules are checked elsewhere).

    Every failing field is reported, not just the first. ``accepted_at`` is given for messages
    read back from a topic (where that internal field is allowed, and the times are unix
    seconds); clients may not set it. A request is accepted at ``now`` (unix seconds, default
    the clock): ``ttl_seconds`` counts from it when there is no ``send_at``, and ``expires_at``
    must be later. (How far ahead or back ``send_at`` may be is the receiver's setting:
    :class:`notifsvc.api.validation.Validator` judges it.)
    """
    if not isinstance(data, dict):
        raise InvalidNotification([FieldError("", "expected a JSON object")])
    wire = accepted_at is not None
    allowed = _WIRE if wire else FIELDS
    strings = _TEXTS if wire else _TEXTS + _WIRE_TIMES
    errors: list[FieldError] = []
    errors += [FieldError(k, "is required") for k in _REQUIRED if data.get(k) is None]
    errors += [
        FieldError(k, "must be a string")
        for k in strings
        if data.get(k) is not None and not isinstance(data[k], str)
    ]
    errors += [FieldError(str(k), "is not a known field") for k in data if k not in allowed]
    errors += [
        FieldError(k, "must not contain the NUL character (U+0000)")
        for k in _TEXTS
        if isinstance(data.get(k), str) and "\x00" in data[k]
    ]
    bad = {e.field for e in errors}
    at = accepted_at if accepted_at is not None else time.time() if now is None else now
    if wire:
        send_at, expires_at = (
            _wire_time(data, "send_at", errors),
            _wire_time(data, "expires_at", errors),
        )
    else:
        send_at, expires_at = _request_times(data, at, errors)
    uid = _parse_uuid(data["uuid"], errors) if "uuid" not in bad else None
    priority = _parse_priority(data.get("priority"), errors) if "priority" not in bad else None
    if errors:
        raise InvalidNotification(errors)
    assert uid is not None and priority is not None
    return Notification(
        uuid=uid,
        channel=data["destination"].strip().lower(),
        to=data["to"],
        txt=data["txt"],
        subject=data.get("subject"),
        priority=priority,
        accepted_at=at,
        callback_url=data.get("callback_url"),
        client=_client(data) if wire else None,
        send_at=send_at,
        expires_at=expires_at,
    )


#: Bounds of the times a filter may name: a time beyond them is taken as the bound (and
#: stays clear of the values asyncpg maps to PostgreSQL's ``infinity``).
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)
_TIME_MESSAGE = "must be an RFC 3339 time with an offset, e.g. 2026-01-31T09:30:00Z"


def parse_time(raw: str) -> datetime | None:
    """An RFC 3339 ``date-time`` (offset required) in UTC, or None when ``raw`` is not one.
    A leap second reads as the next second; times beyond :data:`EARLIEST` and
    :data:`LATEST` (year 0, or an offset past the ends of the calendar) read as those."""
    m = _RFC3339.fullmatch(raw)
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    fraction = int((m.group(7) or "0")[:6].ljust(6, "0"))
    try:  # year 0 exists in RFC 3339, not in Python: check its day in leap year 2000
        local = datetime(year or 2000, month, day, hour, minute, min(second, 59), fraction)
    except ValueError:
        return None
    sign, oh, om = m.group(9), int(m.group(10) or 0), int(m.group(11) or 0)
    if second > 60 or oh > 23 or om > 59:
        return None
    if year == 0:
        return EARLIEST
    offset = timedelta(hours=oh, minutes=om) * (-1 if sign == "-" else 1)
    try:
        at = local.replace(tzinfo=UTC) - offset + timedelta(seconds=second - min(second, 59))
    except OverflowError:
        return EARLIEST if year == 1 else LATEST
    return min(max(at, EARLIEST), LATEST)


def _request_time(data: dict[str, Any], name: str, errors: list[FieldError]) -> float | None:
    """``send_at`` or ``expires_at`` of a request (RFC 3339) as unix seconds, or None."""
    raw = data.get(name)
    if not isinstance(raw, str):  # absent, or reported as not a string
        return None
    at = parse_time(raw)
    if at is None:
        errors.append(FieldError(name, f"{_TIME_MESSAGE} (got {raw[:64]!r})"))
        return None
    seconds = at.timestamp()
    if not 0 <= seconds <= MAX_ACCEPTED_AT:
        errors.append(FieldError(name, "must be between 1970-01-01 and 2100-01-01"))
        return None
    return seconds


def _whole(value: object) -> int | None:
    """``value`` as a whole number (JSON Schema's integer: ``615`` or ``615.0``), else None."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    return None


def _request_times(
    data: dict[str, Any], now: float, errors: list[FieldError]
) -> tuple[float | None, float | None]:
    """A request's ``send_at`` and ``expires_at`` (from itself or from ``ttl_seconds``):
    an expiry must come after the send and after ``now``, else it could never be sent."""
    send_at = _request_time(data, "send_at", errors)
    expires_at = _request_time(data, "expires_at", errors)
    given = data.get("ttl_seconds")
    ttl = _whole(given)
    if given is not None:
        if ttl is None or not 1 <= ttl <= MAX_TTL_SECONDS:
            why = f"must be a whole number of seconds from 1 to {MAX_TTL_SECONDS}"
            errors.append(FieldError("ttl_seconds", why))
        elif data.get("expires_at") is not None:
            why = "must not be given together with expires_at (give one of them)"
            errors.append(FieldError("ttl_seconds", why))
        elif send_at is not None or data.get("send_at") is None:
            expires_at = (now if send_at is None else send_at) + ttl
            if expires_at > MAX_ACCEPTED_AT:
                errors.append(FieldError("ttl_seconds", "ends after 2100-01-01"))
                expires_at = None
    given = "expires_at" if data.get("expires_at") is not None else "ttl_seconds"
    if expires_at is not None and send_at is not None and expires_at <= send_at:
        errors.append(FieldError(given, "must end later than send_at"))
    elif expires_at is not None and expires_at <= now:
        errors.append(FieldError(given, "must end later than now (it would never be sent)"))
    return send_at, expires_at


def _client(data: dict[str, Any]) -> str | None:
    value = data.get("client")
    return value if isinstance(value, str) and value else None


def _parse_uuid(raw: str, errors: list[FieldError]) -> uuid_mod.UUID | None:
    try:
        return uuid_mod.UUID(raw)
    except ValueError:
        errors.append(
            FieldError("uuid", "must be a UUID, e.g. 0b5d7a4e-3f1c-4c39-9d3e-2f4d1c1b9a77")
        )
        return None


def _parse_priority(raw: str | None, errors: list[FieldError]) -> Priority | None:
    if raw is None:
        return Priority.NORMAL
    try:
        return Priority(raw.strip().lower())
    except ValueError:
        errors.append(FieldError("priority", "must be one of high, normal, low"))
        return None
