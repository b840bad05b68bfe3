from __future__ import annotations

import contextlib
import hashlib
import uuid

import asyncpg
import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from notifsvc.channels import PermanentError
from notifsvc.model import (
    FIELDS,
    InvalidNotification,
    Notification,
    Priority,
    Reason,
    parse,
    reason_of,
    uuid_text,
)

UID = "0b5d7a4e-3f1c-4c39-9d3e-2f4d1c1b9a77"


def test_valid_request_is_parsed_and_destination_lowercased() -> None:
    n = parse({"uuid": UID, "destination": "EMAIL", "to": "a@b.c", "txt": "hi", "priority": "HIGH"})
    assert n.uuid == uuid.UUID(UID)
    assert n.channel == "email"
    assert n.priority is Priority.HIGH
    assert n.accepted_at > 0


def test_every_failing_field_is_reported() -> None:
    with pytest.raises(InvalidNotification) as caught:
        parse(
            {"uuid": "nope", "destination": 3, "txt": None, "colour": "red", "priority": "urgent"}
        )
    fields = sorted(e.field for e in caught.value.errors)
    assert fields == ["colour", "destination", "priority", "to", "txt", "uuid"]


@pytest.mark.parametrize("data", [[], "x", 1, None])
def test_non_object_is_rejected(data: object) -> None:
    with pytest.raises(InvalidNotification, match="expected a JSON object"):
        parse(data)


def test_wire_format_round_trips() -> None:
    n = parse({"uuid": UID, "destination": "log", "to": "ops", "txt": "hi", "subject": "s"})
    assert Notification.decode(n.encode()) == n
    assert n.key == UID.encode()


@pytest.mark.parametrize("raw", [None, b"", b"\xff\xfe", b"[1,2]", b'{"uuid": "x"}'])
def test_undecodable_messages_raise_invalid(raw: bytes | None) -> None:
    with pytest.raises(InvalidNotification):
        Notification.decode(raw)


def test_fingerprint_tells_retry_from_conflict() -> None:
    a = parse({"uuid": UID, "destination": "log", "to": "ops", "txt": "hi"})
    retry = parse({"uuid": UID, "destination": "LOG", "to": "ops", "txt": "hi"})
    other = parse({"uuid": UID, "destination": "log", "to": "ops", "txt": "hi!"})
    assert a.fingerprint() == retry.fingerprint()
    assert a.fingerprint() != other.fingerprint()


def test_fingerprint_is_unambiguous_across_field_boundaries() -> None:
    a = parse({"uuid": UID, "destination": "log", "to": "ab", "txt": "c"})
    b = parse({"uuid": UID, "destination": "log", "to": "a", "txt": "bc"})
    assert a.fingerprint() != b.fingerprint()


def test_accepted_at_survives_the_wire() -> None:
    raw = orjson.dumps(
        {"uuid": UID, "destination": "log", "to": "o", "txt": "t", "accepted_at": 12.5}
    )
    assert Notification.decode(raw).accepted_at == 12.5


def test_nul_characters_are_refused_in_every_field_the_database_stores() -> None:
    """PostgreSQL refuses U+0000 in text (SQLSTATE 22021): refuse it at the door."""
    for field in ("to", "txt", "subject", "destination"):
        body = {"uuid": str(uuid.uuid4()), "destination": "log", "to": "a", "txt": "b"}
        body[field] = "bad\x00value"
        with pytest.raises(InvalidNotification) as caught:
            parse(body)
        assert any(e.field == field and "NUL" in e.message for e in caught.value.errors)


@pytest.mark.parametrize("accepted_at", [1e300, -5, "yesterday", [1], 5e9, True])
def test_an_out_of_range_accepted_at_on_a_topic_is_invalid_not_a_crash(accepted_at: object) -> None:
    body = {"uuid": str(uuid.uuid4()), "destination": "log", "to": "a", "txt": "b"}
    with pytest.raises(InvalidNotification, match="accepted_at"):
        Notification.decode(orjson.dumps({**body, "accepted_at": accepted_at}))


@given(st.binary(max_size=300))
def test_decoding_any_bytes_gives_a_notification_or_invalid_notification(raw: bytes) -> None:
    with contextlib.suppress(InvalidNotification):
        Notification.decode(raw)


FIELD_VALUES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.text(max_size=20)
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([*FIELDS, "accepted_at", "x"]), FIELD_VALUES)
def test_decoding_any_field_value_never_raises_anything_else(field: str, value: object) -> None:
    body = {"uuid": str(uuid.uuid4()), "destination": "log", "to": "a", "txt": "b"}
    with contextlib.suppress(InvalidNotification):
        Notification.decode(orjson.dumps({**body, field: value}))


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ("token_invalid: fcm answered UNREGISTERED", Reason.TOKEN_INVALID),
        ("throttled: the provider kept throttling for 3600s", Reason.THROTTLED),
        ("expired_unfinished after 86400 s", Reason.EXPIRED_UNFINISHED),
        ("twilio answered HTTP 400: Twilio error 21211", None),
        ("token_invalidity is not a code", None),
        ("", None),
        (None, None),
    ],
)
def test_reason_is_the_code_a_failure_starts_with(error: str | None, reason: Reason | None) -> None:
    assert reason_of(error) == reason


def test_a_permanent_error_with_a_reason_starts_with_its_code() -> None:
    error = PermanentError("device token unregistered", reason=Reason.TOKEN_INVALID)
    assert reason_of(str(error)) is Reason.TOKEN_INVALID
    assert not error.retriable


NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
BODY = {"uuid": UID, "destination": "log", "to": "ops", "txt": "hi"}


def _errors(data: dict[str, object]) -> dict[str, str]:
    with pytest.raises(InvalidNotification) as caught:
        parse(data, now=NOW)
    return {e.field: e.message for e in caught.value.errors}


def test_send_at_and_expires_at_are_read_as_unix_seconds_and_survive_the_wire() -> None:
    n = parse(
        BODY | {"send_at": "2027-01-15T09:00:00+01:00", "expires_at": "2027-01-15T08:30:00.5Z"},
        now=NOW,
    )
    assert (n.accepted_at, n.send_at, n.expires_at) == (NOW, NOW, NOW + 1800.5)
    assert Notification.decode(n.encode()) == n


def test_ttl_seconds_counts_from_send_at_else_from_acceptance() -> None:
    later = parse(BODY | {"send_at": "2027-01-15T09:00:00Z", "ttl_seconds": 60}, now=NOW)
    assert later.expires_at == NOW + 3600 + 60
    assert parse(BODY | {"ttl_seconds": 60}, now=NOW).expires_at == NOW + 60
    assert parse(BODY, now=NOW).expires_at is None


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        ({"send_at": "tomorrow"}, "send_at", "RFC 3339"),
        ({"send_at": "2027-01-15T09:00:00"}, "send_at", "RFC 3339"),  # no offset
        ({"send_at": 1_800_000_000}, "send_at", "must be a string"),
        ({"send_at": "1960-01-01T00:00:00Z"}, "send_at", "between 1970"),
        ({"expires_at": "9999-12-31T23:59:59Z"}, "expires_at", "between 1970"),
        ({"expires_at": "2027-01-15T07:00:00Z"}, "expires_at", "later than now"),
        ({"send_at": "2027-01-15T07:59:58Z", "ttl_seconds": 1}, "ttl_seconds", "later than now"),
        (
            {"send_at": "2027-01-15T09:00:00Z", "expires_at": "2027-01-15T09:00:00Z"},
            "expires_at",
            "later than send_at",
        ),
        ({"expires_at": "2027-01-16T00:00:00Z", "ttl_seconds": 5}, "ttl_seconds", "not be given"),
        ({"ttl_seconds": 0}, "ttl_seconds", "whole number"),
        ({"ttl_seconds": -5}, "ttl_seconds", "whole number"),
        ({"ttl_seconds": 1.5}, "ttl_seconds", "whole number"),
        ({"ttl_seconds": True}, "ttl_seconds", "whole number"),
        ({"ttl_seconds": "60"}, "ttl_seconds", "whole number"),
        ({"ttl_seconds": 10**30}, "ttl_seconds", "whole number"),
    ],
)
def test_a_bad_time_is_refused_by_its_field(
    extra: dict[str, object], field: str, message: str
) -> None:
    errors = _errors(BODY | extra)
    assert list(errors) == [field] and message in errors[field]


def test_a_whole_ttl_written_as_a_float_is_the_same_ttl() -> None:
    """JSON Schema's integer includes 60.0 (as JSON parsers may write it)."""
    assert parse(BODY | {"ttl_seconds": 60.0}, now=NOW) == parse(
        BODY | {"ttl_seconds": 60}, now=NOW
    )
    assert parse(BODY | {"ttl_seconds": 60}, now=NOW).expires_at == NOW + 60


def test_a_topic_message_carries_no_ttl_seconds() -> None:
    body = BODY | {"accepted_at": NOW, "ttl_seconds": 60}
    with pytest.raises(InvalidNotification, match="ttl_seconds: is not a known field"):
        Notification.decode(orjson.dumps(body))


def test_send_at_takes_part_in_the_fingerprint() -> None:
    plain = parse(BODY, now=NOW)
    later = parse(BODY | {"send_at": "2027-01-15T09:00:00Z"}, now=NOW)
    assert plain.fingerprint() != later.fingerprint()
    assert (
        later.fingerprint() == parse(BODY | {"send_at": "2027-01-15T10:00:00+01:00"}).fingerprint()
    )


ODD_TIMES = (
    st.none()
    | st.integers()
    | st.floats()
    | st.text(max_size=40)
    | st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())
    | st.from_regex(
        r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,12})?"
        r"([Zz]|[+-][0-9]{2}:[0-9]{2})?\Z"
    )
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(ODD_TIMES, ODD_TIMES, st.none() | st.integers() | st.floats() | st.booleans())
@example("1975-01-01T00:00:00Z", None, 60)
@example("2027-01-15T09:00:00Z", "2027-01-15T08:59:59.999999Z", None)
def test_odd_times_give_a_notification_or_invalid_notification(
    send_at: object, expires_at: object, ttl: object
) -> None:
    extra = {"send_at": send_at, "expires_at": expires_at, "ttl_seconds": ttl}
    try:
        n = parse(BODY | {k: v for k, v in extra.items() if v is not None}, now=NOW)
    except InvalidNotification as exc:
        assert exc.errors and {e.field for e in exc.errors} <= set(extra)
        return
    assert Notification.decode(n.encode()) == n  # whatever parse takes, a topic carries
    if n.expires_at is not None:
        assert n.expires_at > max(NOW, n.send_at or NOW)


def test_seconds_left_are_whole_never_negative_and_none_without_expiry() -> None:
    n = Notification(uuid.uuid4(), "log", "ops", "hi", expires_at=1000.0)
    assert [n.seconds_left(t) for t in (0.5, 999.2, 1000.0, 5000.0)] == [999, 0, 0, 0]
    assert msgspec.structs.replace(n, expires_at=None).seconds_left(0.0) is None


def _fingerprint_as_stored(n: Notification) -> bytes:
    """The digest as rows already stored hold it (one update per part and NUL): a re-post
    of one of them must still be told from a conflict after an upgrade."""
    digest = hashlib.sha256()
    for part in (n.channel, n.to, n.txt, n.subject or "", n.priority.value):
        digest.update(part.encode())
        digest.update(b"\x00")
    if n.send_at is not None:
        digest.update(f"send_at={n.send_at!r}".encode())
    return digest.digest()


@given(
    st.text(),
    st.text(),
    st.none() | st.text(),
    st.sampled_from(Priority),
    st.none() | st.floats(0, 4e9, allow_nan=False),
)
def test_the_fingerprint_is_the_digest_rows_already_hold(
    to: str, txt: str, subject: str | None, priority: Priority, send_at: float | None
) -> None:
    n = Notification(uuid.uuid4(), "email", to, txt, subject, priority, send_at=send_at)
    assert n.fingerprint() == _fingerprint_as_stored(n)


@given(st.uuids())
def test_a_uuids_text_and_key_are_its_canonical_form(uid: uuid.UUID) -> None:
    from_db = asyncpg.pgproto.pgproto.UUID(str(uid))  # what a row read from the store holds
    for u in (uid, from_db):
        assert uuid_text(u) == str(uid)
        assert Notification(u, "log", "ops", "x").key == str(uid).encode()
