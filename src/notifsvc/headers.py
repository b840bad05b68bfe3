"""The pipeline's own Kafka headers, named in one place and read defensively.

Only the pipeline writes these headers, but anything can write to a topic: a header that is
missing, not a number, not finite or out of range reads as its default (clamped into range),
never as an exception that could stop a stage.
"""

from __future__ import annotations

import math

from notifsvc.kafka import Record

#: Delivery attempts made in earlier passes (retry lane, dead-letter topic).
ATTEMPTS = "notifsvc-attempts"
#: Passes through the retry lane so far: the retry delay doubles with each.
PASSES = "notifsvc-passes"
#: Unix seconds before which a retry-lane message must not be taken up.
NOT_BEFORE = "notifsvc-not-before"
#: Unix seconds when a delay tier's consumer takes a scheduled message up again (hops it
#: to a shorter tier or releases it when due; notifsvc/schedule.py).
HOP_AT = "notifsvc-hop-at"
#: Attempts recorded before an operator's replay: the attempt budget counts from here, the
#: attempt numbers go on from ``ATTEMPTS``.
REPLAYED_FROM = "notifsvc-replayed-from"
#: Unix seconds of that replay: the throttling budget and the reconciler's expiry count from
#: here instead of from the notification's acceptance (a replay of last week's failures is
#: not "too old" at once).
REPLAYED_AT = "notifsvc-replayed-at"


def replayed(attempts: int, at: float) -> tuple[tuple[str, bytes], tuple[str, bytes]]:
    """The headers of an operator's requeue made at ``at`` (unix seconds) of a notification
    with ``attempts`` attempts so far (send ``ATTEMPTS`` with them)."""
    return (REPLAYED_FROM, str(attempts).encode()), (REPLAYED_AT, f"{at:.3f}".encode())


def _number(record: Record, name: str) -> float | None:
    raw = record.header(name)
    if raw is None or len(raw) > 32:
        return None
    try:
        value = float(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def read_int(record: Record, name: str, *, default: int = 0, high: int = 1_000_000) -> int:
    """Header ``name`` as an integer in ``[0, high]``; ``default`` when unusable."""
    value = _number(record, name)
    if value is None:
        return default
    return int(min(max(value, 0), high))


def read_float(record: Record, name: str, *, default: float, low: float, high: float) -> float:
    """Header ``name`` as a number in ``[low, high]``; ``default`` when unusable."""
    value = _number(record, name)
    if value is None:
        return default
    return min(max(value, low), high)
