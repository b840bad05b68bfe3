"""Logging set-up shared by every command: JSON lines for machines, text for people.

Every line about a notification carries its ``uuid`` (pass ``extra={"uuid": ...}``);
message bodies and secrets are never logged at info level. Each line also names its
``stage`` (``receiver``, ``router``, ``notify/<channel>``, ...), the command's own unless
a record carries another one (``notifsvc dev`` re-emits its stages' lines with theirs).

librdkafka's own lines (logger ``notifsvc.librdkafka``) are at DEBUG unless they report an
error: it logs every reconnection, and a person does not need to see them.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import IO, Any

import orjson

#: ``extra`` keys copied into JSON events.
CONTEXT = ("uuid", "channel", "stage")
#: The logger confluent-kafka hands librdkafka's lines to (see :mod:`notifsvc.kafka`).
LIBRDKAFKA = "notifsvc.librdkafka"
#: Width of the stage column of text lines (``notify/webhook``).
STAGE_WIDTH = 14

_LEVELS = {
    "DEBUG": "DEBUG",
    "INFO": "INFO",
    "WARNING": "WARN",
    "ERROR": "ERROR",
    "CRITICAL": "CRIT",
}
_COLOURS = {"DEBUG": "2", "INFO": "32", "WARNING": "33", "ERROR": "31", "CRITICAL": "1;31"}
_DIM, _CYAN, _RESET = "\x1b[2m", "\x1b[36m", "\x1b[0m"


#: The ``notifsvc`` commands (see :mod:`notifsvc.cli`).
COMMANDS = frozenset(
    {"receiver", "router", "notificator", "callbacks", "migrate", "topics", "status", "dev"}
)


def stage_of(argv: Sequence[str]) -> str | None:
    """The stage a ``notifsvc`` command line runs: ``router``, ``notify/email``, ``dev``..."""
    args = list(argv)
    if not args or args[0] not in COMMANDS:
        return None
    if args[0] == "notificator":
        for i, arg in enumerate(args):
            if arg.startswith("--channel="):
                return f"notify/{arg.split('=', 1)[1]}"
            if arg == "--channel" and i + 1 < len(args):
                return f"notify/{args[i + 1]}"
        return "notificator"
    return args[0]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, process and context."""

    def __init__(self, *, stage: str | None = None) -> None:
        super().__init__()
        self.stage = stage

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
        if self.stage is not None:
            event.setdefault("stage", self.stage)
        if record.exc_info:
            event["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            event["exc"] = record.exc_text
        return orjson.dumps(event).decode()


class TextFormatter(logging.Formatter):
    """For a person: ``12:00:01.234 WARN  router         message [uuid=...]``, the level
    coloured (and the stage and uuid set off) when ``colour``."""

    def __init__(self, *, stage: str | None = None, colour: bool = False) -> None:
        super().__init__()
        self.stage = stage
        self.colour = colour

    def _paint(self, code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if self.colour else text

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        millis = int(record.created * 1000) % 1000
        level = _LEVELS.get(record.levelname, record.levelname[:5]).ljust(5)
        level = self._paint(f"\x1b[{_COLOURS.get(record.levelname, '0')}m", level)
        stage = str(record.__dict__.get("stage") or self.stage or record.name)
        stage = self._paint(_CYAN, stage.ljust(STAGE_WIDTH))
        message = record.getMessage()
        uid = record.__dict__.get("uuid")
        if uid is not None and str(uid) not in message:
            message += " " + self._paint(_DIM, f"[uuid={uid}]")
        line = f"{stamp}.{millis:03d} {level} {stage} {message}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        return f"{line}\n{record.exc_text}" if record.exc_text else line


class LibrdkafkaLevels(logging.Filter):
    """librdkafka's lines at DEBUG unless they are errors; those under ``threshold`` (the
    level asked for) are then dropped, since handlers do not look at the root's level."""

    def __init__(self, threshold: int) -> None:
        super().__init__()
        self.threshold = threshold

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return record.levelno >= self.threshold


def wants_text(fmt: str, stream: IO[str]) -> bool:
    """``fmt`` ``text``, or ``auto`` on a terminal."""
    return fmt == "text" or (fmt == "auto" and stream.isatty())


def wants_colour(stream: IO[str], environ: Mapping[str, str] | None = None) -> bool:
    """Colour on a terminal, unless ``NO_COLOR`` is set or the terminal is ``dumb``."""
    env = os.environ if environ is None else environ
    return stream.isatty() and "NO_COLOR" not in env and env.get("TERM") != "dumb"


def setup(
    level: str = "INFO",
    fmt: str = "auto",
    *,
    stage: str | None = None,
    stream: IO[str] | None = None,
) -> None:
    """``fmt``: ``json``, ``text``, or ``auto`` (text on a terminal, JSON otherwise).
    ``stage`` defaults to the one the command line names (:func:`stage_of`)."""
    out = sys.stderr if stream is None else stream
    stage = stage if stage is not None else stage_of(sys.argv[1:])
    handler = logging.StreamHandler(out)
    formatter: logging.Formatter
    if wants_text(fmt, out):
        formatter = TextFormatter(stage=stage, colour=wants_colour(out))
    else:
        formatter = JsonFormatter(stage=stage)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    librdkafka = logging.getLogger(LIBRDKAFKA)
    librdkafka.setLevel(logging.NOTSET)
    librdkafka.filters[:] = [LibrdkafkaLevels(root.level)]


def record_of(event: Mapping[str, Any]) -> logging.LogRecord:
    """A record from one JSON line of :class:`JsonFormatter` (another process's)."""
    level = str(event.get("level", "info")).upper()
    fields: dict[str, Any] = {
        "name": str(event.get("logger", "?")),
        "levelname": level,
        "levelno": logging.getLevelName(level) if level in _COLOURS else logging.INFO,
        "msg": str(event.get("msg", "")),
        "args": None,
        "created": float(event.get("ts", time.time())),
        "process": event.get("pid"),
        "exc_text": event.get("exc"),
    }
    for key in CONTEXT:
        if event.get(key) is not None:
            fields[key] = event[key]
    return logging.makeLogRecord(fields)
