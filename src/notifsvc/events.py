"""Status-callback events: what the notificator tells a client about its notification.

A notification carrying a ``callback_url`` gets one event per failed attempt
(``notification.attempt_failed``) and one for its end (``notification.sent``,
``notification.failed``, or ``notification.expired`` when its ``expires_at`` passed before
it was sent: told by whichever stage found it expired, through :func:`expired_event`). The
notificator produces them to the callbacks topic in the same step that records the outcome,
before its offsets are committed, so an event is never lost (it may come twice, with the
same ``id``); the dispatcher (``notifsvc callbacks``) delivers them, signed by the Standard
Webhooks spec (:mod:`notifsvc.signing`).

``state_version`` only increases for one notification: ``2n`` for the failure of attempt
``n``, ``2n + 1`` for the end after ``n`` attempts (``2n + 2`` for ``expired``, so that it
stays above the ``failed`` end of a failed notification an operator requeued), so a
receiver drops a stale event (an ``attempt_failed`` arriving after ``sent``) by comparing
versions. ``id`` is stable per event: ``evt_<uuid hex>_<version>``, the ``webhook-id`` the
receiver de-duplicates by.
"""

from __future__ import annotations

import time
import uuid as uuid_mod
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

from notifsvc import topics
from notifsvc.attempts import Attempt, AttemptOutcome
from notifsvc.config import Settings
from notifsvc.deadletter import Message
from notifsvc.delivery import Delivery
from notifsvc.model import Notification, State, reason_of, uuid_text


class EventType(StrEnum):
    SENT = "notification.sent"
    FAILED = "notification.failed"
    ATTEMPT_FAILED = "notification.attempt_failed"
    #: Its ``expires_at`` passed before it was sent: it never will be.
    EXPIRED = "notification.expired"


class InvalidEvent(ValueError):
    """A callbacks-topic record that is not an event (dead-lettered by the dispatcher)."""


@dataclass(frozen=True, slots=True)
class Event:
    """One callback: where it goes, for whom (the API key's id, for its secrets), and what."""

    id: str
    type: EventType
    url: str
    client: str | None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> bytes:
        """The Kafka key: the notification's uuid, so its events stay in order."""
        return str(self.data.get("uuid", "")).encode()

    def body(self) -> bytes:
        """What the receiver gets: the Standard Webhooks payload shape."""
        return orjson.dumps(
            {"type": self.type.value, "timestamp": self.data["at"], "data": self.data}
        )

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "id": self.id,
                "type": self.type.value,
                "url": self.url,
                "client": self.client,
                "data": self.data,
            }
        )

    @classmethod
    def decode(cls, raw: bytes | None) -> Event:
        try:
            value = orjson.loads(raw or b"")
            return cls(
                _text(value["id"]),
                EventType(value["type"]),
                _text(value["url"]),
                None if value.get("client") is None else _text(value["client"]),
                dict(value["data"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InvalidEvent(f"not a callback event: {exc}") from None


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("expected a non-empty string")
    return value


def event_id(uid: uuid_mod.UUID, version: int) -> str:
    return f"evt_{uid.hex}_{version}"


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def events_for(delivery: Delivery, *, max_attempts: int) -> list[Event]:
    """The events one pass over a notification causes: one per failed counted attempt that
    is not its end, then ``sent``, ``failed`` or ``expired`` when it ended (none while it
    waits in the retry lane but for its failed attempts)."""
    n = delivery.notification
    if n.callback_url is None:
        return []
    ended = delivery.state in _ENDS
    failures = [a for a in delivery.log if a.counted and a.outcome is not AttemptOutcome.SENT]
    if ended and delivery.state is State.FAILED and failures:
        failures = failures[:-1]  # the last failure is told by notification.failed
    events = [_attempt_failed(n, a, max_attempts) for a in failures]
    if ended:
        events.append(_end(delivery))
    return events


#: The states a pass may end a notification in.
_ENDS = frozenset({State.SENT, State.FAILED, State.EXPIRED})


def expired_event(n: Notification, *, attempts: int = 0, at: float | None = None) -> Event | None:
    """The ``notification.expired`` event of ``n``, which a stage moved to ``expired`` after
    ``attempts`` attempts (at ``at``, unix seconds; default now); None without a
    ``callback_url``. For the stages that expire rows themselves (the router, the scheduler,
    the reconciler, replays): produce it before the state is written, as the notificator
    does, so that it is never lost (it may come twice, with the same id)."""
    if n.callback_url is None:
        return None
    version = 2 * attempts + 2
    data = _base(n, version, State.EXPIRED.value) | {
        "attempts": attempts,
        "at": iso(time.time() if at is None else at),
        "reason": State.EXPIRED.value,
        "expires_at": iso(n.expires_at) if n.expires_at is not None else None,
    }
    return Event(event_id(n.uuid, version), EventType.EXPIRED, _url(n), n.client, data)


def messages(settings: Settings, events: Iterable[Event | None]) -> list[Message]:
    """``events`` (None for a notification without a callback URL: none) as messages for
    the callbacks topic."""
    topic = topics.callbacks(settings)
    return [(topic, e.encode(), e.key, ()) for e in events if e is not None]


def _base(n: Notification, version: int, state: str) -> dict[str, Any]:
    return {
        "uuid": uuid_text(n.uuid),
        "channel": n.channel,
        "state": state,
        "state_version": version,
        "accepted_at": iso(n.accepted_at) if n.accepted_at else None,
    }


def _attempt_failed(n: Notification, a: Attempt, max_attempts: int) -> Event:
    version = 2 * a.number
    retryable = a.outcome is AttemptOutcome.TRANSIENT and a.number < max_attempts
    data = _base(n, version, State.FORWARDED.value) | {
        "attempt": a.number,
        "max_attempts": max_attempts,
        "retryable": retryable,
        "status_code": a.status,
        "error": a.error,
        "at": iso(a.finished_at),
    }
    return Event(event_id(n.uuid, version), EventType.ATTEMPT_FAILED, _url(n), n.client, data)


def _end(d: Delivery) -> Event:
    n = d.notification
    if d.state is State.EXPIRED:  # found expired now, after its attempts if any
        event = expired_event(n, attempts=d.total)
        assert event is not None
        return event
    version = 2 * d.total + 1
    finished = max((a.finished_at for a in d.log), default=time.time())
    data = _base(n, version, d.state.value) | {"attempts": d.total, "at": iso(finished)}
    if d.state is State.FAILED:
        reason = reason_of(d.error)
        data |= {"reason": reason.value if reason else "error", "error": d.error}
        kind = EventType.FAILED
    else:
        kind = EventType.SENT
    return Event(event_id(n.uuid, version), kind, _url(n), n.client, data)


def _url(n: Notification) -> str:
    assert n.callback_url is not None
    return n.callback_url
