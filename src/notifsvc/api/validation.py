"""What a valid request is: one table of rules, enforced here and published by
:mod:`notifsvc.openapi`, so that the document and the behaviour cannot drift apart.

A request passes three layers, and every failing field of all of them is reported:

1. :func:`notifsvc.model.parse`: the fields, their JSON types, no unknown fields, no NUL;
2. :attr:`Validator.rules`: one :class:`Rule` per field of
   :data:`~notifsvc.model.REQUEST_FIELDS` (the canonical UUID form, the priorities in any
   case, ...) and the destination, which must name an enabled channel;
3. the channel's own :meth:`~notifsvc.channels.Channel.validate` (recipient, lengths).

The channel rules that can be said in JSON Schema are published per channel
(:attr:`Validator.branches`) from the same class attributes the channel's ``validate`` reads:
``max_body_chars``, and where a channel has them ``recipient_pattern``, ``subject_pattern``
and ``max_subject_chars``. Patterns are written in the subset of regular expressions that
Python and JSON Schema (ECMA-262) read alike: explicit character classes, no ``\\s``,
``\\d`` or ``\\w``.
"""

from __future__ import annotations

import functools
import re
import time
import uuid as uuid_mod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from notifsvc import channels
from notifsvc.channels.base import Channel
from notifsvc.channels.webhook import MAX_URL_CHARS, WebhookChannel, url_problem
from notifsvc.config import Settings
from notifsvc.model import (
    MAX_TTL_SECONDS,
    REQUEST_FIELDS,
    FieldError,
    InvalidNotification,
    Notification,
    Priority,
    parse,
    wire_value,
)

#: A UUID as RFC 9562 writes it (``uuid.UUID`` alone also takes braces, ``urn:uuid:``, ...).
UUID_PATTERN = "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
#: No string may hold NUL: PostgreSQL refuses it in text (:func:`~notifsvc.model.parse` too).
NO_NUL = "^[^\\u0000]*$"
_UUID_MESSAGE = "must be a UUID, e.g. 0b5d7a4e-3f1c-4c39-9d3e-2f4d1c1b9a77"
#: The fields a request may have for :meth:`Validator._fast` (a callback URL and the times of
#: a scheduled send take the full path).
_FAST_FIELDS = frozenset(f.name for f in REQUEST_FIELDS) - {
    "callback_url",
    "send_at",
    "expires_at",
    "ttl_seconds",
}
_PRIORITIES = {p.value: p for p in Priority}
_NUL_MESSAGE = "must not contain the NUL character (U+0000)"


def anycase(words: list[str] | tuple[str, ...]) -> str:
    """A pattern matching exactly one of ``words``, in any mix of ASCII cases."""
    alternatives = (
        "".join(
            f"[{c.upper()}{c.lower()}]" if c.isascii() and c.isalpha() else re.escape(c) for c in w
        )
        for w in words
    )
    return f"^(?:{'|'.join(alternatives)})$"


@functools.cache  # bounded: the patterns of the rules
def _compiled(pattern: str) -> re.Pattern[str]:
    """JSON Schema's reading of ``pattern``: a search in which a closing ``$`` is the end of
    the string (Python's ``$`` also matches before a final newline)."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


@dataclass(frozen=True, slots=True)
class Rule:
    """What one string field must be; ``message`` says it when it is not."""

    message: str
    patterns: tuple[str, ...] = ()
    min_length: int = 0
    max_length: int | None = None
    format: str | None = None
    nullable: bool = False
    #: ``string``, or ``integer`` (checked by :func:`~notifsvc.model.parse`; ``accepts``
    #: and the bounds below are for strings).
    kind: str = "string"
    maximum: int | None = None

    def accepts(self, value: str) -> bool:
        if len(value) < self.min_length:
            return False
        if self.max_length is not None and len(value) > self.max_length:
            return False
        return all(_compiled(p).search(value) for p in self.patterns)

    def schema(self) -> dict[str, Any]:
        """The JSON Schema of the field (``null`` allowed for an optional one)."""
        out: dict[str, Any] = {"type": [self.kind, "null"] if self.nullable else self.kind}
        if self.kind == "integer":
            return out | {"minimum": 1, "maximum": self.maximum}
        if self.format is not None:
            out["format"] = self.format
        if len(self.patterns) == 1:
            out["pattern"] = self.patterns[0]
        elif self.patterns:
            out["allOf"] = [{"pattern": p} for p in self.patterns]
        if self.min_length:
            out["minLength"] = self.min_length
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        return out


def _field_rules() -> dict[str, Rule]:
    rules: dict[str, Rule] = {}
    for spec in REQUEST_FIELDS:
        rule = Rule(_NUL_MESSAGE, (NO_NUL,), nullable=not spec.required)
        if spec.format == "uuid":
            rule = Rule(_UUID_MESSAGE, (UUID_PATTERN,), format="uuid")
        elif spec.enum:
            message = f"must be one of {', '.join(spec.enum)}"
            rule = Rule(message, (anycase(spec.enum),), nullable=not spec.required)
        elif spec.format == "date-time":  # parse() says what is wrong with one
            rule = Rule(_NUL_MESSAGE, format="date-time", nullable=True)
        elif spec.kind == "integer":  # ttl_seconds
            rule = Rule("", kind="integer", nullable=True, maximum=MAX_TTL_SECONDS)
        rules[spec.name] = rule
    # Channel.validate: every channel refuses an empty body.
    rules["txt"] = Rule("must not be empty", (NO_NUL,), min_length=1)
    return rules


def channel_rules(channel: channels.AnyChannel) -> dict[str, Rule]:
    """The rules of ``channel`` that JSON Schema can say, read from the attributes its
    ``validate`` uses (``recipient_pattern``, ``subject_pattern``, ``max_subject_chars``)."""
    cls = type(channel)
    rules = {
        "destination": Rule(f"must be {cls.name!r}", (anycase([cls.name]),)),
        "txt": Rule("is too long", max_length=cls.max_body_chars),
    }
    recipient = getattr(cls, "recipient_pattern", None)
    if isinstance(recipient, str):
        rules["to"] = Rule(f"is not a {cls.name} recipient", (recipient,))
    subject = getattr(cls, "subject_pattern", None)
    longest = getattr(cls, "max_subject_chars", None)
    if isinstance(subject, str) or isinstance(longest, int):
        patterns = (subject,) if isinstance(subject, str) else ()
        limit = longest if isinstance(longest, int) else None
        rules["subject"] = Rule("is not allowed", patterns, max_length=limit, nullable=True)
    return rules


#: A request's fields as :meth:`Validator._ordinary` takes them: the UUID as written, the
#: enabled channel, recipient, body, subject and priority.
_Ordinary = tuple[str, "channels.AnyChannel", str, str, str | None, Priority]


def _plain(data: object) -> tuple[str, str, str, str, str | None, str] | None:
    """uuid, destination, to, txt, subject and priority of a request that has only known
    fields (no callback URL), every one a string without NUL, the required ones and a body
    that is not empty among them; else None."""
    if not isinstance(data, dict) or not data.keys() <= _FAST_FIELDS:
        return None
    raw, name, to, txt = data.get("uuid"), data.get("destination"), data.get("to"), data.get("txt")
    subject, level = data.get("subject"), data.get("priority")
    level = "normal" if level is None else level
    if not (
        isinstance(raw, str)
        and isinstance(name, str)
        and isinstance(to, str)
        and isinstance(txt, str)
        and isinstance(level, str)
        and (subject is None or (isinstance(subject, str) and "\x00" not in subject))
    ):
        return None
    if not txt or "\x00" in to or "\x00" in txt:
        return None
    return raw, name, to, txt, subject, level


class Validator:
    """Built once at start-up: the rules, the enabled channels and why the others are off."""

    def __init__(
        self,
        enabled: dict[str, channels.AnyChannel],
        disabled: dict[str, str],
        callback_hosts: frozenset[str] = frozenset(),
        *,
        horizon: float = 2_592_000.0,
        tolerance: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``horizon``: seconds ahead a ``send_at`` may be; ``tolerance``: seconds in the
        past it may be (and then means now); ``clock``: unix seconds, a request's
        ``accepted_at``."""
        self.channels = enabled
        self.horizon = horizon
        self.tolerance = tolerance
        self._clock = clock
        self.disabled = disabled
        self.callback_hosts = callback_hosts
        self.rules = _field_rules()
        if callback_hosts:  # a necessary condition; the hosts are checked in validate()
            self.rules["callback_url"] = Rule(
                "must be an http(s) URL without credentials (user:password@)",
                (WebhookChannel.recipient_pattern,),
                nullable=True,
                max_length=MAX_URL_CHARS,
            )
        else:  # status callbacks are off: the field is not part of the document
            del self.rules["callback_url"]
        self.branches = {name: channel_rules(c) for name, c in sorted(enabled.items())}
        self._known = ", ".join(sorted(enabled)) or "none"
        self._destination = Rule("", (anycase(sorted(enabled)),)) if enabled else None
        self._uuid = _compiled(UUID_PATTERN)

    @classmethod
    def from_settings(cls, settings: Settings) -> Validator:
        hosts = settings.callback_allowed_hosts
        return cls(
            channels.enabled(settings),
            channels.disabled(settings),
            hosts,
            horizon=settings.schedule_horizon_seconds,
            tolerance=settings.schedule_tolerance_seconds,
        )

    def parse_uuid(self, raw: str) -> uuid_mod.UUID | None:
        """``raw`` as a UUID when it has the form the ``uuid`` field needs, else None."""
        return uuid_mod.UUID(raw) if self.rules["uuid"].accepts(raw) else None

    def validate(self, data: object) -> Notification:
        """A notification the pipeline can deliver, or :class:`InvalidNotification` listing
        every failing field."""
        fast = self._fast(data)
        return fast if fast is not None else self._validate(data)

    def _fast(self, data: object) -> Notification | None:
        """The notification of a request that plainly passes every layer, else None.

        This runs for every request, so it does in a few plain checks what the three layers
        do with lists of errors (17 of 18 µs of a request's validation went to those). It decides
        nothing: anything unusual (a callback URL, a field to report, a case to fold) returns
        None and takes :meth:`_validate`, so accepted and refused requests, and every error
        message, are those of the full path. Each check is one of those layers' rules: only
        known fields; the UUID in its canonical form; the destination an enabled channel's
        name in some mix of ASCII cases (the rule's pattern); strings without NUL, a body
        that is not empty; the priority one of its names in ASCII cases; the channel's own
        ``validate``.
        """
        ordinary = self._ordinary(data)
        if ordinary is None:
            return None
        raw, channel, to, txt, subject, priority = ordinary
        uid = uuid_mod.UUID(raw)
        n = Notification(uid, channel.name, to, txt, subject, priority, accepted_at=self._clock())
        return None if channel.validate(n) else n

    def _ordinary(self, data: object) -> _Ordinary | None:
        """The fields of a request as :meth:`_fast` and :meth:`plain_record` take them (the
        UUID as written, the enabled channel, the priority); None for anything else."""
        plain = _plain(data)
        if plain is None:
            return None
        raw, name, to, txt, subject, level = plain
        channel = self.channels.get(name.lower()) if name.isascii() else None
        priority = _PRIORITIES.get(level.lower()) if level.isascii() else None
        if channel is None or priority is None or not self._uuid.search(raw):
            return None
        return raw, channel, to, txt, subject, priority

    def plain_record(self, data: object) -> tuple[str, int, bytes] | None:
        """What ``POST /notification`` needs of a request :meth:`_fast` accepts, without the
        :class:`~notifsvc.model.Notification` and :class:`uuid.UUID` objects (3.3 of the
        5.5 µs of :meth:`_fast`): its UUID in canonical form, as an integer, and the value
        ``encode()`` writes for it. None where :meth:`_fast` returns None, and also for a
        channel with a ``validate`` of its own (then :meth:`validate` decides).

        The checks are :meth:`_fast`'s, and for the channel those of the base
        ``Channel.validate``; unit/api/test_accept_plain.py compares the results.
        """
        ordinary = self._ordinary(data)
        if ordinary is None:
            return None
        raw, channel, to, txt, subject, priority = ordinary
        if type(channel).validate is not Channel.validate or channel.validate_text(to, txt):
            return None
        text = raw.lower()  # str(UUID(raw)) for the canonical form the pattern allows
        at = self._clock()
        value = wire_value(
            uuid=text,
            channel=channel.name,
            to=to,
            txt=txt,
            subject=subject,
            priority=priority,
            at=at,
        )
        return text, int(text.replace("-", ""), 16), orjson.dumps(value)

    def _validate(self, data: object) -> Notification:
        """The three layers, every failing field reported."""
        try:
            notification: Notification | None = parse(data, now=self._clock())
            errors: list[FieldError] = []
        except InvalidNotification as exc:
            notification, errors = None, list(exc.errors)
        errors += self._rule_errors(data, {e.field for e in errors})
        if notification is not None and "destination" not in {e.field for e in errors}:
            flagged = {e.field for e in errors}
            found = self.channels[notification.channel].validate(notification)
            errors += [e for e in found if e.field not in flagged]
        callback = notification.callback_url if notification is not None else None
        if callback is not None and "callback_url" not in {e.field for e in errors}:
            errors += self._callback_errors(callback)
        if notification is not None and notification.send_at is not None:
            errors += self._send_at_errors(notification)
        if errors or notification is None:
            raise InvalidNotification(errors)
        return notification

    def _send_at_errors(self, n: Notification) -> list[FieldError]:
        """A ``send_at`` within the horizon, and not in the past beyond the tolerance (a
        client's clock a little behind ours: sent at once)."""
        assert n.send_at is not None
        ahead = n.send_at - n.accepted_at
        if ahead < -self.tolerance:
            why = f"is in the past (more than {self.tolerance:g} s before now)"
            return [FieldError("send_at", why)]
        if ahead > self.horizon:
            why = (
                f"is more than {self.horizon:g} s ahead "
                "(NOTIFSVC_SCHEDULE_HORIZON_SECONDS of this service)"
            )
            return [FieldError("send_at", why)]
        return []

    def _callback_errors(self, url: str) -> list[FieldError]:
        """A status-callback URL obeys the webhook channel's rules, on its own hosts."""
        variable = "NOTIFSVC_CALLBACK_ALLOWED_HOSTS"
        if not self.callback_hosts:
            return [FieldError("callback_url", f"status callbacks are off: {variable} is not set")]
        problem = url_problem(url, self.callback_hosts, variable=variable)
        return [] if problem is None else [FieldError("callback_url", problem)]

    def _rule_errors(self, data: object, flagged: set[str]) -> list[FieldError]:
        if not isinstance(data, dict):
            return []
        errors: list[FieldError] = []
        for name, rule in self.rules.items():
            value = data.get(name)
            if name not in flagged and isinstance(value, str) and not rule.accepts(value):
                errors.append(FieldError(name, rule.message))
        destination = data.get("destination")
        if (
            "destination" not in flagged
            and isinstance(destination, str)
            and (self._destination is None or not self._destination.accepts(destination))
        ):
            errors.append(FieldError("destination", self._destination_problem(destination)))
        return errors

    def _destination_problem(self, raw: str) -> str:
        name = raw.strip().lower()
        if name in self.channels:
            why = f"{raw!r} must be a channel name without surrounding white space"
        elif name in self.disabled:
            why = f"channel {name!r} is disabled: {self.disabled[name]}"
        else:
            why = f"unknown destination {name!r}"
        return f"{why} (enabled: {self._known})"
