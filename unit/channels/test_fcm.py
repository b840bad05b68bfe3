"""The fcm channel: settings, recipient and payload validation, the message, the
classification of FCM's answers and the access token's refresh schedule."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import threading
import uuid
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from google.auth.exceptions import RefreshError, TransportError
from hypothesis import given
from hypothesis import strategies as st

from notifsvc.api.validation import Rule
from notifsvc.channels import PermanentError, Throttled, TransientError
from notifsvc.channels.fcm import (
    DEFAULT_LIFETIME,
    MAX_PAYLOAD_BYTES,
    REFRESH_MARGIN,
    REFRESH_RETRY,
    AccessTokens,
    FcmChannel,
    FcmSettings,
    as_key_file,
    classify_response,
    message_of,
    parse_failure,
    payload_bytes,
)
from notifsvc.config import ConfigError, Secret, Settings, load
from notifsvc.dev.fakes.fcm import (
    fcm_error,
    invalid_token,
    pem,
    quota_exceeded,
    service_account_key,
    unauthenticated,
    unregistered,
)
from notifsvc.dev.fakes.script import Reply
from notifsvc.model import Notification, Priority, Reason
from unit.channels.contract import Case

KEY = service_account_key()
KEY_FILE = {
    "type": "service_account",
    "project_id": "my-app-1234",
    "private_key_id": "0123abcd",
    "private_key": pem(KEY),
    "client_email": "sender@my-app-1234.iam.gserviceaccount.com",
    "token_uri": "https://oauth2.googleapis.com/token",
}
CREDENTIALS = orjson.dumps(KEY_FILE).decode()
CONFIG = FcmSettings(credentials=Secret(CREDENTIALS))
SETTINGS = Settings().with_sections(CONFIG)
#: What FCM's registration tokens look like: an instance ID, ':', then "APA91b...".
TOKEN = "dGVzdC1pbnN0YW5jZS1pZA:APA91b" + "F3kq_R2-xZ9" * 12 + "Q8"
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-:"
CASE = Case(
    CONFIG,
    ("credentials",),
    TOKEN,
    (
        "",
        "a" * 99,
        "a" * 4097,
        "0" * 64,  # an APNs device token
        TOKEN + " ",
        TOKEN[:60] + "\n" + TOKEN[60:],
        TOKEN.replace(":", "/"),
        TOKEN + "=",
    ),
)


def note(
    txt: str = "disk almost full",
    subject: str | None = None,
    priority: Priority = Priority.NORMAL,
    to: str = TOKEN,
) -> Notification:
    return Notification(uuid.uuid4(), "fcm", to, txt, subject=subject, priority=priority)


# --- settings ------------------------------------------------------------------------------


def key_file(**changes: Any) -> str:
    info = {k: v for k, v in (KEY_FILE | changes).items() if v is not None}
    return orjson.dumps(info).decode()


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("not json", "is not JSON"),
        ("[1, 2]", "is not a JSON object"),
        (key_file(type="authorized_user"), "is not a service-account key"),
        (key_file(private_key=None, client_email=""), "has no client_email, private_key"),
        (key_file(token_uri="file:///etc/passwd"), "token_uri"),
        (key_file(project_id="My App"), "project_id"),
        (key_file(private_key="-----BEGIN PRIVATE KEY-----\nbm9wZQ==\n"), "private_key"),
    ],
)
def test_unusable_key_files_are_refused_without_quoting_them(raw: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as caught:
        as_key_file(raw)
    assert "BEGIN PRIVATE KEY" not in str(caught.value)
    assert "sender@" not in str(caught.value)


def test_the_key_file_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    assert load({"NOTIFSVC_FCM_CREDENTIALS": CREDENTIALS}).section(FcmSettings) == CONFIG
    path = tmp_path / "key.json"
    path.write_text(CREDENTIALS + "\n")
    assert load({"NOTIFSVC_FCM_CREDENTIALS_FILE": str(path)}).section(FcmSettings) == CONFIG


def test_a_bad_key_file_is_a_config_error_naming_the_variable_not_the_value() -> None:
    with pytest.raises(ConfigError) as caught:
        load({"NOTIFSVC_FCM_CREDENTIALS": key_file(client_email=None)})
    [problem] = caught.value.problems
    assert problem.startswith("NOTIFSVC_FCM_CREDENTIALS=(hidden): has no client_email")
    assert "PRIVATE KEY" not in problem


def test_credentials_are_masked_in_the_redacted_settings() -> None:
    shown = SETTINGS.redacted()
    assert shown["NOTIFSVC_FCM_CREDENTIALS"] == "**********"
    assert "PRIVATE KEY" not in repr(SETTINGS)


def test_project_comes_from_the_key_file_unless_set() -> None:
    assert CONFIG.project() == "my-app-1234"
    assert dataclasses.replace(CONFIG, project_id="other-app").project() == "other-app"
    with pytest.raises(ConfigError, match="NOTIFSVC_FCM_PROJECT_ID"):
        load({"NOTIFSVC_FCM_PROJECT_ID": "Not/A/Project"})


def test_no_project_anywhere_disables_the_channel_naming_the_variable() -> None:
    settings = SETTINGS.configure(FcmSettings, credentials=Secret(key_file(project_id=None)))
    reason = FcmChannel.disabled_reason(settings)
    assert reason is not None
    assert "NOTIFSVC_FCM_PROJECT_ID" in reason
    fixed = settings.configure(FcmSettings, project_id="my-app-1234")
    assert FcmChannel.disabled_reason(fixed) is None


def test_a_key_file_given_in_code_is_checked_too() -> None:
    settings = SETTINGS.configure(FcmSettings, credentials=Secret("{}"))
    reason = FcmChannel.disabled_reason(settings)
    assert reason is not None
    assert reason.startswith("NOTIFSVC_FCM_CREDENTIALS is not a service-account key")


def test_unsafe_api_url_disables_the_channel() -> None:
    settings = SETTINGS.configure(FcmSettings, api_url="file:///etc/passwd")
    reason = FcmChannel.disabled_reason(settings)
    assert reason is not None
    assert "NOTIFSVC_FCM_API_URL" in reason


# --- recipients and payload ----------------------------------------------------------------


@pytest.mark.parametrize("to", [TOKEN, "a" * 100, "A-_:" * 1024, "x:" + "APA91b" * 30])
def test_accepts_registration_tokens(to: str) -> None:
    assert FcmChannel(SETTINGS).validate_recipient(to) == []


@given(st.text(alphabet=ALPHABET, min_size=100, max_size=600))
def test_any_token_of_the_alphabet_and_length_is_accepted(to: str) -> None:
    assert FcmChannel(SETTINGS).validate_recipient(to) == []


@given(st.text(min_size=1).filter(lambda t: any(c not in ALPHABET for c in t)), st.integers(0, 200))
def test_anything_else_is_refused_on_to(bad: str, at: int) -> None:
    to = TOKEN[:at] + bad + TOKEN[at:]
    errors = FcmChannel(SETTINGS).validate_recipient(to)
    assert [e.field for e in errors] == ["to"]
    assert "registration token" in errors[0].message


@given(st.text(alphabet=st.sampled_from([*ALPHABET, " ", "\n", ".", "é", "="]), max_size=300))
def test_the_published_pattern_says_what_validation_does(to: str) -> None:
    published = Rule("", (FcmChannel.recipient_pattern,)).accepts(to)
    assert published == (FcmChannel(SETTINGS).validate_recipient(to) == [])


def test_payload_counts_keys_and_values_of_notification_and_data_in_utf8() -> None:
    n = note("é" * 10, subject="Disk")
    assert payload_bytes(n) == len("title") + 4 + len("body") + 20 + len("uuid") + 36


def test_ascii_text_of_the_longest_length_fits_the_payload() -> None:
    assert payload_bytes(note("x" * FcmChannel.max_body_chars)) <= MAX_PAYLOAD_BYTES


def test_multibyte_text_over_the_payload_limit_is_refused_on_txt() -> None:
    errors = FcmChannel(SETTINGS).validate(note("é" * 2_100))
    assert [e.field for e in errors] == ["txt"]
    assert "4096 bytes" in errors[0].message


def test_a_subject_that_tips_the_payload_over_is_refused_on_subject() -> None:
    channel = FcmChannel(SETTINGS)
    room = MAX_PAYLOAD_BYTES - payload_bytes(note("x" * 4_000)) - len("title")
    assert channel.validate(note("x" * 4_000, subject="s" * room)) == []
    errors = channel.validate(note("x" * 4_000, subject="s" * (room + 1)))
    assert [e.field for e in errors] == ["subject"]
    assert f"{MAX_PAYLOAD_BYTES + 1} bytes" in errors[0].message


def test_a_bad_recipient_and_an_oversized_payload_are_both_reported() -> None:
    errors = FcmChannel(SETTINGS).validate(note("é" * 2_100, to="abc def"))
    assert [e.field for e in errors] == ["to", "txt"]


def test_a_body_over_the_length_limit_is_one_error_on_txt() -> None:
    errors = FcmChannel(SETTINGS).validate(note("x" * 5_000, subject="s" * 100))
    assert [e.field for e in errors] == ["txt"]


# --- the request ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("priority", "android", "apns"),
    [
        (Priority.HIGH, "HIGH", "10"),
        (Priority.NORMAL, "NORMAL", "5"),
        (Priority.LOW, "NORMAL", "5"),
    ],
)
def test_message_maps_our_priority(priority: Priority, android: str, apns: str) -> None:
    n = note("disk full", subject="Disk", priority=priority)
    assert message_of(n) == {
        "token": TOKEN,
        "notification": {"title": "Disk", "body": "disk full"},
        "data": {"uuid": str(n.uuid)},
        "android": {"priority": android},
        "apns": {"headers": {"apns-priority": apns}},
    }


def test_a_notification_with_expires_at_carries_the_time_left_for_every_platform() -> None:
    n = msgspec.structs.replace(note(), expires_at=1_800_000_042.7)
    message = message_of(n, now=1_800_000_000.0)
    assert message["android"] == {"priority": "NORMAL", "ttl": "42s"}
    assert message["apns"]["headers"] == {"apns-priority": "5", "apns-expiration": "1800000042"}
    assert message["webpush"] == {"headers": {"TTL": "42"}}
    late = message_of(n, now=1_800_000_100.0)  # never negative: now or never
    assert late["android"]["ttl"] == "0s" and late["webpush"]["headers"]["TTL"] == "0"


def test_the_channel_counts_the_time_left_on_its_wall_clock() -> None:
    n = msgspec.structs.replace(note(), expires_at=1_800_000_100.0)
    channel = FcmChannel(SETTINGS, wall=lambda: 1_800_000_000.0)
    body = orjson.loads(channel.build_request(n, "ya29.secret").body)
    assert body["message"]["android"]["ttl"] == "100s"


@pytest.mark.parametrize("subject", [None, ""])
def test_no_subject_no_title(subject: str | None) -> None:
    assert message_of(note("disk full", subject=subject))["notification"] == {"body": "disk full"}


def test_request_posts_to_the_project_with_the_bearer_token() -> None:
    n = note(subject="Disk")
    request = FcmChannel(SETTINGS).build_request(n, "ya29.secret")
    assert request.url == "https://fcm.googleapis.com/v1/projects/my-app-1234/messages:send"
    assert request.headers["Authorization"] == "Bearer ya29.secret"
    assert request.headers["Content-Type"] == "application/json; charset=UTF-8"
    assert orjson.loads(request.body) == {"message": message_of(n)}
    assert request.scrub("echo ya29.secret") == "echo [redacted]"


def test_request_url_follows_the_settings() -> None:
    config = dataclasses.replace(CONFIG, api_url="http://127.0.0.1:9/", project_id="other-app")
    request = FcmChannel(Settings().with_sections(config)).build_request(note(), "t")
    assert request.url == "http://127.0.0.1:9/v1/projects/other-app/messages:send"


def test_request_outside_a_send_has_no_token() -> None:
    with pytest.raises(TransientError, match="no access token"):
        FcmChannel(SETTINGS).request(note())


# --- answers -------------------------------------------------------------------------------


def answer(reply: Reply) -> tuple[int, dict[str, str], str]:
    return reply.status, dict(reply.headers), orjson.dumps(reply.body).decode()


def test_success_is_none() -> None:
    assert classify_response(200, {}, '{"name": "projects/p/messages/0:1"}') is None


@pytest.mark.parametrize(
    "reply",
    [
        unregistered(),
        invalid_token(),
        fcm_error(403, "PERMISSION_DENIED", "SenderId mismatch", error_code="SENDER_ID_MISMATCH"),
        # the token named only by the message, or only by a field violation
        fcm_error(400, "INVALID_ARGUMENT", "The registration token is not a valid FCM token"),
        fcm_error(
            400, "INVALID_ARGUMENT", "Request contains an invalid argument.", field="message.token"
        ),
    ],
)
def test_a_dead_or_malformed_token_is_permanent_token_invalid(reply: Reply) -> None:
    error = classify_response(*answer(reply))
    assert isinstance(error, PermanentError)
    assert error.reason is Reason.TOKEN_INVALID
    assert str(error).startswith(f"token_invalid: fcm answered HTTP {reply.status}: ")


def test_unregistered_names_the_fcm_error_code() -> None:
    error = classify_response(*answer(unregistered()))
    assert str(error) == (
        "token_invalid: fcm answered HTTP 404: UNREGISTERED: Requested entity was not found."
    )


@pytest.mark.parametrize(
    "reply",
    [
        fcm_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument."),  # too big
        fcm_error(400, "INVALID_ARGUMENT", "Invalid value", field="message.data[0].value"),
        fcm_error(403, "PERMISSION_DENIED", "Permission denied on resource"),
        fcm_error(404, "NOT_FOUND", "Requested entity was not found."),  # no such project
    ],
)
def test_other_client_errors_are_permanent_without_a_reason(reply: Reply) -> None:
    error = classify_response(*answer(reply))
    assert isinstance(error, PermanentError)
    assert error.reason is None


def test_quota_exceeded_is_throttled_with_retry_after() -> None:
    error = classify_response(*answer(quota_exceeded(retry_after=7)))
    assert isinstance(error, Throttled)
    assert error.retry_after == 7.0
    assert "QUOTA_EXCEEDED" in str(error)


def test_quota_exceeded_is_throttled_whatever_the_status() -> None:
    reply = fcm_error(403, "RESOURCE_EXHAUSTED", "quota", error_code="QUOTA_EXCEEDED")
    assert isinstance(classify_response(*answer(reply)), Throttled)


@pytest.mark.parametrize(
    "reply",
    [
        fcm_error(503, "UNAVAILABLE", "The service is unavailable.", error_code="UNAVAILABLE"),
        fcm_error(500, "INTERNAL", "Internal error encountered.", error_code="INTERNAL"),
        Reply(502, "<html>Error 502 (Server Error)!!1</html>"),
        unauthenticated(),
        fcm_error(401, "UNAUTHENTICATED", "APNs auth", error_code="THIRD_PARTY_AUTH_ERROR"),
    ],
)
def test_server_errors_and_401_are_transient(reply: Reply) -> None:
    status, headers, _ = answer(reply)
    text = reply.body if isinstance(reply.body, str) else answer(reply)[2]
    error = classify_response(status, headers | {"Retry-After": "3"}, text)
    assert isinstance(error, TransientError) and not isinstance(error, Throttled)
    assert error.retry_after == 3.0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)
detail_types = st.sampled_from(
    [
        "type.googleapis.com/google.firebase.fcm.v1.FcmError",
        "type.googleapis.com/google.rpc.BadRequest",
    ]
)
violations = st.lists(
    st.fixed_dictionaries({}, optional={"field": json_values, "description": json_values})
    | json_values,
    max_size=3,
)
details = st.fixed_dictionaries(
    {},
    optional={
        "@type": detail_types | json_values,
        "errorCode": st.sampled_from(["UNREGISTERED", "QUOTA_EXCEEDED"]) | json_values,
        "fieldViolations": violations | json_values,
    },
)
errors = st.fixed_dictionaries(
    {},
    optional={
        "status": json_values,
        "message": json_values,
        "details": st.lists(details | json_values, max_size=3) | json_values,
    },
)


@given(st.integers(100, 599), errors | json_values)
def test_any_answer_is_classified_without_raising(status: int, body: Any) -> None:
    text = orjson.dumps({"error": body} if isinstance(body, dict) else body).decode()
    parse_failure(text)
    error = classify_response(status, {}, text)
    assert (error is None) == (200 <= status < 300)


@given(st.text(max_size=200))
def test_any_text_is_classified_without_raising(text: str) -> None:
    assert isinstance(classify_response(500, {}, text), TransientError)


# --- access tokens -------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class StubCredentials:
    """google-auth's credentials as :class:`AccessTokens` uses them, without a network."""

    def __init__(self, lifetime: float | None = 3_600.0) -> None:
        self.lifetime = lifetime
        self.token: str | None = None
        self.expiry: datetime.datetime | None = None
        self.calls = 0
        self.fail: Exception | None = None
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def refresh(self, request: Any) -> None:
        self.calls += 1
        self.entered.set()
        assert self.release.wait(10)
        if self.fail is not None:
            raise self.fail
        self.token = f"token-{self.calls}"
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        lifetime = self.lifetime
        self.expiry = None if lifetime is None else now + datetime.timedelta(seconds=lifetime)


def tokens_for(credentials: StubCredentials, clock: Clock, timeout: float = 5.0) -> AccessTokens:
    return AccessTokens(credentials, timeout=timeout, clock=clock, secrets=("PRIVATE-KEY",))


async def test_the_token_is_fetched_once_and_reused() -> None:
    clock, credentials = Clock(), StubCredentials()
    tokens = tokens_for(credentials, clock)
    try:
        assert await tokens.get() == "token-1"
        clock.now += 3_600 - REFRESH_MARGIN - 60
        assert await tokens.get() == "token-1"
        assert credentials.calls == 1
    finally:
        await tokens.close()


async def test_the_token_is_refreshed_when_fewer_than_five_minutes_remain() -> None:
    clock, credentials = Clock(), StubCredentials()
    tokens = tokens_for(credentials, clock)
    try:
        await tokens.get()
        clock.now += 3_600 - REFRESH_MARGIN + 1
        assert await tokens.get() == "token-2"
        assert credentials.calls == 2
        assert tokens.refreshes == 2
    finally:
        await tokens.close()


async def test_a_short_lived_token_is_refreshed_at_half_its_life() -> None:
    clock, credentials = Clock(), StubCredentials(lifetime=120)
    tokens = tokens_for(credentials, clock)
    try:
        await tokens.get()
        clock.now += 55
        assert await tokens.get() == "token-1"
        clock.now += 10
        assert await tokens.get() == "token-2"
    finally:
        await tokens.close()


async def test_a_token_without_expiry_is_taken_to_last_an_hour() -> None:
    clock, credentials = Clock(), StubCredentials(lifetime=None)
    tokens = tokens_for(credentials, clock)
    try:
        await tokens.get()
        clock.now += DEFAULT_LIFETIME - REFRESH_MARGIN - 1
        assert await tokens.get() == "token-1"
    finally:
        await tokens.close()


async def test_concurrent_callers_share_one_refresh() -> None:
    clock, credentials = Clock(), StubCredentials()
    credentials.release.clear()
    tokens = tokens_for(credentials, clock)
    try:
        waiting = [asyncio.create_task(tokens.get()) for _ in range(20)]
        assert await asyncio.to_thread(credentials.entered.wait, 10)
        credentials.release.set()
        assert set(await asyncio.gather(*waiting)) == {"token-1"}
        assert credentials.calls == 1
    finally:
        await tokens.close()


async def test_a_failed_first_refresh_is_transient_and_scrubbed() -> None:
    clock, credentials = Clock(), StubCredentials()
    refused = RefreshError("invalid_grant: PRIVATE-KEY", {})  # type: ignore[no-untyped-call]
    credentials.fail = refused
    tokens = tokens_for(credentials, clock)
    try:
        with pytest.raises(TransientError) as caught:
            await tokens.get()
        message = str(caught.value)
        assert message.startswith("fcm could not get an access token: RefreshError: invalid_grant")
        assert "PRIVATE-KEY" not in message
        assert caught.value.__cause__ is None
        credentials.fail = None
        assert await tokens.get() == "token-2"
    finally:
        await tokens.close()


async def test_a_failed_early_refresh_keeps_the_current_token() -> None:
    clock, credentials = Clock(), StubCredentials()
    tokens = tokens_for(credentials, clock)
    try:
        await tokens.get()
        clock.now += 3_600 - REFRESH_MARGIN + 1
        credentials.fail = TransportError("connection refused")  # type: ignore[no-untyped-call]
        assert await tokens.get() == "token-1"
        assert await tokens.get() == "token-1"
        assert credentials.calls == 2  # not tried again before REFRESH_RETRY
        credentials.fail = None
        clock.now += REFRESH_RETRY
        assert await tokens.get() == "token-3"
    finally:
        await tokens.close()


async def test_an_expired_token_is_never_used_when_the_refresh_fails() -> None:
    clock, credentials = Clock(), StubCredentials()
    tokens = tokens_for(credentials, clock)
    try:
        await tokens.get()
        clock.now += 3_600
        credentials.fail = TransportError("connection refused")  # type: ignore[no-untyped-call]
        with pytest.raises(TransientError, match="TransportError: connection refused"):
            await tokens.get()
    finally:
        await tokens.close()


async def test_a_dropped_token_is_replaced() -> None:
    clock, credentials = Clock(), StubCredentials()
    tokens = tokens_for(credentials, clock)
    try:
        await tokens.get()
        tokens.drop("some-older-token")
        assert await tokens.get() == "token-1"
        tokens.drop("token-1")
        assert await tokens.get() == "token-2"
    finally:
        await tokens.close()


async def test_a_slow_token_endpoint_times_out_and_the_refresh_completes_later() -> None:
    clock, credentials = Clock(), StubCredentials()
    credentials.release.clear()
    tokens = tokens_for(credentials, clock, timeout=0.05)
    try:
        with pytest.raises(TransientError, match="timed out"):
            await tokens.get()
        pending = tokens._pending  # the refresh goes on without its waiters
        assert pending is not None
        credentials.release.set()
        assert await asyncio.wait_for(pending, 5) == "token-1"
        assert await tokens.get() == "token-1"
        assert credentials.calls == 1
    finally:
        await tokens.close()


async def test_a_malformed_token_answer_is_transient() -> None:
    clock, credentials = Clock(), StubCredentials()
    credentials.fail = TypeError("list indices must be integers or slices, not str")
    tokens = tokens_for(credentials, clock)
    try:
        with pytest.raises(TransientError, match="TypeError: list indices"):
            await tokens.get()
    finally:
        await tokens.close()


async def test_closing_during_a_refresh_fails_its_waiters_as_transient() -> None:
    clock, credentials = Clock(), StubCredentials()
    credentials.release.clear()
    tokens = tokens_for(credentials, clock)
    waiting = asyncio.create_task(tokens.get())
    assert await asyncio.to_thread(credentials.entered.wait, 10)
    await tokens.close()
    credentials.release.set()
    with pytest.raises(TransientError, match="stopped"):
        await waiting
