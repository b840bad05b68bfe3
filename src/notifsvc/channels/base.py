"""The channel contract: what every delivery channel implements.

A channel is constructed from :class:`~notifsvc.config.Settings` without any I/O. The
receiver uses only :meth:`Channel.validate` (pure, fast, no network). A notificator calls
:meth:`Channel.start`, then :meth:`Channel.send` many times concurrently, then
:meth:`Channel.stop`. ``send`` reports failure only by raising :class:`DeliveryError`, which
says itself whether trying again can help; the retry policy lives in the notificator.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from notifsvc.config import Settings
from notifsvc.model import FieldError, Notification


class DeliveryError(Exception):
    """A failed send, classified by the channel that saw it fail."""

    def __init__(self, message: str, *, retriable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retriable = retriable
        self.retry_after = retry_after


class TransientError(DeliveryError):
    """Timeouts, connection errors, 5xx, throttling: trying again later may succeed."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, retriable=True, retry_after=retry_after)


class Throttled(TransientError):
    """The provider asked us to slow down (HTTP 429, SMTP 421/451 rate limits): never spends
    a delivery attempt; ``retry_after`` is the provider's wish when it gave one."""


class PermanentError(DeliveryError):
    """Rejected by the provider for good (4xx, invalid recipient): never retried."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=False)


class Channel(ABC):
    """One way out of the system (email, SMS, a webhook, ...)."""

    #: The ``destination`` value clients use, lower case; also the topic suffix.
    name: ClassVar[str]
    #: Longest accepted ``txt``, in characters.
    max_body_chars: ClassVar[int] = 65_536

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @classmethod
    def disabled_reason(cls, settings: Settings) -> str | None:
        """Why this channel cannot run with ``settings`` (missing settings), or None."""
        return None

    def validate(self, notification: Notification) -> list[FieldError]:
        """Channel rules for ``to``, ``txt`` and ``subject``; empty when acceptable."""
        errors = self.validate_recipient(notification.to)
        if not notification.txt:
            errors.append(FieldError("txt", "must not be empty"))
        elif len(notification.txt) > self.max_body_chars:
            errors.append(
                FieldError(
                    "txt", f"is longer than {self.max_body_chars} characters for {self.name}"
                )
            )
        return errors

    @abstractmethod
    def validate_recipient(self, to: str) -> list[FieldError]:
        """Errors for an unusable recipient; pure and cheap (it runs per request)."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open connections or sessions; called once before the first send."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`start` opened; safe to call twice."""

    @abstractmethod
    async def send(self, notification: Notification) -> None:
        """Deliver one notification or raise :class:`DeliveryError`."""
