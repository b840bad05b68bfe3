"""Where a scheduled notification waits, and what to do with it when a tier takes it up.

A notification with a ``send_at`` in the future waits in Kafka, not in a table that someone
polls: in one of the *delay tiers*, topics ``notifications.delay.<tier>`` (:data:`TIERS`:
1 s, 10 s, 1 min, 10 min, 1 h, 1 day). A message goes to the longest tier not longer than the time
it has left, with a header (:data:`notifsvc.headers.HOP_AT`) saying when its tier's consumer
takes it up again: ``now + delay``, or its due time when that is sooner (only in the 1 s
tier). Because every message of a tier (but the shortest) waits exactly the tier's delay,
the messages of a partition come due in the order they were written, so a consumer only
ever waits for its head (:mod:`notifsvc.scheduler`). Taken up, a message *hops* to a
shorter tier while it is not due, is *released* to its channel's lane when it is, and is
*expired* when its ``expires_at`` passed first. A notification due in ``r`` seconds makes
at most about ``9`` hops per tier (``23`` in the 1 h tier), never one that could overshoot
its due time.

Only a notification due further ahead than ``NOTIFSVC_SCHEDULE_PARK_AFTER_SECONDS`` is
*parked* in the database (:func:`first_hop` says None): an elected reader moves the parked
rows due within the look-ahead into the tiers once per bucket
(``NOTIFSVC_SCHEDULE_BUCKET_SECONDS``), and no table is scanned more often than once per
bucket. The park horizon (6 days by default) must stay below the tier topics' retention (7
days in deploy/k8s): only delays beyond what the topics keep need the database.

Time comes from the clock of the process deciding; every decision that could send early
compares the notification's own ``send_at`` with that clock, so a message is released early
by at most the skew of that process's clock (documented in the README, kept small by NTP).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from notifsvc import headers, topics
from notifsvc.config import Settings
from notifsvc.deadletter import Message
from notifsvc.kafka import Headers, Record
from notifsvc.model import Notification


@dataclass(frozen=True, slots=True)
class Tier:
    """A delay tier: its name (the topic suffix) and how long a message waits in it."""

    name: str
    delay: float


#: The tiers, shortest first. About ten times apart, so that a notification makes few hops
#: (at most 23 in the 1 h tier, below a day).
TIERS = tuple(
    Tier(name, delay)
    for name, delay in zip(
        topics.DELAY_TIERS, (1.0, 10.0, 60.0, 600.0, 3600.0, 86400.0), strict=True
    )
)
#: Seconds a ``notifsvc-hop-at`` header may lie beyond ``now + delay`` of its tier (the skew
#: between the process that wrote it and the one reading it): a later one was written by a
#: clock far off, or by something else, and is taken as ``now + delay``.
HOP_SLACK = 5.0


class Action(enum.Enum):
    """What a tier consumer does with a message it took up."""

    WAIT = "wait"  # not yet time to look at it again
    HOP = "hop"  # not due: to a shorter tier
    RELEASE = "release"  # due: to its channel's lane
    EXPIRE = "expire"  # its expires_at passed: never sent


def tier_for(remaining: float) -> Tier:
    """The tier a notification due in ``remaining`` seconds waits in: the longest that is
    not longer than that (the shortest when it is due within a second, or overdue)."""
    chosen = TIERS[0]
    for tier in TIERS:
        if tier.delay <= remaining:
            chosen = tier
    return chosen


def hop(settings: Settings, n: Notification, trace: Headers, now: float) -> Message:
    """The message that puts ``n`` (with a ``send_at``) into the tier for its time left."""
    due = n.send_at if n.send_at is not None else now
    tier = tier_for(due - now)
    hop_at = min(due, now + tier.delay)
    hop_headers: Headers = ((headers.HOP_AT, f"{hop_at:.3f}".encode()), *trace)
    return topics.delay(settings, tier.name), n.encode(), n.key, hop_headers


def first_hop(settings: Settings, n: Notification, trace: Headers, now: float) -> Message | None:
    """The router's placement of a notification due later: the message into its tier, or
    None when it is due beyond ``NOTIFSVC_SCHEDULE_PARK_AFTER_SECONDS`` (the row stays
    ``scheduled`` in the database, and the parked reader moves it in when it comes near)."""
    if n.send_at is not None and n.send_at - now > settings.schedule_park_after_seconds:
        return None
    return hop(settings, n, trace, now)


def release(settings: Settings, n: Notification, trace: Headers) -> Message:
    """The message that hands a due notification to its channel's lane for its priority."""
    topic = topics.channel(settings, n.channel, n.priority.value)
    return topic, n.encode(), n.key, trace


def hop_at(record: Record, tier: Tier, now: float) -> float:
    """When the consumer of ``tier`` takes ``record`` up: its header, no later than
    ``now + delay`` (plus :data:`HOP_SLACK`); a missing or unusable header reads as now
    (the message is then looked at at once, which can only hop it again, never send early)."""
    return headers.read_float(
        record, headers.HOP_AT, default=now, low=0.0, high=now + tier.delay + HOP_SLACK
    )


def acts_at(n: Notification, hop_time: float) -> float:
    """When a message taken up at ``hop_time`` needs acting on: then, or when due if sooner."""
    due = n.send_at if n.send_at is not None else -math.inf
    return min(hop_time, due)


def decide(n: Notification, hop_time: float, now: float) -> Action:
    """What to do at ``now`` with ``n`` read from a tier, to be taken up at ``hop_time``."""
    if n.expired(now):
        return Action.EXPIRE
    if n.send_at is None or n.send_at <= now:
        return Action.RELEASE
    if hop_time > now:
        return Action.WAIT
    return Action.HOP
