"""The OpenAPI document says what validation does: generated from the same rules, and checked
against it on generated requests (for the channels whose rules JSON Schema can say exactly)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from notifsvc.api.validation import Validator
from notifsvc.channels.slack import SlackSettings
from notifsvc.channels.webhook import WebhookSettings
from notifsvc.config import Secret, Settings
from notifsvc.model import InvalidNotification
from notifsvc.openapi import document, notification_schema, render_html

#: Channels whose rules JSON Schema says exactly (log), or exactly for short texts (slack).
EXACT = Settings(channels=frozenset({"log", "slack"})).with_sections(
    SlackSettings(token=Secret("xoxb-1"))
)
UID = "0b5d7a4e-3f1c-4c39-9d3e-2f4d1c1b9a77"


def accepts(validator: Validator, data: object) -> bool:
    try:
        validator.validate(data)
    except InvalidNotification:
        return False
    return True


def test_batches_hold_one_to_max_batch_items() -> None:
    settings = Settings(max_batch_items=7)
    doc = document(settings, Validator.from_settings(settings))
    body = doc["paths"]["/notifications"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["minItems"] == 1
    assert body["schema"]["maxItems"] == 7


def test_notification_schema_states_every_rule() -> None:
    schema = notification_schema(Validator.from_settings(EXACT))
    props = schema["properties"]
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["uuid", "destination", "to", "txt"]
    assert props["uuid"]["format"] == "uuid" and "pattern" in props["uuid"]
    assert props["txt"]["minLength"] == 1
    assert props["subject"]["type"] == ["string", "null"]
    assert all("\\u0000" in props[f]["pattern"] for f in ("destination", "to", "txt", "subject"))
    branches = {b["title"]: b["properties"] for b in schema["anyOf"]}
    assert set(branches) == {"log", "slack"}
    assert branches["slack"]["txt"]["maxLength"] == 40_000
    assert branches["log"]["txt"]["maxLength"] == 65_536


def test_keyed_documents_state_the_batch_limit_of_a_key() -> None:
    settings = Settings(api_keys=(Secret("k"),), rate_limit_per_key=20)
    doc = document(settings, Validator.from_settings(settings), burst=20)
    responses = doc["paths"]["/notification"]["post"]["responses"]
    assert "at most 20 notifications per request" in responses["429"]["description"]
    assert doc["security"] == [{"apiKey": []}]
    assert "POST /notifications" in render_html(doc)


def test_the_examples_together_are_a_valid_notification() -> None:
    validator = Validator.from_settings(Settings(channels=frozenset({"log"})))
    props = notification_schema(validator)["properties"]
    # (no example time: one valid whenever the document is read does not exist)
    assert {k for k, p in props.items() if "examples" not in p} == {"send_at", "expires_at"}
    assert accepts(validator, {k: p["examples"][0] for k, p in props.items() if "examples" in p})


def test_an_example_recipient_some_channel_refuses_is_left_out() -> None:
    webhook = WebhookSettings(allowed_hosts=frozenset({"h.example"}))
    validator = Validator.from_settings(Settings().with_sections(webhook))
    assert "examples" not in notification_schema(validator)["properties"]["to"]


def test_no_enabled_channel_means_no_valid_notification() -> None:
    validator = Validator({}, {"log": "not listed"})
    schema = notification_schema(validator)
    body = {"uuid": UID, "destination": "log", "to": "x", "txt": "y"}
    assert not jsonschema_rs.validator_for(schema).is_valid(body)
    assert not accepts(validator, body)


strings = st.text(max_size=12) | st.sampled_from(["", " ", "\u3000", "\x1c", "a\x00b", "\n"])
uuids = st.uuids().map(str) | st.sampled_from(
    [UID.upper(), UID.replace("-", ""), f"{{{UID}}}", f"urn:uuid:{UID}", UID + "\n", " " + UID]
)
destinations = st.sampled_from(["log", "LOG", "Slack", " log", "log\n", "fax", "webhook", ""])
recipients = st.sampled_from(["ops", " ", "#ops", "C0123456789", "#Ops", "\u2028", "a\x00"])
priorities = st.sampled_from(["high", "LOW", "Normal", " high", "high\n", "urgent"])
values: st.SearchStrategy[Any] = st.none() | st.integers() | st.booleans() | strings
requests = st.fixed_dictionaries(
    {},
    optional={
        "uuid": uuids | values,
        "destination": destinations | values,
        "to": recipients | values,
        "txt": st.text(max_size=300) | values,
        "subject": st.none() | strings,
        "priority": st.none() | priorities | values,
        "accepted_at": st.floats(0, 1e9),
        "extra": values,
    },
)


@given(requests)
@example({"uuid": UID, "destination": "log", "to": "ops", "txt": "x"})
@example({"uuid": UID, "destination": "slack", "to": "#ops", "txt": "x", "priority": "HIGH"})
@example({"uuid": f"{{{UID}}}", "destination": "log", "to": "ops", "txt": "x"})
@example({"uuid": UID, "destination": " log", "to": "ops", "txt": "x"})
@example({"uuid": UID, "destination": "log", "to": "ops", "txt": "x", "priority": " low"})
def test_the_schema_accepts_exactly_what_validation_accepts(data: dict[str, Any]) -> None:
    validator = Validator.from_settings(EXACT)
    schema = jsonschema_rs.validator_for(notification_schema(validator))
    assert schema.is_valid(data) == accepts(validator, data), data


@pytest.mark.parametrize(
    ("raw", "ok"),
    [(UID, True), (UID.upper(), True), (UID.replace("-", ""), False), (f"{{{UID}}}", False)],
)
def test_the_path_uuid_follows_the_same_rule(raw: str, ok: bool) -> None:
    assert (Validator.from_settings(EXACT).parse_uuid(raw) is not None) is ok


def test_callback_url_is_documented_only_when_callbacks_are_on() -> None:
    off = notification_schema(Validator.from_settings(Settings(channels=frozenset({"log"}))))
    assert "callback_url" not in off["properties"]
    on = Settings(channels=frozenset({"log"}), callback_allowed_hosts=frozenset({"cb.example"}))
    validator = Validator.from_settings(on)
    props = notification_schema(validator)["properties"]
    assert props["callback_url"]["examples"] == ["https://cb.example/notifsvc/status"]
    # (no example time: one valid whenever the document is read does not exist)
    assert {k for k, p in props.items() if "examples" not in p} == {"send_at", "expires_at"}
    assert accepts(validator, {k: p["examples"][0] for k, p in props.items() if "examples" in p})


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://evil.example/x", "host 'evil.example' is not in NOTIFSVC_CALLBACK_ALLOWED_HOSTS"),
        ("https://u:p@cb.example/x", "without credentials"),
        ("ftp://cb.example/x", "must be an http(s) URL"),
    ],
)
def test_a_callback_url_obeys_the_webhook_rules_on_its_own_hosts(url: str, message: str) -> None:
    on = Settings(channels=frozenset({"log"}), callback_allowed_hosts=frozenset({"cb.example"}))
    body = {"uuid": str(uuid.uuid4()), "destination": "log", "to": "ops", "txt": "x"}
    with pytest.raises(InvalidNotification) as caught:
        Validator.from_settings(on).validate(body | {"callback_url": url})
    [error] = caught.value.errors
    assert error.field == "callback_url" and message in error.message


def test_a_callback_url_is_refused_by_name_when_callbacks_are_off() -> None:
    body = {"uuid": str(uuid.uuid4()), "destination": "log", "to": "ops", "txt": "x"}
    with pytest.raises(InvalidNotification) as caught:
        Validator.from_settings(Settings(channels=frozenset({"log"}))).validate(
            body | {"callback_url": "https://cb.example/x"}
        )
    assert [e.field for e in caught.value.errors] == ["callback_url"]
    assert "NOTIFSVC_CALLBACK_ALLOWED_HOSTS is not set" in caught.value.errors[0].message


NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
LOG = Settings(channels=frozenset({"log"}), schedule_horizon_seconds=3600)


def at(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def scheduler(now: float = NOW) -> Validator:
    """The validator of :data:`LOG`, its clock stopped at ``now``."""
    base = Validator.from_settings(LOG)
    return Validator(
        base.channels,
        base.disabled,
        horizon=base.horizon,
        tolerance=base.tolerance,
        clock=lambda: now,
    )


def refusal(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidNotification) as caught:
        scheduler().validate(data)
    return {e.field: e.message for e in caught.value.errors}


BODY = {"uuid": UID, "destination": "log", "to": "ops", "txt": "x"}


def test_send_at_within_the_tolerance_and_the_horizon_is_accepted() -> None:
    for send_at in (NOW - 5, NOW, NOW + 3600):
        n = scheduler().validate(BODY | {"send_at": at(send_at), "ttl_seconds": 30})
        assert (n.accepted_at, n.send_at, n.expires_at) == (NOW, send_at, send_at + 30)


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        ({"send_at": at(NOW - 5.001)}, "send_at", "is in the past (more than 5 s"),
        ({"send_at": at(NOW + 3600.001)}, "send_at", "more than 3600 s ahead"),
        ({"send_at": at(NOW + 60), "expires_at": at(NOW + 30)}, "expires_at", "send_at"),
        ({"expires_at": at(NOW)}, "expires_at", "later than now"),
        ({"expires_at": at(NOW + 60), "ttl_seconds": 60}, "ttl_seconds", "not be given"),
        ({"ttl_seconds": 0}, "ttl_seconds", "whole number"),
        ({"send_at": "9999-12-31T23:59:59Z"}, "send_at", "between 1970"),
    ],
)
def test_a_bad_schedule_is_refused_naming_its_field(
    extra: dict[str, Any], field: str, message: str
) -> None:
    errors = refusal(BODY | extra)
    assert list(errors) == [field] and message in errors[field]


@settings(suppress_health_check=list(HealthCheck))
@given(
    st.none() | st.floats(NOW - 100, NOW + 4000).map(at) | st.text(max_size=30) | st.integers(),
    st.none() | st.floats(NOW - 100, NOW + 8000).map(at) | st.booleans(),
    st.none() | st.integers(-10, 10**12) | st.floats(),
)
def test_any_schedule_is_accepted_within_its_rules_or_refused_by_name(
    send_at: object, expires_at: object, ttl: object
) -> None:
    extra = {"send_at": send_at, "expires_at": expires_at, "ttl_seconds": ttl}
    try:
        n = scheduler().validate(BODY | {k: v for k, v in extra.items() if v is not None})
    except InvalidNotification as exc:
        assert exc.errors and {e.field for e in exc.errors} <= set(extra)
        return
    due = NOW if n.send_at is None else n.send_at
    assert NOW - 5 <= due <= NOW + 3600
    assert n.expires_at is None or n.expires_at > max(due, NOW)


def test_the_document_states_the_schedule_fields() -> None:
    validator = Validator.from_settings(LOG)
    props = notification_schema(validator)["properties"]
    assert props["send_at"]["type"] == ["string", "null"]
    assert props["send_at"]["format"] == "date-time"
    assert "at most 3600 s ahead, at most 5 s back" in props["send_at"]["description"]
    assert props["expires_at"]["format"] == "date-time"
    assert props["ttl_seconds"] == props["ttl_seconds"] | {
        "type": ["integer", "null"],
        "minimum": 1,
    }
    both = {"uuid": UID, "destination": "log", "to": "o", "txt": "x", "ttl_seconds": 5}
    schema = jsonschema_rs.validator_for(notification_schema(validator))
    assert schema.is_valid(both) and schema.is_valid(both | {"expires_at": None})
    assert not schema.is_valid(both | {"expires_at": "2027-01-15T08:00:00Z"})
    state = document(LOG, validator)["components"]["schemas"]["State"]
    assert {"send_at", "expires_at", "expired_at"} <= set(state["required"])
    assert {"scheduled", "expired"} <= set(state["properties"]["state"]["enum"])
