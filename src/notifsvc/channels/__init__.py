"""Delivery channels. A new channel is one module plus one line in :data:`REGISTRY`."""

from __future__ import annotations

from notifsvc.channels.apns import ApnsChannel
from notifsvc.channels.base import (
    AnyChannel,
    Channel,
    DeliveryError,
    PermanentError,
    Throttled,
    TransientError,
)
from notifsvc.channels.email import EmailChannel
from notifsvc.channels.fcm import FcmChannel
from notifsvc.channels.log import LogChannel
from notifsvc.channels.slack import SlackChannel
from notifsvc.channels.sms import SmsChannel
from notifsvc.channels.webhook import WebhookChannel
from notifsvc.channels.webpush import WebPushChannel
from notifsvc.config import Settings

REGISTRY: dict[str, type[AnyChannel]] = {
    LogChannel.name: LogChannel,
    WebhookChannel.name: WebhookChannel,
    EmailChannel.name: EmailChannel,
    SmsChannel.name: SmsChannel,
    SlackChannel.name: SlackChannel,
    FcmChannel.name: FcmChannel,
    ApnsChannel.name: ApnsChannel,
    WebPushChannel.name: WebPushChannel,
}

__all__ = [
    "REGISTRY",
    "AnyChannel",
    "Channel",
    "DeliveryError",
    "PermanentError",
    "Throttled",
    "TransientError",
    "disabled",
    "enabled",
    "push",
]


def push() -> list[str]:
    """The registered push channels (FCM, APNs, Web Push, ...), in registry order."""
    return [name for name, cls in REGISTRY.items() if cls.push]


def disabled(settings: Settings) -> dict[str, str]:
    """Registered channels that cannot run with ``settings``, with the reason."""
    out: dict[str, str] = {}
    for name, cls in REGISTRY.items():
        reason = cls.disabled_reason(settings)
        if reason is None and settings.channels is not None and name not in settings.channels:
            reason = "not listed in NOTIFSVC_CHANNELS"
        if reason is not None:
            out[name] = reason
    return out


def enabled(settings: Settings) -> dict[str, AnyChannel]:
    """An instance (no I/O yet) of every channel that can run with ``settings``."""
    off = disabled(settings)
    return {name: cls(settings) for name, cls in REGISTRY.items() if name not in off}
