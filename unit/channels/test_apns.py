"""The apns channel: device tokens, payload limits, the provider token and APNs answers."""

from __future__ import annotations

import re
import string
import uuid
from pathlib import Path

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import example, given
from hypothesis import strategies as st

from notifsvc import config
from notifsvc.channels import PermanentError, Throttled, TransientError
from notifsvc.channels.apns import (
    MAX_PAYLOAD_BYTES,
    TOKEN_REFRESH_SECONDS,
    ApnsChannel,
    ApnsSettings,
    ProviderTokens,
    answer_reason,
    classify_response,
    load_key,
    payload,
)
from notifsvc.config import Secret, Settings
from notifsvc.model import Notification, Priority, Reason
from unit.channels.contract import Case

KEY = ec.generate_private_key(ec.SECP256R1())


def pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


CONFIG = ApnsSettings(
    key=Secret(pem(KEY)), key_id="KEY1234567", team_id="TEAM123456", topic="com.example.app"
)
SETTINGS = Settings().with_sections(CONFIG)
TOKEN = "a1" * 32
CASE = Case(
    CONFIG,
    ("key", "key_id", "team_id", "topic"),
    TOKEN,
    ("", "a1" * 31, "a1" * 32 + "b", "a1" * 101, "g1" * 32, f"<{TOKEN}>", f"{TOKEN} ", "a1 " * 32),
)


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def note(txt: str = "disk almost full", subject: str | None = None, **kw: object) -> Notification:
    return Notification(uuid.uuid4(), "apns", TOKEN, txt, subject, **kw)  # type: ignore[arg-type]


def channel(clock: Clock | None = None, **changes: object) -> ApnsChannel:
    settings = SETTINGS.configure(ApnsSettings, **changes)
    return ApnsChannel(settings, clock=clock or Clock())


# Device tokens


@pytest.mark.parametrize("to", ["a1" * 32, "A1" * 32, "0f" * 100, "deadBEEF" * 8])
def test_accepts_device_tokens_of_whole_hex_bytes(to: str) -> None:
    assert channel().validate_recipient(to) == []


def _is_device_token(to: str) -> bool:
    digits = set(string.hexdigits)
    return 64 <= len(to) <= 200 and len(to) % 2 == 0 and all(c in digits for c in to)


@given(st.text(alphabet=string.hexdigits + " <>x\n٣", max_size=210))
@example("a1" * 32 + "\n")
@example("a" * 63)
def test_a_recipient_is_a_device_token_exactly(to: str) -> None:
    errors = channel().validate_recipient(to)
    assert (errors == []) == _is_device_token(to)
    assert all(e.field == "to" and e.message for e in errors)


@given(st.text(alphabet=string.hexdigits + " \n", min_size=60, max_size=204))
def test_the_published_pattern_agrees_with_the_validation(to: str) -> None:
    # As JSON Schema reads it: a search in which the closing $ is the end of the string.
    pattern = ApnsChannel.recipient_pattern.removesuffix("$") + r"\Z"
    published = re.search(pattern, to) is not None
    assert published == (channel().validate_recipient(to) == [])


# Payload


def test_payload_is_an_alert_with_title_and_body() -> None:
    assert payload(note("Platte voll ⚠", "Alarm")) == (
        '{"aps":{"alert":{"title":"Alarm","body":"Platte voll ⚠"}}}'.encode()
    )
    assert payload(note("x")) == b'{"aps":{"alert":{"body":"x"}}}'
    assert payload(note("x", "")) == b'{"aps":{"alert":{"body":"x"}}}'


def test_max_body_chars_is_the_longest_ascii_body_that_fits() -> None:
    assert len(payload(note("x" * ApnsChannel.max_body_chars))) == MAX_PAYLOAD_BYTES


def test_a_multibyte_body_over_the_payload_limit_is_refused_on_txt() -> None:
    txt = "€" * 1400  # 1,400 characters, 4,200 bytes
    errors = channel().validate(note(txt))
    assert [e.field for e in errors] == ["txt"]
    assert "4096" in errors[0].message


def test_a_subject_that_overflows_the_payload_is_refused_on_subject() -> None:
    errors = channel().validate(note("x" * 4000, "s" * 100))
    assert [e.field for e in errors] == ["subject"]
    assert channel().validate(note("x" * 4000, "s" * 30)) == []


def test_quotes_and_control_characters_count_as_json_escapes() -> None:
    assert [e.field for e in channel().validate(note('"' * 2100))] == ["txt"]
    assert [e.field for e in channel().validate(note("\x01" * 700))] == ["txt"]


@given(
    txt=st.text(min_size=1, max_size=ApnsChannel.max_body_chars),
    subject=st.none() | st.text(max_size=300),
)
def test_a_payload_error_exactly_when_the_body_exceeds_4096_bytes(
    txt: str, subject: str | None
) -> None:
    n = note(txt, subject)
    errors = channel().validate(n)
    assert (errors != []) == (len(payload(n)) > MAX_PAYLOAD_BYTES)
    assert len(errors) <= 1 and all(e.field in {"txt", "subject"} for e in errors)


# The request


def test_request_headers_and_body() -> None:
    n = note("hi", "Alert", priority=Priority.HIGH)
    request = channel().request(n, "jwt-value")
    assert request.url == f"https://api.push.apple.com/3/device/{TOKEN}"
    assert dict(request.headers) == {
        "authorization": "bearer jwt-value",
        "apns-topic": "com.example.app",
        "apns-push-type": "alert",
        "apns-priority": "10",
        "apns-expiration": "0",
        "apns-id": str(n.uuid),
        "content-type": "application/json",
    }
    assert orjson.loads(request.body) == {"aps": {"alert": {"title": "Alert", "body": "hi"}}}
    assert request.scrub("failed with jwt-value") == "failed with [redacted]"


@pytest.mark.parametrize(
    ("priority", "header"), [(Priority.HIGH, "10"), (Priority.NORMAL, "10"), (Priority.LOW, "5")]
)
def test_priority_maps_to_apns_priority(priority: Priority, header: str) -> None:
    assert channel().request(note(priority=priority), "t").headers["apns-priority"] == header


def test_expiration_is_the_ttl_after_acceptance_else_after_now() -> None:
    ch = channel(Clock(2_000_000_000.0), ttl_seconds=3600)
    accepted = note(accepted_at=1_700_000_000.5)
    assert ch.request(accepted, "t").headers["apns-expiration"] == "1700003600"
    assert ch.request(note(), "t").headers["apns-expiration"] == "2000003600"


def test_expiration_is_the_notifications_own_expires_at_capped_by_the_ttl() -> None:
    expiring = note(accepted_at=2_000_000_000.0, expires_at=2_000_000_300.9)
    assert channel(ttl_seconds=0).request(expiring, "t").headers["apns-expiration"] == (
        "2000000300"
    )
    assert channel(ttl_seconds=3600).request(expiring, "t").headers["apns-expiration"] == (
        "2000000300"
    )
    assert channel(ttl_seconds=60).request(expiring, "t").headers["apns-expiration"] == (
        "2000000060"
    )


def test_a_trailing_slash_on_the_api_url_is_ignored() -> None:
    ch = channel(api_url="https://api.sandbox.push.apple.com/")
    assert ch.request(note(), "t").url == f"https://api.sandbox.push.apple.com/3/device/{TOKEN}"


# The provider token


def _decoded(token: str) -> tuple[dict[str, object], dict[str, object]]:
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(
        token, KEY.public_key(), algorithms=["ES256"], options={"verify_iat": False}
    )
    return header, claims


def test_the_provider_token_is_an_es256_jwt_with_kid_iss_and_iat() -> None:
    clock = Clock(1_800_000_000.7)
    header, claims = _decoded(ProviderTokens(KEY, "KEY1234567", "TEAM123456", clock).current())
    assert header == {"alg": "ES256", "kid": "KEY1234567"}
    assert claims == {"iss": "TEAM123456", "iat": 1_800_000_000}


def test_one_token_is_reused_until_it_is_50_minutes_old() -> None:
    clock = Clock()
    tokens = ProviderTokens(KEY, "K", "T", clock)
    first = tokens.current()
    clock.now += TOKEN_REFRESH_SECONDS - 1
    assert tokens.current() == first
    clock.now += 1
    second = tokens.current()
    assert second != first
    assert _decoded(second)[1]["iat"] == int(clock.now)
    clock.now += 600
    assert tokens.current() == second


def test_a_clock_that_went_back_gets_a_new_token() -> None:
    clock = Clock()
    tokens = ProviderTokens(KEY, "K", "T", clock)
    first = tokens.current()
    clock.now -= 5
    assert tokens.current() != first


def test_discard_drops_only_the_token_that_was_refused() -> None:
    tokens = ProviderTokens(KEY, "K", "T", Clock())
    first = tokens.current()
    tokens.discard(first)
    second = tokens.current()
    assert second != first
    tokens.discard(first)  # a late refusal of the old token: the new one stays
    assert tokens.current() == second


# APNs answers


def _body(reason: str, **extra: object) -> bytes:
    return orjson.dumps({"reason": reason} | extra)


def test_200_is_delivered() -> None:
    assert classify_response(200, {}, b"") is None


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (410, "Unregistered"),
        (410, "ExpiredToken"),
        (400, "BadDeviceToken"),
        (400, "DeviceTokenNotForTopic"),
    ],
)
def test_dead_device_tokens_are_token_invalid(status: int, reason: str) -> None:
    error = classify_response(status, {}, _body(reason))
    assert isinstance(error, PermanentError)
    assert error.reason is Reason.TOKEN_INVALID
    assert str(error).startswith("token_invalid: ")
    assert reason in str(error)


def test_410_says_since_when_the_token_is_inactive() -> None:
    error = classify_response(410, {}, _body("Unregistered", timestamp=1_700_000_000_000))
    assert "inactive since 2023-11-14T22:13:20+00:00" in str(error)


def test_410_without_a_reason_is_still_token_invalid() -> None:
    error = classify_response(410, {}, b"<html>gone</html>")
    assert isinstance(error, PermanentError) and error.reason is Reason.TOKEN_INVALID


@pytest.mark.parametrize("reason", ["TooManyRequests", "TooManyProviderTokenUpdates"])
def test_429_is_throttled_with_retry_after(reason: str) -> None:
    error = classify_response(429, {"retry-after": "7"}, _body(reason))
    assert isinstance(error, Throttled)
    assert error.retry_after == 7.0
    assert reason in str(error)
    error = classify_response(429, {}, _body(reason))
    assert isinstance(error, Throttled) and error.retry_after is None


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (500, "InternalServerError"),
        (503, "ServiceUnavailable"),
        (503, "Shutdown"),
        (403, "ExpiredProviderToken"),
        (403, "InvalidProviderToken"),
        (400, "IdleTimeout"),
    ],
)
def test_server_errors_and_stale_provider_tokens_are_transient(status: int, reason: str) -> None:
    error = classify_response(status, {}, _body(reason))
    assert isinstance(error, TransientError) and not isinstance(error, Throttled)
    assert reason in str(error)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (413, "PayloadTooLarge"),
        (400, "BadTopic"),
        (400, "TopicDisallowed"),
        (400, "MissingTopic"),
        (403, "Forbidden"),
        (403, "MissingProviderToken"),
        (405, "MethodNotAllowed"),
    ],
)
def test_other_client_errors_are_permanent_naming_the_reason(status: int, reason: str) -> None:
    error = classify_response(status, {}, _body(reason))
    assert isinstance(error, PermanentError)
    assert error.reason is None
    assert f"HTTP {status}: {reason}" in str(error)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", (None, None)),
        (b"not json", (None, None)),
        (b"[1]", (None, None)),
        (b'{"reason": "Unregistered", "timestamp": true}', ("Unregistered", None)),
        (b'{"reason": "Unregistered", "timestamp": -1}', ("Unregistered", None)),
        (b'{"reason": "Unregistered", "timestamp": 1.5}', ("Unregistered", None)),
        (b'{"reason": "Unregistered", "timestamp": 12}', ("Unregistered", 12)),
    ],
)
def test_answer_reason_reads_only_what_is_there(
    body: bytes, expected: tuple[str | None, int | None]
) -> None:
    assert answer_reason(body) == expected


@given(
    status=st.integers(100, 599),
    body=st.binary(max_size=300)
    | st.builds(
        lambda r, t: orjson.dumps({"reason": r, "timestamp": t}),
        st.text(max_size=300),
        st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | st.none(),
    ),
    retry_after=st.none() | st.text(max_size=40),
)
def test_any_answer_is_classified_without_raising(
    status: int, body: bytes, retry_after: str | None
) -> None:
    headers = {} if retry_after is None else {"retry-after": retry_after}
    error = classify_response(status, headers, body)
    assert (error is None) == (200 <= status < 300)
    if status == 410:
        assert isinstance(error, PermanentError) and error.reason is Reason.TOKEN_INVALID
    if status == 429:
        assert isinstance(error, Throttled)
    if status >= 500:
        assert isinstance(error, TransientError)
    assert error is None or len(str(error)) < 400


# Settings


def test_the_key_may_come_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "AuthKey_KEY1234567.p8"
    path.write_text(pem(KEY))
    env = {
        "NOTIFSVC_APNS_KEY_FILE": str(path),
        "NOTIFSVC_APNS_KEY_ID": "KEY1234567",
        "NOTIFSVC_APNS_TEAM_ID": "TEAM123456",
        "NOTIFSVC_APNS_TOPIC": "com.example.app",
        "NOTIFSVC_APNS_TTL_SECONDS": "600",
    }
    settings = config.load(env)
    section = settings.section(ApnsSettings)
    assert section.key == Secret(pem(KEY).rstrip("\n"))
    assert section.ttl_seconds == 600
    assert ApnsChannel.disabled_reason(settings) is None


@pytest.mark.parametrize(
    ("variable", "value", "why"),
    [
        ("NOTIFSVC_APNS_TTL_SECONDS", "-1", "0 or more"),
        ("NOTIFSVC_APNS_CA_FILE", "/nonexistent/ca.pem", "cannot read"),
    ],
)
def test_unusable_values_are_refused_by_name(variable: str, value: str, why: str) -> None:
    with pytest.raises(config.ConfigError) as caught:
        config.load({variable: value})
    assert any(variable in p and why in p for p in caught.value.problems)


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("not a key", "not an unencrypted PEM private key"),
        (pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)), "not a P-256"),
        (pem(ec.generate_private_key(ec.SECP384R1())), "not a P-256"),
    ],
)
def test_an_unusable_key_disables_the_channel_without_showing_it(key: str, why: str) -> None:
    reason = ApnsChannel.disabled_reason(SETTINGS.configure(ApnsSettings, key=Secret(key)))
    assert reason is not None
    assert "NOTIFSVC_APNS_KEY" in reason and why in reason
    assert key not in reason and "BEGIN" not in reason


def test_a_key_on_one_line_with_backslash_n_escapes_works() -> None:
    escaped = pem(KEY).replace("\n", "\\n")
    assert load_key(escaped).private_numbers() == KEY.private_numbers()


def test_unsafe_api_url_disables_the_channel() -> None:
    reason = ApnsChannel.disabled_reason(SETTINGS.configure(ApnsSettings, api_url="ftp://x"))
    assert reason is not None and "NOTIFSVC_APNS_API_URL" in reason
