"""Standard Webhooks signing, checked against the spec's own Python library."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
import standardwebhooks

from notifsvc import config
from notifsvc.signing import (
    ID_HEADER,
    MAX_KEY_BYTES,
    MIN_KEY_BYTES,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SigningSecrets,
    VerificationError,
    generate_secret,
    signature,
)

# The vector the spec's libraries share (their test_sign_function).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

OLD = "whsec_" + base64.b64encode(bytes(range(32))).decode()
NEW = "whsec_" + base64.b64encode(bytes(range(100, 164))).decode()  # 64 bytes: the maximum
BODY = '{"uuid":"4c1f","txt":"déploiement fini"}'.encode()


def library_verifies(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    try:
        standardwebhooks.Webhook(secret).verify(body, headers)
    except standardwebhooks.WebhookVerificationError:
        return False
    return True


def test_the_spec_vector() -> None:
    keys = SigningSecrets(VECTOR_SECRET)
    assert keys.sign(VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE
    library = standardwebhooks.Webhook(VECTOR_SECRET).sign(
        VECTOR_ID, datetime.fromtimestamp(VECTOR_TIMESTAMP, UTC), VECTOR_BODY.decode()
    )
    assert library == VECTOR_SIGNATURE


def test_headers_verify_with_the_library() -> None:
    headers = SigningSecrets(NEW).headers("msg_1", BODY)
    assert set(headers) == {ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER}
    assert headers[ID_HEADER] == "msg_1"
    assert abs(int(headers[TIMESTAMP_HEADER]) - time.time()) <= 2
    assert headers[SIGNATURE_HEADER].startswith("v1,")
    assert library_verifies(NEW, BODY, headers)
    assert not library_verifies(OLD, BODY, headers)
    assert not library_verifies(NEW, BODY.replace(b"fini", b"Fini"), headers)
    assert not library_verifies(NEW, BODY, headers | {ID_HEADER: "msg_2"})
    stamp = str(int(headers[TIMESTAMP_HEADER]) + 1)
    assert not library_verifies(NEW, BODY, headers | {TIMESTAMP_HEADER: stamp})


def test_during_a_rotation_every_secret_signs() -> None:
    keys = SigningSecrets(f"{NEW}, {OLD}")
    assert len(keys) == 2
    headers = keys.headers("msg_1", BODY)
    signatures = headers[SIGNATURE_HEADER].split(" ")
    assert [s.partition(",")[0] for s in signatures] == ["v1", "v1"]
    assert signatures[0] == SigningSecrets(NEW).sign("msg_1", int(headers[TIMESTAMP_HEADER]), BODY)
    assert library_verifies(NEW, BODY, headers)  # a receiver that has the new secret
    assert library_verifies(OLD, BODY, headers)  # one that still has the old one
    assert not library_verifies(generate_secret(), BODY, headers)


def test_verify_accepts_what_the_library_signs() -> None:
    library = standardwebhooks.Webhook(OLD)
    now = datetime.now(UTC)
    headers = {
        "Webhook-Id": "msg_x",  # header names are case-insensitive
        "Webhook-Timestamp": str(int(now.timestamp())),
        "Webhook-Signature": "v1a,AAAA v1,bm9wZQ== " + library.sign("msg_x", now, BODY.decode()),
    }
    assert SigningSecrets(f"{NEW},{OLD}").verify(BODY, headers) == "msg_x"
    with pytest.raises(VerificationError, match="no signature matches"):
        SigningSecrets(NEW).verify(BODY, headers)


@pytest.mark.parametrize(
    ("drift", "accepted"), [(-300, True), (300, True), (-301, False), (301, False)]
)
def test_verify_tolerates_clock_drift_up_to_the_tolerance(drift: int, accepted: bool) -> None:
    keys = SigningSecrets(OLD)
    headers = keys.headers("msg_1", BODY, timestamp=1_800_000_000)
    now = 1_800_000_000 - drift
    if accepted:
        assert keys.verify(BODY, headers, now=now) == "msg_1"
    else:
        with pytest.raises(VerificationError, match="too old" if drift < 0 else "future"):
            keys.verify(BODY, headers, now=now)
    assert keys.verify(BODY, headers, now=now, tolerance=400) == "msg_1"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({ID_HEADER: ""}, "missing"),
        ({SIGNATURE_HEADER: ""}, "missing"),
        ({TIMESTAMP_HEADER: "1.8e9"}, "malformed webhook-timestamp"),
        ({TIMESTAMP_HEADER: "-1"}, "malformed webhook-timestamp"),
        ({ID_HEADER: "msg.1"}, "malformed webhook-id"),
        ({SIGNATURE_HEADER: "v1,not base64!"}, "no signature matches"),
        ({SIGNATURE_HEADER: "v2,AAAA"}, "no signature matches"),
    ],
)
def test_verify_refuses_malformed_headers(change: dict[str, str], why: str) -> None:
    keys = SigningSecrets(OLD)
    headers = keys.headers("msg_1", BODY) | change
    with pytest.raises(VerificationError, match=why):
        keys.verify(BODY, headers)


def test_an_id_with_a_dot_or_a_space_is_never_signed() -> None:
    for msg_id in ("a.b", "a b", "", "a\r\nX: y", "é"):
        with pytest.raises(ValueError, match="webhook id"):
            SigningSecrets(OLD).headers(msg_id, BODY)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("a-raw-secret-of-enough-length-1234", "expected whsec_<base64"),
        (base64.b64encode(bytes(32)).decode(), "expected whsec_<base64"),  # prefix missing
        ("whsec_", "nothing follows whsec_"),
        ("whsec_" + base64.urlsafe_b64encode(b"\xfb" * 30).decode(), "standard base64"),
        ("whsec_" + base64.b64encode(bytes(MIN_KEY_BYTES - 1)).decode(), "not 23"),
        ("whsec_" + base64.b64encode(bytes(MAX_KEY_BYTES + 1)).decode(), "not 65"),
        ("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "not valid base64"),  # a bad length
        (",", "one or more"),
    ],
)
def test_malformed_secrets_are_refused_without_quoting_them(value: str, why: str) -> None:
    with pytest.raises(ValueError) as caught:
        SigningSecrets(value)
    message = str(caught.value)
    assert why in message
    assert message.startswith("the secret: ") or value == ","
    quoted = value.removeprefix("whsec_")[:8]
    assert len(quoted) < 8 or quoted not in message


def test_the_malformed_one_of_several_is_named_by_position() -> None:
    with pytest.raises(ValueError, match="secret 2 of 3: the key must be") as caught:
        SigningSecrets(f"{NEW},whsec_c2hvcnQ=,{OLD}")
    assert "c2hvcnQ" not in str(caught.value)


def test_separators_padding_and_round_trip() -> None:
    unpadded = "whsec_" + base64.b64encode(bytes(25)).decode().rstrip("=")
    keys = SigningSecrets(f" {NEW} ,\n{unpadded}\n")  # a mounted file: one per line
    assert len(keys) == 2
    assert keys.reveal() == f"{NEW},{unpadded}"
    assert SigningSecrets(keys.reveal()) == keys
    headers = keys.headers("msg_1", BODY)
    assert library_verifies(unpadded, BODY, headers)


def test_secrets_never_show_themselves() -> None:
    keys = SigningSecrets(OLD)
    assert OLD not in repr(keys) and OLD not in str(keys) and OLD not in f"{keys!r}"
    assert isinstance(keys, config.Secret)


def test_generated_secrets_are_valid_and_distinct() -> None:
    first, second = generate_secret(), generate_secret(MIN_KEY_BYTES)
    assert first.startswith("whsec_") and first != second
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32
    assert len(SigningSecrets(f"{first},{second}")) == 2
    with pytest.raises(ValueError, match="24 to 64"):
        generate_secret(16)


def test_signature_of_one_key() -> None:
    key = base64.b64decode(VECTOR_SECRET.removeprefix("whsec_"))
    assert signature(key, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE
    with pytest.raises(ValueError, match="timestamp"):
        signature(key, VECTOR_ID, -1, VECTOR_BODY)
