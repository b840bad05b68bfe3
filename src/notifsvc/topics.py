"""Topic names, in one place. ``NOTIFSVC_TOPIC_PREFIX`` namespaces all of them."""

from __future__ import annotations

from notifsvc.config import Settings

OUTSTANDING = "outstanding-notifications"
DLQ = "notifications.dlq"


def outstanding(settings: Settings) -> str:
    return settings.topic(OUTSTANDING)


def dlq(settings: Settings) -> str:
    return settings.topic(DLQ)


#: Each channel has one topic per lane, so that a backlog in one lane never delays another:
#: ``high`` and ``low`` priority next to the ``normal`` one, and ``retry`` for sends that
#: failed for now and are taken up again when due.
LANES = ("high", "normal", "low", "retry")


def channel(settings: Settings, name: str, lane: str = "normal") -> str:
    if lane not in LANES:
        raise ValueError(f"unknown lane {lane!r}")
    suffix = "" if lane == "normal" else f".{lane}"
    return settings.topic(f"notifications.{name}{suffix}")


#: Status-callback events (notifsvc/events.py) and the dispatcher's own retry lane and
#: dead-letter topic: a dead callback receiver never touches the sends' topics.
CALLBACKS = "notifications.callbacks"
CALLBACK_LANES = ("normal", "retry")


def callbacks(settings: Settings, lane: str = "normal") -> str:
    if lane not in CALLBACK_LANES:
        raise ValueError(f"unknown callback lane {lane!r}")
    return settings.topic(CALLBACKS if lane == "normal" else f"{CALLBACKS}.{lane}")


def callbacks_dlq(settings: Settings) -> str:
    return settings.topic(f"{CALLBACKS}.dlq")


#: The delay tiers scheduled notifications wait in (notifsvc/schedule.py), shortest first:
#: ``notifications.delay.<tier>``, each read by the scheduler (a duty of the router).
DELAY_TIERS = ("1s", "10s", "1m", "10m", "1h", "1d")


def delay(settings: Settings, tier: str) -> str:
    if tier not in DELAY_TIERS:
        raise ValueError(f"unknown delay tier {tier!r}")
    return settings.topic(f"notifications.delay.{tier}")


def all_topics(settings: Settings, channels: list[str]) -> list[str]:
    """Every topic the pipeline uses with these channels."""
    lanes = [channel(settings, c, lane) for c in channels for lane in LANES]
    callback = [callbacks(settings, lane) for lane in CALLBACK_LANES] + [callbacks_dlq(settings)]
    tiers = [delay(settings, tier) for tier in DELAY_TIERS]
    return [outstanding(settings), dlq(settings), *lanes, *callback, *tiers]


#: Client and consumer-group name of the router (the group is prefixed like the topics).
ROUTER = "notifsvc-router"


def notificator_name(channel_name: str) -> str:
    """Client name (and service name in traces) of a channel's notificator."""
    return f"notifsvc-notificator-{channel_name}"


def router_group(settings: Settings) -> str:
    return settings.topic(ROUTER)


def notificator_group(settings: Settings, channel_name: str, lane: str) -> str:
    """The consumer group of one lane of a channel's notificator (one group per lane, so
    that a backlog in one lane never delays another)."""
    if lane not in LANES:
        raise ValueError(f"unknown lane {lane!r}")
    suffix = "" if lane == "normal" else f"-{lane}"
    return settings.topic(notificator_name(channel_name) + suffix)


#: Client name of the scheduler (the delay tiers' consumers, in the router process).
SCHEDULER = "notifsvc-scheduler"


def scheduler_group(settings: Settings, tier: str) -> str:
    """The consumer group of one delay tier (one group per tier, so that a long wait in
    one never holds up another)."""
    if tier not in DELAY_TIERS:
        raise ValueError(f"unknown delay tier {tier!r}")
    return settings.topic(f"{SCHEDULER}-{tier}")


#: Client name of the status-callback dispatcher (``notifsvc callbacks``).
DISPATCHER = "notifsvc-callbacks"


def dispatcher_group(settings: Settings, lane: str) -> str:
    """The consumer group of one lane of the callback dispatcher."""
    if lane not in CALLBACK_LANES:
        raise ValueError(f"unknown callback lane {lane!r}")
    return settings.topic(DISPATCHER if lane == "normal" else f"{DISPATCHER}-{lane}")
