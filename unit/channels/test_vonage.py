"""The Vonage provider of the sms channel: its request, and what its answers mean."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qsl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifsvc.channels.base import PermanentError, Throttled, TransientError
from notifsvc.channels.http import Answer
from notifsvc.channels.vonage import VonageChannel, VonageSettings, classify_parts
from notifsvc.config import Secret, Settings
from notifsvc.model import Notification

CONFIG = VonageSettings(
    api_url="https://rest.example/",
    api_key="key",
    api_secret=Secret("s3cr3t"),
    from_="+15005550007",
)
CHANNEL = VonageChannel(Settings().with_sections(CONFIG))


def note(to: str = "+14155552671", txt: str = "disk ⚠ full") -> Notification:
    return Notification(uuid.uuid4(), "sms", to, txt)


def test_the_request_is_the_sms_api_form() -> None:
    n = note()
    request = CHANNEL.request(n)
    assert request.url == "https://rest.example/sms/json"
    assert dict(parse_qsl(request.body.decode())) == {
        "api_key": "key",
        "api_secret": "s3cr3t",
        "from": "15005550007",
        "to": "14155552671",
        "text": "disk ⚠ full",
        "type": "unicode",
        "client-ref": str(n.uuid),
    }
    assert request.scrub("bad secret s3cr3t") == "bad secret [redacted]"
    assert (CHANNEL.name, CHANNEL.provider) == ("sms", "vonage")


def test_settings_say_what_is_missing() -> None:
    reason = VonageSettings().disabled_reason() or ""
    assert "NOTIFSVC_VONAGE_API_KEY" in reason and "NOTIFSVC_VONAGE_API_SECRET" in reason
    assert CONFIG.disabled_reason() is None


def test_every_part_accepted_is_delivered_with_the_first_id() -> None:
    parts = [{"status": "0", "message-id": "A1"}, {"status": "0", "message-id": "A2"}]
    assert classify_parts(parts) is None
    body = b'{"message-count": "2", "messages": [{"status": "0", "message-id": "A1"}]}'
    assert CHANNEL.message_id(Answer(200, {}, body, body.decode())) == "A1"


@pytest.mark.parametrize(
    ("code", "kind", "failover"),
    [
        ("1", Throttled, True),
        ("5", TransientError, True),
        ("9", TransientError, True),
        ("3", PermanentError, False),
        ("4", PermanentError, False),
        ("6", PermanentError, False),
    ],
)
def test_refused_codes(code: str, kind: type[Exception], failover: bool) -> None:
    error = classify_parts([{"status": "0"}, {"status": code, "error-text": "no"}])
    assert type(error) is kind
    assert error is not None and error.failover is failover
    assert f"vonage status {code}: no" in str(error)


@given(st.one_of(st.none(), st.binary(max_size=60)))
def test_any_answer_without_parts_is_permanent_never_a_crash(body: bytes | None) -> None:
    data = body or b""
    answer = Answer(200, {}, data, data.decode(errors="replace"))
    error = CHANNEL.classify(answer, CHANNEL.request(note()))
    assert error is None or isinstance(error, PermanentError | TransientError)
    CHANNEL.message_id(answer)


def test_http_errors_are_classified_as_for_every_provider() -> None:
    answer = Answer(503, {}, b"down", "down")
    error = CHANNEL.classify(answer, CHANNEL.request(note()))
    assert isinstance(error, TransientError)
