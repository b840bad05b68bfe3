"""Messages for ``notifications.dlq``: the original bytes plus headers saying why and whence.

The header names are the wire contract of the dead-letter topic; nothing else spells them.
"""

from __future__ import annotations

import logging

from notifsvc import topics
from notifsvc.config import Settings
from notifsvc.kafka import Headers, KafkaRecordError, Producer, Record

log = logging.getLogger(__name__)

REASON = "notifsvc-error"
STAGE = "notifsvc-stage"
SOURCE_TOPIC = "notifsvc-source-topic"
SOURCE_PARTITION = "notifsvc-source-partition"
SOURCE_OFFSET = "notifsvc-source-offset"
#: Set when the original value was too large even for the dead-letter topic and was dropped.
VALUE_DROPPED = "notifsvc-value-dropped"
#: Longest reason kept in a header.
MAX_REASON_BYTES = 2_000

Message = tuple[str, bytes, bytes | None, Headers]


def reason_header(reason: str) -> tuple[str, bytes]:
    return REASON, reason.encode(errors="replace")[:MAX_REASON_BYTES]


def dead_letter(
    settings: Settings, record: Record, *, reason: str, stage: str, topic: str | None = None
) -> Message:
    """``record`` for the dead-letter ``topic`` (``notifications.dlq`` unless a stage has
    its own, as the callback dispatcher has), with the headers that say why and whence."""
    headers = (
        reason_header(reason),
        (STAGE, stage.encode()),
        (SOURCE_TOPIC, record.topic.encode()),
        (SOURCE_PARTITION, str(record.partition).encode()),
        (SOURCE_OFFSET, str(record.offset).encode()),
    )
    return topic or topics.dlq(settings), record.value or b"", record.key, headers


async def isolate(
    producer: Producer,
    settings: Settings,
    record: Record,
    *,
    reason: str,
    stage: str,
    topic: str | None = None,
) -> None:
    """Dead-letter ``record``; if the broker refuses it for good (too large), dead-letter its
    headers and reason without the value, so that the record is still accounted for.
    An outage raises, for the caller to retry."""
    message = dead_letter(settings, record, reason=reason, stage=stage, topic=topic)
    try:
        await producer.send_all([message])
    except KafkaRecordError as exc:
        log.error("%s: dead-lettering without the value: %s", stage, exc)
        await producer.send_all([without_value(message)])


def without_value(message: Message) -> Message:
    """``message`` with its value dropped (and its key cut to 256 bytes), saying so: what is
    left when the broker refused the whole of it for good."""
    topic, _value, key, headers = message
    short_key = key[:256] if key else None
    return topic, b"", short_key, (*headers, (VALUE_DROPPED, b"1"))
