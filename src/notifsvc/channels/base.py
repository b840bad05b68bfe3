"""The channel contract: what every delivery channel implements.

A channel is constructed from :class:`~notifsvc.config.Settings` without any I/O; its own
settings are its :attr:`Channel.Config` section (``NOTIFSVC_<NAME>_*``), in
:attr:`Channel.config`. The
receiver uses only :meth:`Channel.validate` (pure, fast, no network). A notificator calls
:meth:`Channel.start`, then :meth:`Channel.send` many times concurrently, then
:meth:`Channel.stop`. ``send`` reports failure only by raising :class:`DeliveryError`, which
says itself whether trying again can help; the retry policy lives in the notificator. It may
return a :class:`Receipt` (the provider's status code and message id) for the attempt
history; None says nothing more than "delivered".

A channel class is also a *provider* (:attr:`Channel.provider`, by default its name): a
channel with alternative providers (``sms``: ``twilio``, ``vonage``) has one class per
provider, all with the channel's ``name``; :mod:`notifsvc.providers` puts them in order
behind circuit breakers. An error says with :attr:`DeliveryError.failover` whether it proves
that the provider did not take the message (only then may the next provider try it).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar, cast

from notifsvc.breaker import Policy
from notifsvc.config import Section, Settings, as_positive_int, setting
from notifsvc.model import FieldError, Notification, Reason


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a provider said when it took a notification, for the attempt history: its
    status code and its id for the message, where it gives them."""

    message_id: str | None = None
    status: int | None = None
    #: The provider that answered (set by :mod:`notifsvc.providers`); None: the channel's.
    provider: str | None = None


class DeliveryError(Exception):
    """A failed send, classified by the channel that saw it fail; ``status`` is the
    provider's status code when the failure is an answer (an HTTP status, say).

    ``failover`` is True only when the error proves that the provider did not take the
    message (connection refused, DNS or TLS failure, HTTP 429 or 5xx on submit): another
    provider may then send it without risking a duplicate. A timeout after the request went
    out is never one. ``provider`` names the provider that failed (set by
    :mod:`notifsvc.providers`; None: the channel's own)."""

    failover: bool = False
    provider: str | None = None

    def __init__(
        self,
        message: str,
        *,
        retriable: bool,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.retriable = retriable
        self.retry_after = retry_after
        self.status = status


class TransientError(DeliveryError):
    """Timeouts, connection errors, 5xx, throttling: trying again later may succeed."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message, retriable=True, retry_after=retry_after, status=status)


class Throttled(TransientError):
    """The provider asked us to slow down (HTTP 429, SMTP 421/451 rate limits): never spends
    a delivery attempt; ``retry_after`` is the provider's wish when it gave one."""


class PermanentError(DeliveryError):
    """Rejected by the provider for good (4xx, invalid recipient): never retried.

    ``reason``, when the client can act on it (:class:`~notifsvc.model.Reason`, e.g.
    ``token_invalid``), prefixes the message and so becomes the notification's ``reason``."""

    def __init__(
        self, message: str, *, reason: Reason | None = None, status: int | None = None
    ) -> None:
        text = f"{reason}: {message}" if reason else message
        super().__init__(text, retriable=False, status=status)
        self.reason = reason


@dataclass(frozen=True)
class NoSettings(Section):
    """The section of a channel without settings of its own."""


def provider_list(*known: str) -> Callable[[str], str]:
    """The parser of a ``<CHANNEL>_PROVIDERS`` list: names of ``known`` providers, in order,
    each once; kept as the normalised comma-separated string (a tuple would be written back
    sorted by :func:`notifsvc.config.to_env`, and the order is the point)."""

    def parse(raw: str) -> str:
        names = tuple(part.strip().lower() for part in raw.split(",") if part.strip())
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"unknown provider {unknown[0]!r} (known: {', '.join(known)})")
        if len(set(names)) != len(names):
            raise ValueError("names a provider twice")
        if not names:
            raise ValueError("names no provider")
        return ",".join(names)

    return parse


def _share(raw: str) -> float:
    value = float(raw)
    if not 0.0 < value <= 1.0:
        raise ValueError("must be a number above 0 and at most 1")
    return value


def _seconds(raw: str) -> float:
    value = float(raw)
    if not (math.isfinite(value) and value >= 1.0):
        raise ValueError("must be at least 1 (seconds)")
    return value


@dataclass(frozen=True)
class ProviderChoice(Section):
    """The settings of a channel with alternative providers: which, in what order, and the
    circuit breaker that each of them gets (:mod:`notifsvc.breaker`). A subclass declares
    ``providers`` again, with its own default and known names."""

    providers: str = setting("", provider_list(), doc="providers, in order")
    breaker_failure_rate: float = setting(
        0.5, _share, doc="share of failed calls in the window that opens a provider's breaker"
    )
    breaker_window_seconds: float = setting(
        30.0, _seconds, doc="the breaker's sliding window of calls"
    )
    breaker_min_calls: int = setting(
        20, as_positive_int, doc="fewest calls in the window before the breaker may open"
    )
    breaker_cooldown_seconds: float = setting(
        15.0, _seconds, doc="how long an open breaker sends nothing before it half-opens"
    )
    breaker_probe_share: float = setting(
        0.1, _share, doc="share of traffic a half-open breaker lets through (the first at once)"
    )

    @property
    def provider_names(self) -> tuple[str, ...]:
        return tuple(self.providers.split(",")) if self.providers else ()

    def policy(self) -> Policy:
        """The breaker policy these settings describe."""
        return Policy(
            failure_rate=self.breaker_failure_rate,
            window=self.breaker_window_seconds,
            min_calls=self.breaker_min_calls,
            cooldown=self.breaker_cooldown_seconds,
            probe_share=self.breaker_probe_share,
        )


C = TypeVar("C", bound=Section)


class Channel(ABC, Generic[C]):
    """One way out of the system (email, SMS, a webhook, ...)."""

    #: The ``destination`` value clients use, lower case; also the topic suffix and the
    #: prefix of the channel's variables (``NOTIFSVC_<NAME>_*``).
    name: ClassVar[str]
    #: The provider this class talks to (``twilio``, ``smtp_backup``); by default ``name``.
    #: Unique across the registry of providers (:data:`notifsvc.channels.PROVIDERS`).
    provider: ClassVar[str]
    #: The channel's own settings: a :class:`~notifsvc.config.Section` with prefix ``name``
    #: (or ``provider``, for a second provider of a channel: ``NOTIFSVC_VONAGE_*``).
    Config: ClassVar[type[Any]] = NoSettings
    #: Longest accepted ``txt``, in characters.
    max_body_chars: ClassVar[int] = 65_536
    #: ``module:Class`` of the provider fake (in :mod:`notifsvc.dev.fakes`) that the tests
    #: and ``notifsvc dev`` point this channel at; None when the channel needs no provider.
    fake: ClassVar[str | None] = None
    #: A push channel: its recipients are device tokens or subscriptions, which a person
    #: cannot make up (``notifsvc dev`` prints one of its stand-in's; the push benchmark).
    push: ClassVar[bool] = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.config = cast(C, settings.section(self.Config))

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        named = "name" in cls.__dict__
        if named and "provider" not in cls.__dict__:
            cls.provider = cls.name
        prefixes = {cls.name, cls.provider} if named else set()
        if named and cls.Config is not NoSettings and cls.Config.prefix not in prefixes:
            raise TypeError(f"{cls.__name__}.Config must have prefix {cls.name!r}")

    @classmethod
    def disabled_reason(cls, settings: Settings) -> str | None:
        """Why this channel cannot run with ``settings`` (missing settings), or None."""
        reason: str | None = settings.section(cls.Config).disabled_reason()
        return reason

    def validate(self, notification: Notification) -> list[FieldError]:
        """Channel rules for ``to``, ``txt`` and ``subject``; empty when acceptable."""
        return self.validate_text(notification.to, notification.txt)

    def validate_text(self, to: str, txt: str) -> list[FieldError]:
        """:meth:`validate`'s rules for the recipient and the body (also the receiver's,
        which checks an ordinary request without building a notification)."""
        errors = self.validate_recipient(to)
        if not txt:
            errors.append(FieldError("txt", "must not be empty"))
        elif len(txt) > self.max_body_chars:
            errors.append(
                FieldError(
                    "txt", f"is longer than {self.max_body_chars} characters for {self.name}"
                )
            )
        return errors

    @abstractmethod
    def validate_recipient(self, to: str) -> list[FieldError]:
        """Errors for an unusable recipient; pure and cheap (it runs per request)."""

    def synchronous_send(self) -> Callable[[Notification], Receipt | None] | None:
        """:meth:`send` as a plain function, for a channel whose send never waits (a local
        write): the delivery policy then calls it without a task, a send slot or a deadline,
        none of which could act on it. None (the default): :meth:`send` may wait."""
        return None

    async def start(self) -> None:
        """Open connections or sessions; called once before the first send."""

    async def stop(self) -> None:
        """Release what :meth:`start` opened; safe to call twice."""

    @abstractmethod
    async def send(self, notification: Notification) -> Receipt | None:
        """Deliver one notification or raise :class:`DeliveryError`; optionally say how the
        provider answered (a :class:`Receipt`)."""


#: A channel of any settings type, as the stages hold them.
AnyChannel = Channel[Any]
