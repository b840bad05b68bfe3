from __future__ import annotations

import uuid

import orjson
import pytest

from notifsvc.model import InvalidNotification, Notification, Priority, parse

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
