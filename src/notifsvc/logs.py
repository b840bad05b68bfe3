"""Logging set-up shared by every command: JSON lines for machines, text for people.

Every line about a notification carries its ``uuid`` (pass ``extra={"uuid": ...}``);
message bodies and secrets are never logged at info level.
"""

from __future__ import annotations

import logging
import sys

import orjson

#: ``extra`` keys copied into JSON events.
CONTEXT = ("uuid", "channel", "stage")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, process and context."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, object] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        for key in CONTEXT:
            value = record.__dict__.get(key)
            if value is not None:
                event[key] = str(value)
        if record.exc_info:
            event["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(event).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        uid = record.__dict__.get("uuid")
        return f"{line} [uuid={uid}]" if uid is not None and str(uid) not in line else line


def setup(level: str = "INFO", fmt: str = "auto") -> None:
    """``fmt``: ``json``, ``text``, or ``auto`` (text on a terminal, JSON otherwise)."""
    handler = logging.StreamHandler(sys.stderr)
    text = fmt == "text" or (fmt == "auto" and sys.stderr.isatty())
    handler.setFormatter(TextFormatter() if text else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # librdkafka repeats every connection failure; keep them at warning and above.
    logging.getLogger("notifsvc.librdkafka").setLevel(max(logging.WARNING, root.level))
