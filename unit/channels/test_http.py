"""The HTTP channel base: Retry-After, status classification, bounded reads, the send skeleton."""

from __future__ import annotations

import asyncio
import math
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import pytest
from aiohttp.base_protocol import BaseProtocol
from hypothesis import example, given
from hypothesis import strategies as st

from notifsvc.channels.base import (
    DeliveryError,
    NoSettings,
    PermanentError,
    Throttled,
    TransientError,
)
from notifsvc.channels.http import (
    MAX_ANSWER_BYTES,
    MAX_RETRY_AFTER,
    Answer,
    HttpChannel,
    Request,
    base_url_problem,
    classify_status,
    parse_retry_after,
    read_bounded,
)
from notifsvc.config import Settings
from notifsvc.model import FieldError, Notification


def test_success_is_no_error() -> None:
    assert classify_status("p", 204, {}, "") is None


@pytest.mark.parametrize("status", [408, 425, 500, 502, 503, 504, 599])
def test_retriable_statuses(status: int) -> None:
    error = classify_status("p", status, {"Retry-After": "7"}, "busy")
    assert type(error) is TransientError
    assert error.retriable and error.retry_after == 7.0


def test_429_is_throttled_with_or_without_retry_after() -> None:
    error = classify_status("p", 429, {"Retry-After": "7"}, "slow down")
    assert isinstance(error, Throttled)
    assert error.retry_after == 7.0 and "HTTP 429" in str(error)
    bare = classify_status("p", 429, {}, "")
    assert isinstance(bare, Throttled) and bare.retry_after is None
    garbage = classify_status("p", 429, {"Retry-After": "²"}, "")
    assert isinstance(garbage, Throttled) and garbage.retry_after is None


@pytest.mark.parametrize("status", [300, 307, 400, 401, 403, 404, 410, 422])
def test_permanent_statuses(status: int) -> None:
    error = classify_status("p", status, {}, "bad")
    assert isinstance(error, PermanentError)
    assert not error.retriable and f"HTTP {status}" in str(error)


def test_retry_after_as_http_date() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    value = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(value, now=now.timestamp()) == pytest.approx(30.0)


def test_retry_after_date_without_zone_is_utc() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert parse_retry_after("Thu, 01 Jan 2026 00:01:00 -0000", now=now) == pytest.approx(60.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        (" 12 ", 12.0),
        ("86401", MAX_RETRY_AFTER),
        ("9" * 5000, MAX_RETRY_AFTER),  # past int()'s digit limit
        ("Fri, 01 Jan 1999 00:00:00 GMT", 0.0),  # in the past
        ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER),
    ],
)
def test_retry_after_is_clamped(value: str, expected: float) -> None:
    assert parse_retry_after(value, now=1_767_225_600.0) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "soon",
        "²",  # str.isdigit() is true for it; float() refuses it
        "٣",  # an Arabic-Indic digit: float() would read it as 3
        "\uff11\uff12",  # full-width digits
        "-5",
        "1e9",
        "1.5",
        "NaN",
        "inf",
        "Mon, 01 Jan 10000 00:00:00 GMT",  # a year past 9999
        "Mon, 01 Jan 2026 25:61:61 GMT",
        "Mon, 01 Jan 2026 00:00:00 +9999",
    ],
)
def test_unusable_retry_after_is_none(value: str | None) -> None:
    assert parse_retry_after(value) is None


@given(st.text())
@example("٣")
@example("²")
@example("Sat, 01 Jan 10000 00:00:00 GMT")
def test_any_retry_after_is_none_or_a_sane_number(value: str) -> None:
    seconds = parse_retry_after(value)
    assert seconds is None or (math.isfinite(seconds) and 0.0 <= seconds <= MAX_RETRY_AFTER)


@given(st.from_regex(r"\A[ ]?[A-Za-z]{3}, \d{1,2} [A-Za-z]{3} \d{1,6} \d\d:\d\d(:\d\d)? \S{1,6}\Z"))
def test_any_date_shaped_retry_after_is_none_or_a_sane_number(value: str) -> None:
    seconds = parse_retry_after(value, now=0.0)
    assert seconds is None or (math.isfinite(seconds) and 0.0 <= seconds <= MAX_RETRY_AFTER)


def test_base_url_problem_names_the_variable() -> None:
    assert base_url_problem("NOTIFSVC_X", "https://api.example.com/v1") is None
    assert base_url_problem("NOTIFSVC_X", "http://127.0.0.1:8080") is None
    for bad in ("api.example.com", "ftp://api.example.com", "https://", "http://[::1"):
        problem = base_url_problem("NOTIFSVC_X", bad)
        assert problem is not None
        assert "NOTIFSVC_X" in problem


async def test_read_bounded_stops_at_the_limit() -> None:
    stream = _stream()
    for _ in range(40):
        stream.feed_data(b"x" * 10_000)  # 400 kB, and never an end
    assert len(await read_bounded(stream)) == MAX_ANSWER_BYTES
    assert len(await read_bounded(stream, 10)) == 10


async def test_read_bounded_returns_a_short_body_whole() -> None:
    stream = _stream()
    stream.feed_data(b"short")
    stream.feed_eof()
    assert await read_bounded(stream) == b"short"


def test_request_scrubs_its_secrets_longest_first() -> None:
    request = Request("u", b"", {}, "p", secrets=("abc", "abcdef"))
    assert request.scrub("x abcdef y abc") == "x [redacted] y [redacted]"


def _stream() -> aiohttp.StreamReader:
    loop = asyncio.get_running_loop()
    return aiohttp.StreamReader(BaseProtocol(loop), limit=2**20, loop=loop)  # never pauses


class _Broken(HttpChannel[NoSettings]):
    """A channel whose request building fails in a way nobody planned for."""

    name = "broken"
    failure: Exception = RuntimeError("boom")

    def validate_recipient(self, to: str) -> list[FieldError]:
        return []

    def request(self, notification: Notification) -> Request:
        raise self.failure

    def classify(self, answer: Answer, request: Request) -> DeliveryError | None:
        return None


def note() -> Notification:
    return Notification(uuid.uuid4(), "broken", "x", "y")


async def test_an_unexpected_exception_becomes_a_permanent_error() -> None:
    channel = _Broken(Settings())
    await channel.start()
    try:
        with pytest.raises(
            PermanentError, match="broken send failed unexpectedly: RuntimeError: boom"
        ):
            await channel.send(note())
    finally:
        await channel.stop()


async def test_a_client_error_while_building_is_transient() -> None:
    channel = _Broken(Settings())
    channel.failure = aiohttp.ClientConnectionError("gone")
    await channel.start()
    try:
        with pytest.raises(TransientError, match="broken request failed: ClientConnectionError"):
            await channel.send(note())
    finally:
        await channel.stop()
