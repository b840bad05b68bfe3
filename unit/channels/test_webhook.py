"""The webhook channel's URL validation and body signature."""

from __future__ import annotations

import hashlib
import hmac
import uuid

import orjson
import pytest

from notifsvc.channels import PermanentError
from notifsvc.channels.http import Answer
from notifsvc.channels.webhook import (
    MAX_URL_CHARS,
    SIGNATURE_HEADER,
    WebhookChannel,
    WebhookSettings,
    host_of,
    sign,
    url_secrets,
)
from notifsvc.config import Secret, Settings
from notifsvc.model import Notification
from unit.channels.contract import Case

SETTINGS = Settings().with_sections(
    WebhookSettings(
        allowed_hosts=frozenset({"hooks.example.com", "127.0.0.1:8443"}), secret=Secret("s3cret")
    )
)
CASE = Case(
    WebhookSettings(allowed_hosts=frozenset({"hooks.example.com"})),
    ("allowed_hosts",),
    "https://hooks.example.com/notify",
    ("ftp://hooks.example.com/x", "https://evil.example.net/", "not a url", ""),
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
        ("https://alice:hunter2@hooks.example.com/x", "credentials"),
        ("https://alice@hooks.example.com/x", "credentials"),
        ("http://:@hooks.example.com/", "credentials"),
        ("http://a@b@hooks.example.com/", "credentials"),
        ("http://evil.example.net@hooks.example.com/", "credentials"),
        ("http://hooks.example.com\\@evil.example.net/", "backslash"),
        ("http://evil.example.net\\@hooks.example.com/", "backslash"),
        ("http://hooks.example.com\\x", "backslash"),
    ],
)
def test_rejects_other_urls(to: str, why: str) -> None:
    errors = WebhookChannel(SETTINGS).validate_recipient(to)
    assert [e.field for e in errors] == ["to"]
    assert why in errors[0].message
    assert "hunter2" not in errors[0].message and "alice" not in errors[0].message


@pytest.mark.parametrize(
    "to",
    [
        "https://hooks.example.com/a@b",
        "https://hooks.example.com/?x=a@b",
        "http://hooks.example.com#@x",
    ],
)
def test_an_at_sign_after_the_host_is_no_credential(to: str) -> None:
    assert WebhookChannel(SETTINGS).validate_recipient(to) == []


def test_host_of_names_host_and_port_only() -> None:
    assert host_of("https://u:p@Hooks.Example.com:8443/x?token=t") == "hooks.example.com:8443"
    assert host_of("https://hooks.example.com/x") == "hooks.example.com"
    assert host_of("http://[::1") == "?"


def test_url_secrets_cover_credentials_path_query_and_fragment() -> None:
    to = (
        "https://bob:hunter2@hooks.example.com/services/T0/B0/XXXXsecret?token=qwerty&x=1#frag-ment"
    )
    secrets = url_secrets(to)
    for part in ("bob:hunter2", "/services/T0/B0/XXXXsecret", "XXXXsecret", "qwerty", "frag-ment"):
        assert part in secrets
    assert "1" not in secrets and "T0" not in secrets  # too short to scrub without mangling


def test_an_answer_quoting_the_url_is_scrubbed_from_the_error() -> None:
    to = "https://hooks.example.com/hook/s3cret-path?token=s3cret-query"
    channel = WebhookChannel(SETTINGS)
    request = channel.request(Notification(uuid.uuid4(), "webhook", to, "x"))
    echo = f"no route for POST {to} (/hook/s3cret-path?token=s3cret-query)"
    answer = Answer(404, {}, echo.encode(), request.scrub(echo))
    error = channel.classify(answer, request)
    assert isinstance(error, PermanentError)
    assert "webhook to hooks.example.com answered HTTP 404" in str(error)
    assert "s3cret" not in str(error)


def test_a_url_with_credentials_is_never_sent() -> None:
    to = "https://user:hunter2@hooks.example.com/x"  # accepted before they were refused
    with pytest.raises(PermanentError, match="credentials") as caught:
        WebhookChannel(SETTINGS).request(Notification(uuid.uuid4(), "webhook", to, "x"))
    assert "hunter2" not in str(caught.value)
    assert "hooks.example.com" in str(caught.value)


def test_signature_verifies_with_the_shared_secret() -> None:
    n = Notification(uuid.uuid4(), "webhook", "https://hooks.example.com/", "deploy done")
    body, headers = WebhookChannel(SETTINGS)._request(n)
    assert orjson.loads(body)["uuid"] == str(n.uuid)
    assert headers["Idempotency-Key"] == str(n.uuid)
    assert verify("s3cret", body, headers[SIGNATURE_HEADER])
    assert not verify("other-secret", body, headers[SIGNATURE_HEADER])
    assert not verify("s3cret", body.replace(b"deploy", b"Deploy"), headers[SIGNATURE_HEADER])


def test_no_signature_without_a_secret() -> None:
    settings = Settings().with_sections(
        WebhookSettings(allowed_hosts=frozenset({"hooks.example.com"}))
    )
    n = Notification(uuid.uuid4(), "webhook", "https://hooks.example.com/", "x")
    _, headers = WebhookChannel(settings)._request(n)
    assert SIGNATURE_HEADER not in headers


def test_sign_matches_a_known_vector() -> None:
    # RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?"
    assert sign("Jefe", b"what do ya want for nothing?") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )
