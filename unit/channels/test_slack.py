"""The slack channel's recipient validation and Web API answer classification."""

from __future__ import annotations

import uuid

import pytest

from notifsvc.channels import PermanentError, Throttled, TransientError
from notifsvc.channels.slack import SlackChannel, SlackSettings, classify_response, message_text
from notifsvc.config import Secret, Settings
from notifsvc.model import Notification
from unit.channels.contract import Case

SETTINGS = Settings().with_sections(SlackSettings(token=Secret("xoxb-1")))
CASE = Case(
    SlackSettings(token=Secret("xoxb-1")),
    ("token",),
    "C0123456789",
    ("general", "#General", "c0123456789", "#" + "a" * 81, "X0123456789", ""),
)


@pytest.mark.parametrize(
    "to",
    [
        "C0123456789",
        "G01234567",
        "D0123ABCDEF",
        "U0123ABCD",
        "W0123456789",
        "#general",
        "#ops-alerts_2",
        "#" + "a" * 80,
    ],
)
def test_accepts_channel_ids_user_ids_and_names(to: str) -> None:
    assert SlackChannel(SETTINGS).validate_recipient(to) == []


@pytest.mark.parametrize(
    "to",
    [
        "general",  # a name needs its '#'
        "#General",
        "#ops alerts",
        "#ops.alerts",
        "#",
        "#" + "a" * 81,
        "c0123456789",
        "C0123",  # too short for an ID
        "X0123456789",
        "C0123456789 ",
        "@alice",
    ],
)
def test_rejects_other_recipients(to: str) -> None:
    assert [e.field for e in SlackChannel(SETTINGS).validate_recipient(to)] == ["to"]


def note(txt: str, subject: str | None = None) -> Notification:
    return Notification(uuid.uuid4(), "slack", "#ops", txt, subject=subject)


def test_subject_is_a_bold_first_line() -> None:
    assert message_text(note("disk full", "Disk")) == "*Disk*\ndisk full"
    assert message_text(note("disk full")) == "disk full"


def test_subject_and_txt_together_must_fit() -> None:
    channel = SlackChannel(SETTINGS)
    assert channel.validate(note("x" * 40_000)) == []
    errors = channel.validate(note("x" * 39_990, subject="s" * 20))
    assert [e.field for e in errors] == ["subject"]


def test_ok_true_is_success() -> None:
    assert classify_response(200, {}, b'{"ok": true, "channel": "C1", "ts": "1.2"}') is None


@pytest.mark.parametrize(
    "error",
    [
        "channel_not_found",
        "not_in_channel",
        "invalid_auth",
        "account_inactive",
        "is_archived",
        "msg_too_long",
        "no_text",
        "some_error_slack_adds_later",
    ],
)
def test_ok_false_errors_are_permanent(error: str) -> None:
    raw = f'{{"ok": false, "error": "{error}"}}'.encode()
    result = classify_response(200, {}, raw)
    assert isinstance(result, PermanentError)
    assert error in str(result)


@pytest.mark.parametrize(
    "error", ["internal_error", "service_unavailable", "request_timeout", "fatal_error"]
)
def test_slack_side_errors_are_transient(error: str) -> None:
    raw = f'{{"ok": false, "error": "{error}"}}'.encode()
    result = classify_response(200, {}, raw)
    assert isinstance(result, TransientError) and not isinstance(result, Throttled)


def test_ratelimited_is_throttled_with_retry_after() -> None:
    result = classify_response(200, {"Retry-After": "12"}, b'{"ok": false, "error": "ratelimited"}')
    assert isinstance(result, Throttled)
    assert result.retry_after == 12.0


def test_ratelimited_without_retry_after_is_throttled() -> None:
    result = classify_response(200, {}, b'{"ok": false, "error": "ratelimited"}')
    assert isinstance(result, Throttled)
    assert result.retry_after is None


def test_http_429_is_throttled_with_retry_after() -> None:
    result = classify_response(429, {"Retry-After": "3"}, b"")
    assert isinstance(result, Throttled)
    assert result.retry_after == 3.0


def test_http_5xx_and_non_json_are_transient() -> None:
    assert isinstance(classify_response(503, {}, b"<html></html>"), TransientError)
    assert isinstance(classify_response(200, {}, b"<html>proxy</html>"), TransientError)
    assert isinstance(classify_response(200, {}, b"[1, 2]"), TransientError)


def test_http_4xx_is_permanent() -> None:
    assert isinstance(classify_response(404, {}, b"not found"), PermanentError)


def test_unsafe_api_url_disables_the_channel() -> None:
    settings = SETTINGS.configure(SlackSettings, api_url="slack.com/api")
    reason = SlackChannel.disabled_reason(settings)
    assert reason is not None
    assert "NOTIFSVC_SLACK_API_URL" in reason
