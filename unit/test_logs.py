from __future__ import annotations

import logging
import sys
import uuid

import orjson

from notifsvc.logs import JsonFormatter, TextFormatter


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("notifsvc.x", logging.WARNING, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


def test_json_lines_carry_the_notification_uuid() -> None:
    uid = uuid.uuid4()
    event = orjson.loads(JsonFormatter().format(record("failed after %d attempts", 3, uuid=uid)))
    assert event["msg"] == "failed after 3 attempts"
    assert (
        event["uuid"] == str(uid)
        and event["level"] == "warning"
        and event["logger"] == "notifsvc.x"
    )


def test_json_line_is_one_line_even_with_a_traceback() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "oops", (), sys.exc_info())
    line = JsonFormatter().format(rec)
    assert "\n" not in line and "ValueError" in orjson.loads(line)["exc"]


def test_text_lines_show_the_uuid_once() -> None:
    uid = uuid.uuid4()
    assert TextFormatter().format(record("hello", uuid=uid)).endswith(f"[uuid={uid}]")
    assert TextFormatter().format(record("%s failed", uid, uuid=uid)).count(str(uid)) == 1
