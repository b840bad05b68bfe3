"""``log``: append one JSON line per delivery to a file (or stdout).

``NOTIFSVC_LOG_PATH`` names the file (stdout when unset). Useful for local runs and tests.
Each line is written with a single ``write`` on a file
opened with ``O_APPEND``, so concurrent sends and several processes never interleave lines.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import orjson

from notifsvc.channels.base import Channel, TransientError
from notifsvc.config import Section, setting
from notifsvc.model import FieldError, Notification

#: Every character ``str.isspace()`` is true for, spelled out: ``\s`` means other things in
#: Python and in JSON Schema's ECMA-262 patterns.
WHITESPACE = (
    "\\u0009-\\u000d\\u001c-\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a"
    "\\u2028\\u2029\\u202f\\u205f\\u3000"
)
_VISIBLE = re.compile(f"[^{WHITESPACE}]")


@dataclass(frozen=True)
class LogSettings(Section, prefix="log"):
    path: Path | None = setting(
        None, Path, doc="file the channel appends one JSON line per delivery to (else stdout)"
    )


class LogChannel(Channel[LogSettings]):
    name = "log"
    Config = LogSettings
    #: What ``to`` must match (somewhere): a character that is not white space. Exactly the
    #: rule of :meth:`validate_recipient`; the OpenAPI document publishes it.
    recipient_pattern: ClassVar[str] = _VISIBLE.pattern

    _fd: int | None = None
    _owns_fd = False

    def validate_recipient(self, to: str) -> list[FieldError]:
        return [] if _VISIBLE.search(to) else [FieldError("to", "must not be empty")]

    async def start(self) -> None:
        if self._fd is not None:
            return
        path = self.config.path
        if path is None:
            self._fd, self._owns_fd = sys.stdout.fileno(), False
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._owns_fd = True

    async def stop(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None and self._owns_fd:
            os.close(fd)

    def synchronous_send(self) -> Callable[[Notification], None] | None:
        # A subclass or an instance with a send of its own is called through that send.
        if type(self).send is not LogChannel.send or "send" in vars(self):
            return None
        return self.write

    async def send(self, notification: Notification) -> None:
        self.write(notification)

    def write(self, notification: Notification) -> None:
        """:meth:`send`, which never waits: one ``write`` of one line."""
        if self._fd is None:
            raise TransientError("log channel is not started")
        line = orjson.dumps(
            {
                "uuid": notification.uuid,  # orjson writes a UUID as str() does, faster
                "to": notification.to,
                "txt": notification.txt,
                "subject": notification.subject,
                "time": time.time(),
            },
            option=orjson.OPT_APPEND_NEWLINE,
        )
        try:
            os.write(self._fd, line)
        except OSError as exc:
            raise TransientError(f"cannot write to the log channel: {exc}") from exc
