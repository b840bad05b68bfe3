"""The webpush channel: subscription validation, settings, payload size, encryption, VAPID
JWTs on an injected clock, and the classification of push service answers."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import http_ece  # type: ignore[import-untyped]
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st

from notifsvc import config
from notifsvc.channels import PermanentError, Throttled, TransientError
from notifsvc.channels.http import Answer
from notifsvc.channels.webpush import (
    HEADER_BYTES,
    MAX_BODY_BYTES,
    MAX_ENDPOINT_CHARS,
    MAX_PAYLOAD_BYTES,
    RECORD_OVERHEAD,
    TOKEN_CACHE_SIZE,
    TOKEN_LIFETIME,
    TOKEN_REFRESH_MARGIN,
    BadSubscription,
    VapidSigner,
    WebPushChannel,
    WebPushSettings,
    b64url_decode,
    b64url_encode,
    encrypt,
    load_vapid_key,
    origin_of,
    parse_subscription,
    payload,
    public_key_b64,
)
from notifsvc.config import ConfigError, Secret, Settings
from notifsvc.model import Notification, Priority, Reason, reason_of
from unit.channels.contract import Case

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
VAPID_KEY = ec.derive_private_key(0x5EED, ec.SECP256R1())
VAPID_RAW = b64url_encode(VAPID_KEY.private_numbers().private_value.to_bytes(32, "big"))
CONFIG = WebPushSettings(
    vapid_private_key=Secret(VAPID_RAW), vapid_subject="mailto:ops@example.com"
)
SETTINGS = Settings().with_sections(CONFIG)
BROWSER_KEY = ec.derive_private_key(0xB0B, ec.SECP256R1())
AUTH = bytes(range(16))
FCM = "https://fcm.googleapis.com/fcm/send/dGVzdC1zdWJzY3JpcHRpb24tdG9rZW4"


def point(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def subscription(
    endpoint: Any = FCM, key: ec.EllipticCurvePrivateKey = BROWSER_KEY, auth: bytes = AUTH
) -> dict[str, Any]:
    keys = {"p256dh": b64url_encode(point(key)), "auth": b64url_encode(auth)}
    return {"endpoint": endpoint, "expirationTime": None, "keys": keys}


def text(data: Any) -> str:
    """JSON text as a client may send it (any integer, Infinity: not only what orjson writes)."""
    return json.dumps(data)


GOOD = text(subscription())
CASE = Case(
    CONFIG,
    ("vapid_private_key", "vapid_subject"),
    GOOD,
    (
        "",
        "fcm-registration-token",
        text({"endpoint": FCM}),
        text(subscription("http://fcm.googleapis.com/fcm/send/x")),
        text(subscription(key=BROWSER_KEY, auth=b"short")),
    ),
)


def note(to: str = GOOD, txt: str = "disk almost full", **kw: Any) -> Notification:
    return Notification(uuid.uuid4(), "webpush", to, txt, **kw)


def problems(to: str, settings: Settings = SETTINGS) -> list[str]:
    errors = WebPushChannel(settings).validate_recipient(to)
    assert {e.field for e in errors} <= {"to"}
    return [e.message for e in errors]


# -- the subscription --------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    [
        FCM,
        "https://updates.push.services.mozilla.com/wpush/v2/gAAAAABk",
        "https://wns2-par02p.notify.windows.com/w/?token=BQYAAAD",
        "https://web.push.apple.com/QGuQyavXutnMH4X",
        "https://push.example.com:8443/p/1",
    ],
)
def test_accepts_browser_subscriptions(endpoint: str) -> None:
    assert problems(text(subscription(endpoint))) == []


def test_accepts_padding_an_expiration_time_and_unknown_members() -> None:
    data = subscription()
    data["keys"] = {k: v + "=" * (-len(v) % 4) for k, v in data["keys"].items()}
    data |= {"expirationTime": 1_800_000_000_000, "extra": [1]}
    data["keys"]["other"] = "x"
    assert problems("  \n" + text(data)) == []


def without(path: str) -> str:
    data = subscription()
    if "." in path:
        outer, inner = path.split(".")
        del data[outer][inner]
    else:
        del data[path]
    return text(data)


def changed(path: str, value: Any) -> str:
    data = subscription()
    if "." in path:
        outer, inner = path.split(".")
        data[outer][inner] = value
    else:
        data[path] = value
    return text(data)


@pytest.mark.parametrize(
    ("to", "message"),
    [
        ("", "must be a browser PushSubscription as JSON text"),
        ("fcm-token", "must be a browser PushSubscription as JSON text"),
        ("[1, 2]", "must be an object with endpoint and keys"),
        ("x" * 5000, "longer than 4096"),
        (without("endpoint"), "subscription JSON has no endpoint"),
        (changed("endpoint", 7), "endpoint must be a string"),
        (without("keys"), "subscription JSON has no keys"),
        (changed("keys", "BNc...,abc"), "keys must be an object"),
        (without("keys.auth"), "subscription JSON has no keys.auth"),
        (without("keys.p256dh"), "subscription JSON has no keys.p256dh"),
        (changed("keys.auth", 16), "keys.auth must be a base64url string"),
        (changed("keys.auth", "AAECAwQFBgcICQoLDA0ODw+/"), "keys.auth is not base64url"),
        (changed("keys.auth", "AAECAwQFBgcICQoLDA0O"), "keys.auth must be 16 bytes, not 15"),
        (changed("keys.p256dh", b64url_encode(b"\x04" * 33)), "must be 65 bytes, not 33"),
        (changed("keys.p256dh", b64url_encode(point(BROWSER_KEY)[:33])), "65 bytes, not 33"),
        (changed("keys.p256dh", b64url_encode(b"\x04" + b"\x01" * 64)), "not a point on"),
        (changed("keys.p256dh", b64url_encode(b"\x05" + point(BROWSER_KEY)[1:])), "uncompressed"),
        (changed("expirationTime", "tomorrow"), "expirationTime must be a number or null"),
        (changed("expirationTime", True), "expirationTime must be a number or null"),
    ],
)
def test_rejects_malformed_subscriptions_naming_the_problem(to: str, message: str) -> None:
    found = problems(to)
    assert len(found) == 1, found
    assert message in found[0]


def test_reports_every_problem_of_a_subscription() -> None:
    data = subscription("http://push.example.com/x", auth=b"")
    del data["keys"]["p256dh"]
    found = problems(text(data))
    assert len(found) == 3
    assert "endpoint must be https" in found[0]
    assert "no keys.p256dh" in found[1]
    assert "keys.auth must be 16 bytes, not 0" in found[2]


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("ftp://push.example.com/x", "must be an https URL"),
        ("https:///nohost", "must be an https URL"),
        ("https://push.example.com:99999/x", "is not a URL"),
        ("https://push.example.com/a b", "spaces"),
        ("https://push.example.com/\r\nX: 1", "spaces"),
        ("https://push.example.com\\@evil.example/", "backslashes"),
        ("https://user:pw@push.example.com/x", "credentials"),
        ("https://push.example.com/" + "a" * MAX_ENDPOINT_CHARS, "longer than 2048"),
        ("http://push.example.com/x", "must be https (http only for NOTIFSVC_WEBPUSH_ALLOWED_HTTP"),
        ("http://127.0.0.1:8080/push/1", "http only for"),
        ("https://127.0.0.1/push/1", "host '127.0.0.1' is not a public address"),
        ("https://10.1.2.3/push/1", "not a public address"),
        ("https://169.254.169.254/latest/", "not a public address"),
        ("https://[::1]/push", "not a public address"),
        ("https://[fd00::1]/push", "not a public address"),
        ("https://localhost/push", "not a public address"),
        ("https://a.localhost/push", "not a public address"),
    ],
)
def test_rejects_endpoints_a_client_must_not_make_us_call(endpoint: str, message: str) -> None:
    found = problems(changed("endpoint", endpoint))
    assert len(found) == 1
    assert found[0].startswith("subscription JSON endpoint ")
    assert message in found[0]
    assert "/push" not in found[0] and "pw" not in found[0]  # the host at most


def test_http_only_for_listed_hosts_and_ports() -> None:
    listed = SETTINGS.configure(
        WebPushSettings, allowed_http_hosts=frozenset({"127.0.0.1", "push.test:8080"})
    )
    for endpoint in (
        "http://127.0.0.1:1234/push/a",
        "https://127.0.0.1/p",
        "http://push.test:8080/",
    ):
        assert problems(changed("endpoint", endpoint), listed) == [], endpoint
    assert problems(changed("endpoint", "http://push.test:8081/"), listed) != []


def test_allowed_hosts_admit_their_subdomains_only() -> None:
    hosts = frozenset({"fcm.googleapis.com", "notify.windows.com", "10.0.0.5"})
    narrow = SETTINGS.configure(WebPushSettings, allowed_hosts=hosts)
    for endpoint in (FCM, "https://wns2-par02p.notify.windows.com/w/", "https://10.0.0.5/p"):
        assert problems(changed("endpoint", endpoint), narrow) == [], endpoint
    for endpoint in ("https://evil.example/x", "https://fcm.googleapis.com.evil.example/x"):
        [message] = problems(changed("endpoint", endpoint), narrow)
        assert "is not in NOTIFSVC_WEBPUSH_ALLOWED_HOSTS" in message
    assert problems(changed("endpoint", "https://evilnotify.windows.com/"), narrow) != []


def test_origin_is_scheme_host_and_a_port_other_than_the_default() -> None:
    assert origin_of(FCM) == "https://fcm.googleapis.com"
    assert origin_of("https://Push.Example.com:443/x") == "https://push.example.com"
    assert origin_of("https://push.example.com:8443/x?y") == "https://push.example.com:8443"
    assert origin_of("http://127.0.0.1:8025/push/a") == "http://127.0.0.1:8025"
    assert origin_of("http://127.0.0.1:80/push/a") == "http://127.0.0.1"


@pytest.mark.parametrize("value", ["a+b", "a/b", "a=b", "abcde", "é", "ab==="])
def test_b64url_is_strict(value: str) -> None:
    with pytest.raises(ValueError, match="base64url"):
        b64url_decode(value)


# -- the settings ---------------------------------------------------------------------------


def key_texts() -> dict[str, str]:
    pkcs8 = VAPID_KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    sec1 = VAPID_KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    der = VAPID_KEY.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return {
        "raw": VAPID_RAW,
        "pkcs8": pkcs8.decode(),
        "sec1": sec1.decode(),
        "der": b64url_encode(der),
    }


@pytest.mark.parametrize("form", ["raw", "pkcs8", "sec1", "der"])
def test_the_vapid_key_is_read_in_every_usual_form(form: str) -> None:
    key = load_vapid_key(key_texts()[form])
    assert public_key_b64(key) == public_key_b64(VAPID_KEY)


def test_the_vapid_key_comes_from_a_file_too(tmp_path: Path) -> None:
    path = tmp_path / "vapid.pem"
    path.write_text(key_texts()["pkcs8"])
    env = {
        "NOTIFSVC_WEBPUSH_VAPID_PRIVATE_KEY_FILE": str(path),
        "NOTIFSVC_WEBPUSH_VAPID_SUBJECT": "https://example.com/contact",
        "NOTIFSVC_WEBPUSH_TTL_SECONDS": "0",
        "NOTIFSVC_WEBPUSH_ALLOWED_HOSTS": "fcm.googleapis.com, push.services.mozilla.com",
    }
    section = config.load(env).section(WebPushSettings)
    assert section.vapid_private_key is not None
    assert public_key_b64(load_vapid_key(section.vapid_private_key.reveal())) == public_key_b64(
        VAPID_KEY
    )
    assert section.ttl_seconds == 0
    assert section.allowed_hosts == {"fcm.googleapis.com", "push.services.mozilla.com"}
    assert WebPushChannel.disabled_reason(Settings().with_sections(section)) is None


def unusable_keys() -> list[str]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    p384 = ec.generate_private_key(ec.SECP384R1())
    pem = serialization.Encoding.PEM
    fmt, none = serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    return [
        "not a key",
        b64url_encode(b"\x00" * 32),  # zero is no private key
        b64url_encode(b"\xff" * 32),  # beyond the curve's order
        rsa_key.private_bytes(pem, fmt, none).decode(),
        p384.private_bytes(pem, fmt, none).decode(),
        VAPID_KEY.private_bytes(pem, fmt, serialization.BestAvailableEncryption(b"pw")).decode(),
    ]


@pytest.mark.parametrize("index", range(6))
def test_an_unusable_vapid_key_is_refused_by_name_without_quoting_it(index: int) -> None:
    bad = unusable_keys()[index]
    env = {"NOTIFSVC_WEBPUSH_VAPID_PRIVATE_KEY": bad}
    with pytest.raises(ConfigError) as caught:
        config.load(env)
    [problem] = caught.value.problems
    assert problem.startswith("NOTIFSVC_WEBPUSH_VAPID_PRIVATE_KEY=(hidden): must be a P-256")
    assert bad not in problem
    direct = Settings().configure(WebPushSettings, vapid_private_key=Secret(bad))
    reason = WebPushChannel.disabled_reason(
        direct.configure(WebPushSettings, vapid_subject="mailto:a@b.c")
    )
    assert reason is not None and "NOTIFSVC_WEBPUSH_VAPID_PRIVATE_KEY must be a P-256" in reason


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VAPID_SUBJECT", "ops@example.com"),
        ("VAPID_SUBJECT", "http://example.com"),
        ("VAPID_SUBJECT", "mailto:nobody"),
        ("TTL_SECONDS", "-1"),
        ("TTL_SECONDS", "2419201"),
        ("TTL_SECONDS", "a day"),
    ],
)
def test_other_unusable_settings_are_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"NOTIFSVC_WEBPUSH_{name}="):
        config.load({f"NOTIFSVC_WEBPUSH_{name}": value})


def test_unconfigured_the_channel_names_what_is_missing() -> None:
    reason = WebPushChannel.disabled_reason(Settings())
    assert reason == (
        "NOTIFSVC_WEBPUSH_VAPID_PRIVATE_KEY, NOTIFSVC_WEBPUSH_VAPID_SUBJECT are not set"
    )


# -- the payload -----------------------------------------------------------------------------


def test_the_payload_is_title_body_and_uuid() -> None:
    n = note(txt="Disk 95 % ⚠", subject="Alert")
    assert orjson.loads(payload(n)) == {
        "title": "Alert",
        "body": "Disk 95 % ⚠",
        "uuid": str(n.uuid),
    }
    assert orjson.loads(payload(note()))["title"] is None


def filler(size: int, subject: str | None = None) -> str:
    """A ``txt`` whose payload is ``size`` bytes."""
    return "x" * (size - len(payload(note(txt="", subject=subject))))


def test_a_payload_up_to_the_limit_is_accepted_and_fills_the_body_exactly() -> None:
    n = note(txt=filler(MAX_PAYLOAD_BYTES))
    assert len(payload(n)) == MAX_PAYLOAD_BYTES == 3993
    assert WebPushChannel(SETTINGS).validate(n) == []
    body = encrypt(payload(n), parse_subscription(GOOD, CONFIG))
    assert len(body) == MAX_BODY_BYTES == HEADER_BYTES + MAX_PAYLOAD_BYTES + RECORD_OVERHEAD


def test_a_payload_over_the_limit_is_refused_on_txt() -> None:
    channel = WebPushChannel(SETTINGS)
    wide = "€" * 1400  # 1,400 characters, 4,200 bytes
    assert len(wide) < channel.max_body_chars
    for txt in (wide, "\x01" * 700):  # escaped in JSON as \u0001: 6 bytes each
        errors = channel.validate(note(txt=txt))
        assert [e.field for e in errors] == ["txt"]
        assert f"makes a payload of 4270 bytes as JSON; at most {MAX_PAYLOAD_BYTES}" in (
            errors[0].message
        )
    errors = channel.validate(note(txt=filler(MAX_PAYLOAD_BYTES + 1)))
    assert [e.message for e in errors] == ["is longer than 3923 characters for webpush"]


def test_a_subject_that_makes_it_too_large_is_refused_on_subject() -> None:
    subject = "s" * 200
    errors = WebPushChannel(SETTINGS).validate(
        note(txt=filler(MAX_PAYLOAD_BYTES + 1, subject), subject=subject)
    )
    assert [e.field for e in errors] == ["subject"]
    assert "with txt makes a payload of 3994 bytes" in errors[0].message
    assert (
        WebPushChannel(SETTINGS).validate(
            note(txt=filler(MAX_PAYLOAD_BYTES, subject), subject=subject)
        )
        == []
    )


def decrypt(
    body: bytes, key: ec.EllipticCurvePrivateKey = BROWSER_KEY, auth: bytes = AUTH
) -> bytes:
    """What the browser does with a push."""
    plain: bytes = http_ece.decrypt(body, private_key=key, auth_secret=auth, version="aes128gcm")
    return plain


def test_encryption_is_for_the_subscription_and_fresh_every_time() -> None:
    sub = parse_subscription(GOOD, CONFIG)
    one, two = encrypt(b'{"a":1}', sub), encrypt(b'{"a":1}', sub)
    assert decrypt(one) == decrypt(two) == b'{"a":1}'
    assert one[:16] != two[:16] and one[21:86] != two[21:86]  # salt and sender key
    assert one[16:21] == (4096).to_bytes(4, "big") + b"\x41"  # rs, key id length
    with pytest.raises(http_ece.ECEException):
        decrypt(one, auth=bytes(16))


# -- requests and VAPID --------------------------------------------------------------------


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def claims(token: str, audience: str) -> dict[str, Any]:
    public = VAPID_KEY.public_key()
    decoded: dict[str, Any] = jwt.decode(
        token, public, algorithms=["ES256"], audience=audience, options={"verify_exp": False}
    )
    return decoded


def test_the_request_carries_vapid_ttl_urgency_and_the_encrypted_payload() -> None:
    clock = Clock()
    channel = WebPushChannel(SETTINGS.configure(WebPushSettings, ttl_seconds=600), clock=clock)
    n = note(subject="Alert", priority=Priority.HIGH)
    request = channel.request(n)
    assert request.url == FCM
    assert request.label == "webpush to fcm.googleapis.com"
    headers = dict(request.headers)
    auth = headers.pop("Authorization")
    assert auth.startswith("vapid t=")
    t, _, k = auth.removeprefix("vapid t=").partition(", k=")
    assert k == public_key_b64(VAPID_KEY)
    assert claims(t, "https://fcm.googleapis.com") == {
        "aud": "https://fcm.googleapis.com",
        "exp": int(clock.now) + TOKEN_LIFETIME,
        "sub": "mailto:ops@example.com",
    }
    assert headers == {
        "Content-Encoding": "aes128gcm",
        "Content-Type": "application/octet-stream",
        "TTL": "600",
        "Urgency": "high",
    }
    assert orjson.loads(decrypt(request.body)) == orjson.loads(payload(n))
    assert t in request.secrets and FCM in request.secrets
    assert "/fcm/send/dGVzdC1zdWJzY3JpcHRpb24tdG9rZW4" in request.secrets


@pytest.mark.parametrize(
    ("priority", "urgency"),
    [(Priority.HIGH, "high"), (Priority.NORMAL, "normal"), (Priority.LOW, "low")],
)
def test_urgency_follows_our_priority(priority: Priority, urgency: str) -> None:
    request = WebPushChannel(SETTINGS).request(note(priority=priority))
    assert request.headers["Urgency"] == urgency
    assert request.headers["TTL"] == "86400"  # the default


def test_jwts_are_cached_per_origin_and_replaced_before_they_expire() -> None:
    clock = Clock()
    signer = VapidSigner(VAPID_KEY, "mailto:ops@example.com", clock)
    fcm, mozilla = "https://fcm.googleapis.com", "https://updates.push.services.mozilla.com"
    first = signer.token(fcm)
    assert signer.token(fcm) == first
    assert claims(signer.token(mozilla), mozilla)["aud"] == mozilla
    exp = claims(first, fcm)["exp"]
    assert exp - clock.now == TOKEN_LIFETIME <= 24 * 3600
    clock.now = exp - TOKEN_REFRESH_MARGIN - 1
    assert signer.token(fcm) == first  # still well within its life
    clock.now = exp - TOKEN_REFRESH_MARGIN
    second = signer.token(fcm)
    assert second != first
    assert claims(second, fcm)["exp"] == int(clock.now) + TOKEN_LIFETIME
    assert clock.now < exp  # replaced before the old one expired


def test_the_jwt_cache_is_bounded_and_a_refused_token_forgotten() -> None:
    signer = VapidSigner(VAPID_KEY, "mailto:ops@example.com", Clock())
    first = signer.token("https://push0.example")
    for i in range(1, TOKEN_CACHE_SIZE + 1):
        signer.token(f"https://push{i}.example")
    assert signer.token("https://push0.example") != first  # evicted, signed anew
    kept = signer.token("https://push5.example")
    signer.forget("https://push5.example")
    assert signer.token("https://push5.example") != kept


def test_a_subscription_refused_now_is_never_sent_nor_quoted() -> None:
    endpoint = "http://push.example.com/secret-capability-path"
    with pytest.raises(PermanentError) as caught:
        WebPushChannel(SETTINGS).request(note(changed("endpoint", endpoint)))
    assert "webpush to push.example.com: the subscription" in str(caught.value)
    assert "secret-capability-path" not in str(caught.value)


def answer(status: int, body: str = "", headers: dict[str, str] | None = None) -> Answer:
    return Answer(status, headers or {}, body.encode(), body)


def classify(status: int, body: str = "", headers: dict[str, str] | None = None) -> Any:
    channel = WebPushChannel(SETTINGS)
    request = channel.request(note())
    return channel.classify(answer(status, body, headers), request)


@pytest.mark.parametrize("status", [200, 201, 202])
def test_2xx_is_delivered(status: int) -> None:
    assert classify(status) is None


@pytest.mark.parametrize("status", [404, 410])
def test_a_gone_subscription_is_token_invalid(status: int) -> None:
    error = classify(status, '{"errno": 106}')
    assert isinstance(error, PermanentError)
    assert error.reason is Reason.TOKEN_INVALID
    assert reason_of(str(error)) is Reason.TOKEN_INVALID
    assert f"HTTP {status}" in str(error)


def test_413_is_permanent_payload_too_large() -> None:
    error = classify(413)
    assert isinstance(error, PermanentError) and error.reason is None
    assert "too large" in str(error)


def test_429_is_throttled_with_retry_after() -> None:
    error = classify(429, "slow down", {"Retry-After": "30"})
    assert isinstance(error, Throttled)
    assert error.retry_after == 30.0


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_transient(status: int) -> None:
    error = classify(status, headers={"Retry-After": "5"})
    assert isinstance(error, TransientError) and not isinstance(error, Throttled)
    assert error.retry_after == 5.0


def test_400_is_permanent() -> None:
    error = classify(400, '{"errno": 110, "message": "bad Content-Encoding"}')
    assert isinstance(error, PermanentError) and error.reason is None
    assert "HTTP 400" in str(error) and "bad Content-Encoding" in str(error)


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_are_permanent_logged_as_vapid_and_drop_the_jwt(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    channel = WebPushChannel(SETTINGS)
    request = channel.request(note())
    token = channel.signer.token("https://fcm.googleapis.com")
    with caplog.at_level(logging.WARNING, logger="notifsvc.channels.webpush"):
        error = channel.classify(answer(status, "Unauthorized"), request)
    assert isinstance(error, PermanentError) and error.reason is None
    assert f"HTTP {status}: VAPID authorization refused" in str(error)
    assert "refused our VAPID authorization" in caplog.text
    assert public_key_b64(VAPID_KEY) in caplog.text  # the public key: what to compare
    assert token not in caplog.text and token not in str(error)
    assert channel.signer.token("https://fcm.googleapis.com") != token


def test_an_answer_quoting_the_endpoint_or_the_jwt_is_scrubbed() -> None:
    channel = WebPushChannel(SETTINGS)
    request = channel.request(note())
    echo = f"bad request to {FCM} with {request.headers['Authorization']}"
    error = channel.classify(answer(400, request.scrub(echo)), request)
    assert "dGVzdC1zdWJzY3JpcHRpb24tdG9rZW4" not in str(error)
    assert "t=[redacted]" in str(error)


# -- properties -------------------------------------------------------------------------------

browser_keys = st.integers(min_value=1, max_value=P256_ORDER - 1).map(
    lambda n: ec.derive_private_key(n, ec.SECP256R1())
)
hosts = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z]{2,10}){1,3}\Z")
paths = st.from_regex(r"\A(/[A-Za-z0-9._~%!$&'()*+,;=:@-]{0,40}){0,4}(\?[A-Za-z0-9=&_-]{0,30})?\Z")
endpoints = st.builds(lambda host, path: f"https://{host}{path}", hosts, paths)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(endpoints, browser_keys, st.binary(min_size=16, max_size=16), st.text(max_size=300))
def test_any_valid_subscription_is_accepted_and_can_be_encrypted_to(
    endpoint: str, key: ec.EllipticCurvePrivateKey, auth: bytes, txt: str
) -> None:
    to = text(subscription(endpoint, key, auth))
    assert problems(to) == []
    plaintext = payload(note(to, txt))
    body = encrypt(plaintext, parse_subscription(to, CONFIG))
    assert decrypt(body, key, auth) == plaintext


def mutate(data: dict[str, Any], where: str, value: Any) -> dict[str, Any]:
    keys = dict(data["keys"])
    top = dict(data)
    if where.startswith("keys."):
        keys[where[5:]] = value
        top["keys"] = keys
    else:
        top[where] = value
    return top


#: A value for one member of a subscription: as a browser writes it, or not.
members = {
    "endpoint": endpoints
    | st.sampled_from(["http://push.example.com/p", "https://10.0.0.1/p", "https://u:p@x.example/"])
    | st.text(max_size=60),
    "keys.p256dh": browser_keys.map(lambda k: b64url_encode(point(k)))
    | st.binary(min_size=64, max_size=64).map(lambda b: b64url_encode(b"\x04" + b))
    | st.binary(max_size=70).map(b64url_encode),
    "keys.auth": st.binary(min_size=16, max_size=16).map(b64url_encode)
    | st.binary(max_size=20).map(b64url_encode),
    "expirationTime": st.none() | st.integers() | st.floats(),
}
mutations = st.one_of(
    *(st.tuples(st.just(where), values | json_values) for where, values in members.items()),
    st.tuples(st.sampled_from(["keys", "extra"]), json_values),
)
recipients = st.one_of(
    st.text(max_size=200),
    json_values.map(text),
    st.tuples(endpoints, browser_keys, st.binary(min_size=16, max_size=16), mutations).map(
        lambda t: text(mutate(subscription(t[0], t[1], t[2]), *t[3]))
    ),
)


@given(recipients)
def test_any_recipient_gets_field_errors_on_to_or_can_be_encrypted_to(to: str) -> None:
    channel = WebPushChannel(SETTINGS)
    errors = channel.validate_recipient(to)
    assert all(e.field == "to" and e.message for e in errors)
    if errors:
        with pytest.raises(BadSubscription):
            parse_subscription(to, CONFIG)
        with pytest.raises(PermanentError):
            channel.request(note(to))
    else:
        body = channel.request(note(to)).body
        assert HEADER_BYTES + RECORD_OVERHEAD < len(body) <= MAX_BODY_BYTES


@pytest.mark.parametrize(
    ("setting", "expires_in", "ttl"),
    [(600, 42.9, "42"), (600, 4_000.0, "600"), (0, 4_000.0, "4000"), (600, -3.0, "0")],
)
def test_the_ttl_is_the_time_left_until_expires_at_capped_by_the_setting(
    setting: int, expires_in: float, ttl: str
) -> None:
    clock = Clock()
    channel = WebPushChannel(SETTINGS.configure(WebPushSettings, ttl_seconds=setting), clock=clock)
    request = channel.request(note(expires_at=clock.now + expires_in))
    assert dict(request.headers)["TTL"] == ttl
    assert dict(channel.request(note()).headers)["TTL"] == str(setting)
