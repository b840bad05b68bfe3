"""Topic names, in one place. ``NOTIFSVC_TOPIC_PREFIX`` namespaces all of them."""

from __future__ import annotations

from notifsvc.config import Settings

OUTSTANDING = "outstanding-notifications"
DLQ = "notifications.dlq"


def outstanding(settings: Settings) -> str:
    return settings.topic(OUTSTANDING)


def dlq(settings: Settings) -> str:
    return settings.topic(DLQ)


def channel(settings: Settings, name: str) -> str:
    return settings.topic(f"notifications.{name}")


def all_topics(settings: Settings, channels: list[str]) -> list[str]:
    """Every topic the pipeline uses with these channels."""
    return [outstanding(settings), dlq(settings)] + [channel(settings, c) for c in channels]
