"""Delivery channels. A new channel is one module plus one line in :data:`REGISTRY`; a new
provider of an existing channel is one module plus one line in :data:`ALTERNATIVES` (and its
name in the channel's ``providers`` setting)."""

from __future__ import annotations

from notifsvc import providers
from notifsvc.channels.apns import ApnsChannel
from notifsvc.channels.base import (
    AnyChannel,
    Channel,
    DeliveryError,
    PermanentError,
    Throttled,
    TransientError,
)
from notifsvc.channels.email import EmailChannel, SmtpBackupChannel
from notifsvc.channels.fcm import FcmChannel
from notifsvc.channels.log import LogChannel
from notifsvc.channels.slack import SlackChannel
from notifsvc.channels.sms import SmsChannel
from notifsvc.channels.vonage import VonageChannel
from notifsvc.channels.webhook import WebhookChannel
from notifsvc.channels.webpush import WebPushChannel
from notifsvc.config import Section, Settings

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
#: The other providers of a channel (each class has its channel's ``name``), by provider.
ALTERNATIVES: dict[str, type[AnyChannel]] = {
    SmtpBackupChannel.provider: SmtpBackupChannel,
    VonageChannel.provider: VonageChannel,
}
#: Every provider by its name: the channels' own (``smtp``, ``twilio``, ``webhook``...)
#: and the alternatives. Settings, fakes and deploy manifests are derived from this.
PROVIDERS: dict[str, type[AnyChannel]] = {
    **{cls.provider: cls for cls in REGISTRY.values()},
    **ALTERNATIVES,
}

__all__ = [
    "ALTERNATIVES",
    "PROVIDERS",
    "REGISTRY",
    "AnyChannel",
    "Channel",
    "DeliveryError",
    "PermanentError",
    "Throttled",
    "TransientError",
    "alternatives_of",
    "build",
    "disabled",
    "enabled",
    "providers_of",
    "push",
    "sections",
]


def sections() -> tuple[type[Section], ...]:
    """The settings sections of every provider: each channel's own, then its other
    providers' (the order of the README's table)."""
    return tuple(dict.fromkeys(cls.Config for name in REGISTRY for cls in providers_of(name)))


def providers_of(name: str) -> list[type[AnyChannel]]:
    """Channel ``name``'s provider classes, its own first."""
    return [REGISTRY[name], *alternatives_of(name)]


def alternatives_of(name: str) -> list[type[AnyChannel]]:
    """The other providers of channel ``name`` (Vonage for SMS, ...), in registry order."""
    return [cls for cls in ALTERNATIVES.values() if cls.name == name]


def build(name: str, settings: Settings) -> AnyChannel:
    """Channel ``name`` as the stages use it (no I/O yet): with a choice of providers, a
    :class:`notifsvc.providers.Failover` over the listed ones."""
    return providers.build(REGISTRY[name], settings, PROVIDERS)


def push() -> list[str]:
    """The registered push channels (FCM, APNs, Web Push, ...), in registry order."""
    return [name for name, cls in REGISTRY.items() if cls.push]


def disabled(settings: Settings) -> dict[str, str]:
    """Registered channels that cannot run with ``settings``, with the reason. Raises
    :class:`~notifsvc.config.ConfigError` when a listed provider (``*_PROVIDERS``) of a
    wanted channel is unknown or cannot run."""
    out: dict[str, str] = {}
    for name, cls in REGISTRY.items():
        if settings.channels is not None and name not in settings.channels:
            reason: str | None = "not listed in NOTIFSVC_CHANNELS"
        else:
            reason = providers.disabled_reason(cls, settings, PROVIDERS)
        if reason is not None:
            out[name] = reason
    return out


def enabled(settings: Settings) -> dict[str, AnyChannel]:
    """An instance (no I/O yet) of every channel that can run with ``settings``: for a
    channel with a choice of providers, a :class:`notifsvc.providers.Failover` over them."""
    off = disabled(settings)
    return {name: build(name, settings) for name in REGISTRY if name not in off}
