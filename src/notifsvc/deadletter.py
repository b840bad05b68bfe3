"""Messages for ``notifications.dlq``: the original bytes plus headers saying why and whence."""

from __future__ import annotations

from notifsvc import topics
from notifsvc.config import Settings
from notifsvc.kafka import Headers, Record

REASON = "notifsvc-error"
STAGE = "notifsvc-stage"
SOURCE_TOPIC = "notifsvc-source-topic"
SOURCE_PARTITION = "notifsvc-source-partition"
SOURCE_OFFSET = "notifsvc-source-offset"

Message = tuple[str, bytes, bytes | None, Headers]


def dead_letter(settings: Settings, record: Record, *, reason: str, stage: str) -> Message:
    headers = (
        (REASON, reason.encode()[:2000]),
        (STAGE, stage.encode()),
        (SOURCE_TOPIC, record.topic.encode()),
        (SOURCE_PARTITION, str(record.partition).encode()),
        (SOURCE_OFFSET, str(record.offset).encode()),
    )
    return topics.dlq(settings), record.value or b"", record.key, headers
