"""The sms channel's recipient validation and Twilio answer classification."""

from __future__ import annotations

import pytest

from notifsvc.channels import PermanentError, Throttled, TransientError
from notifsvc.channels.sms import (
    SmsChannel,
    SmsSettings,
    classify_response,
    recipient_problem,
    twilio_detail,
)
from notifsvc.config import Secret, Settings
from unit.channels.contract import Case

CONFIG = SmsSettings(account_sid="AC123", auth_token=Secret("t"), from_="+15005550006")
SETTINGS = Settings().with_sections(CONFIG)
CASE = Case(
    CONFIG,
    ("account_sid", "auth_token", "from_"),
    "+14155552671",
    ("4155552671", "+1 415 555 2671", "+1415555", "+0123456789", "alice@example.com", ""),
)
TWILIO_400 = (
    '{"code": 21211, "message": "Invalid \'To\' Phone Number", '
    '"more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}'
)


@pytest.mark.parametrize("to", ["+14155552671", "+442071838750", "+4915123456789", "+61491570156"])
def test_accepts_valid_e164_numbers(to: str) -> None:
    assert recipient_problem(to) is None
    assert SmsChannel(SETTINGS).validate_recipient(to) == []


@pytest.mark.parametrize(
    ("to", "why"),
    [
        ("4155552671", "E.164"),  # no +
        ("+1 415 555 2671", "E.164"),  # formatting characters
        ("+1-415-555-2671", "E.164"),
        ("+0441234567", "E.164"),  # country codes never start with 0
        ("+1234567890123456", "E.164"),  # 16 digits
        ("+14155552671\n", "E.164"),
        ("+1415555", "not a valid"),  # well-formed but not a real number
        ("+99912345678", "not a"),  # unassigned country code
    ],
)
def test_rejects_other_numbers(to: str, why: str) -> None:
    problem = recipient_problem(to)
    assert problem is not None
    assert why in problem


def test_twilio_error_body_becomes_code_and_message() -> None:
    assert twilio_detail(TWILIO_400) == "Twilio error 21211: Invalid 'To' Phone Number"
    assert twilio_detail("<html>bad gateway</html>") == "<html>bad gateway</html>"
    assert twilio_detail('{"unexpected": true}') == '{"unexpected": true}'


def test_created_is_success() -> None:
    assert classify_response(201, {}, '{"sid": "SM1", "status": "queued"}') is None


def test_client_errors_are_permanent_with_twilio_code() -> None:
    error = classify_response(400, {}, TWILIO_400)
    assert isinstance(error, PermanentError)
    assert "21211" in str(error)
    assert "Invalid 'To' Phone Number" in str(error)


def test_auth_failure_is_permanent() -> None:
    body = '{"code": 20003, "message": "Authenticate", "status": 401}'
    assert isinstance(classify_response(401, {}, body), PermanentError)


def test_throttling_is_throttled_with_retry_after() -> None:
    body = '{"code": 20429, "message": "Too Many Requests", "status": 429}'
    error = classify_response(429, {"Retry-After": "7"}, body)
    assert isinstance(error, Throttled)
    assert error.retry_after == 7.0
    assert "20429" in str(error)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_transient(status: int) -> None:
    error = classify_response(status, {}, "")
    assert isinstance(error, TransientError) and not isinstance(error, Throttled)


def test_unsafe_api_url_disables_the_channel() -> None:
    settings = SETTINGS.configure(SmsSettings, api_url="file:///etc/passwd")
    reason = SmsChannel.disabled_reason(settings)
    assert reason is not None
    assert "NOTIFSVC_SMS_API_URL" in reason
