from __future__ import annotations

import io
import logging
import re
import sys
import uuid
from collections.abc import Iterator

import orjson
import pytest

from notifsvc import logs
from notifsvc.logs import LIBRDKAFKA, JsonFormatter, TextFormatter, setup, stage_of


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


class Terminal(io.StringIO):
    """What ``setup`` writes to, taken for a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    root = logging.getLogger()
    librdkafka = logging.getLogger(LIBRDKAFKA)
    saved = (root.handlers[:], root.level, librdkafka.level, librdkafka.filters[:])
    yield
    root.handlers[:], level, kafka_level, librdkafka.filters[:] = saved
    root.setLevel(level)
    librdkafka.setLevel(kafka_level)


def emit(stream: io.StringIO, uid: uuid.UUID) -> str:
    logging.getLogger("notifsvc.x").warning("%d left", 3, extra={"uuid": uid})
    return stream.getvalue()


@pytest.mark.usefixtures("restore_logging")
def test_text_on_a_terminal_json_otherwise_or_when_asked() -> None:
    uid = uuid.uuid4()
    setup("INFO", "auto", stage="router", stream=(terminal := Terminal()))
    text = emit(terminal, uid)
    assert re.fullmatch(
        rf"\d\d:\d\d:\d\d\.\d{{3}} \x1b\[33mWARN \x1b\[0m \x1b\[36mrouter +\x1b\[0m 3 left "
        rf"\x1b\[2m\[uuid={uid}\]\x1b\[0m\n",
        text,
    ), text
    for stream, fmt in ((io.StringIO(), "auto"), (Terminal(), "json")):
        setup("INFO", fmt, stage="router", stream=stream)
        event = orjson.loads(emit(stream, uid))
        assert (event["level"], event["msg"], event["stage"]) == ("warning", "3 left", "router")
        assert event["uuid"] == str(uid)
    setup("INFO", "text", stage="router", stream=(piped := io.StringIO()))
    assert "\x1b[" not in emit(piped, uid) and "router" in piped.getvalue()


@pytest.mark.usefixtures("restore_logging")
def test_no_colour_when_no_color_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    setup("INFO", "auto", stream=(terminal := Terminal()))
    line = emit(terminal, uuid.uuid4())
    assert "\x1b[" not in line and "WARN" in line


def test_text_lines_are_aligned_whatever_the_level_and_stage() -> None:
    lines = [
        TextFormatter(stage=stage).format(
            logging.makeLogRecord({"levelno": no, "levelname": name, "msg": "X"})
        )
        for stage, no, name in (
            ("dev", logging.INFO, "INFO"),
            ("notify/webhook", logging.WARNING, "WARNING"),
            ("router", logging.CRITICAL, "CRITICAL"),
        )
    ]
    assert len({line.index("X") for line in lines}) == 1, lines


@pytest.mark.usefixtures("restore_logging")
def test_librdkafka_chatter_is_debug_unless_it_is_an_error() -> None:
    librdkafka = logging.getLogger(LIBRDKAFKA)

    def lines_at(level: str) -> list[dict[str, str]]:
        setup(level, "json", stream=(out := io.StringIO()))
        # as confluent-kafka calls it: the syslog level mapped to logging's
        librdkafka.log(logging.WARNING, "%s [%s] %s", "FAIL", "rdkafka#consumer-1", "refused")
        librdkafka.log(logging.INFO, "%s [%s] %s", "CONFWARN", "rdkafka#producer-2", "note")
        librdkafka.log(logging.ERROR, "%s [%s] %s", "ERROR", "rdkafka#consumer-1", "all down")
        return [orjson.loads(line) for line in out.getvalue().splitlines()]

    assert [(e["level"], e["msg"]) for e in lines_at("INFO")] == [
        ("error", "ERROR [rdkafka#consumer-1] all down")
    ]
    assert [e["level"] for e in lines_at("DEBUG")] == ["debug", "debug", "error"]
    assert lines_at("ERROR")[0]["level"] == "error"


def test_the_stage_is_named_after_the_command() -> None:
    assert stage_of(["router"]) == "router"
    assert stage_of(["notificator", "--channel", "email"]) == "notify/email"
    assert stage_of(["notificator", "--channel=sms"]) == "notify/sms"
    assert stage_of(["dev", "--keep"]) == "dev"
    assert stage_of([]) is None and stage_of(["--help"]) is None
    assert stage_of(["short", "--seed", "1"]) is None  # not a notifsvc command line


def test_another_process_line_renders_with_its_stage_and_uuid() -> None:
    uid = uuid.uuid4()
    line = JsonFormatter(stage="notify/sms").format(record("sent %s", "ok", uuid=uid))
    again = logs.record_of(orjson.loads(line))
    assert (again.levelno, again.getMessage(), again.name) == (
        logging.WARNING,
        "sent ok",
        "notifsvc.x",
    )
    text = TextFormatter(stage="dev").format(again)
    assert " WARN  notify/sms " in text and text.endswith(f"sent ok [uuid={uid}]")
    assert orjson.loads(JsonFormatter(stage="dev").format(again))["stage"] == "notify/sms"
