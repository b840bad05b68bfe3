"""The webhook channel's URL validation and body signature."""

from __future__ import annotations

import hashlib
import hmac
import uuid

import orjson
import pytest

from notifsvc.channels.webhook import MAX_URL_CHARS, SIGNATURE_HEADER, WebhookChannel, sign
from notifsvc.config import Secret, Settings
from notifsvc.model import Notification

SETTINGS = Settings(
    webhook_allowed_hosts=frozenset({"hooks.example.com", "127.0.0.1:8443"}),
    webhook_secret=Secret("s3cret"),
)


def verify(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does: recompute the HMAC and compare in constant time."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


@pytest.mark.parametrize(
    "to",
    [
        "https://hooks.example.com/notify",
        "http://HOOKS.example.com:8080/x?y=1",
        "https://127.0.0.1:8443/hook",
        "https://hooks.example.com/" + "a" * (MAX_URL_CHARS - 26),
    ],
)
def test_accepts_allowed_urls(to: str) -> None:
    assert WebhookChannel(SETTINGS).validate_recipient(to) == []


@pytest.mark.parametrize(
    ("to", "why"),
    [
        ("ftp://hooks.example.com/x", "http(s) URL"),
        ("javascript:alert(1)", "http(s) URL"),
        ("https:///path-only", "http(s) URL"),
        ("https://hooks.example.com:99999/", "http(s) URL"),
        ("https://evil.example.net/", "NOTIFSVC_WEBHOOK_ALLOWED_HOSTS"),
        ("https://hooks.example.com.evil.net/", "NOTIFSVC_WEBHOOK_ALLOWED_HOSTS"),
        ("https://127.0.0.1/hook", "NOTIFSVC_WEBHOOK_ALLOWED_HOSTS"),  # only port 8443 allowed
        ("https://hooks.example.com/" + "a" * (MAX_URL_CHARS - 25), "at most"),
        ("https://hooks.example.com/a b", "spaces"),
        ("https://hooks.example.com/\r\nX-Injected: 1", "spaces"),
    ],
)
def test_rejects_other_urls(to: str, why: str) -> None:
    errors = WebhookChannel(SETTINGS).validate_recipient(to)
    assert [e.field for e in errors] == ["to"]
    assert why in errors[0].message


def test_signature_verifies_with_the_shared_secret() -> None:
    n = Notification(uuid.uuid4(), "webhook", "https://hooks.example.com/", "deploy done")
    body, headers = WebhookChannel(SETTINGS)._request(n)
    assert orjson.loads(body)["uuid"] == str(n.uuid)
    assert headers["Idempotency-Key"] == str(n.uuid)
    assert verify("s3cret", body, headers[SIGNATURE_HEADER])
    assert not verify("other-secret", body, headers[SIGNATURE_HEADER])
    assert not verify("s3cret", body.replace(b"deploy", b"Deploy"), headers[SIGNATURE_HEADER])


def test_no_signature_without_a_secret() -> None:
    settings = Settings(webhook_allowed_hosts=frozenset({"hooks.example.com"}))
    n = Notification(uuid.uuid4(), "webhook", "https://hooks.example.com/", "x")
    _, headers = WebhookChannel(settings)._request(n)
    assert SIGNATURE_HEADER not in headers


def test_sign_matches_a_known_vector() -> None:
    # RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?"
    assert sign("Jefe", b"what do ya want for nothing?") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )
