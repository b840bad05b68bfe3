"""The webhook channel's URL validation and its Standard Webhooks signature (verified with
the spec's own library, ``standardwebhooks``)."""

from __future__ import annotations

import base64
import time
import uuid
from datetime import UTC, datetime

import orjson
import pytest
import standardwebhooks

from notifsvc import config
from notifsvc.channels import PermanentError, webhook
from notifsvc.channels.http import Answer
from notifsvc.channels.webhook import (
    MAX_URL_CHARS,
    WebhookChannel,
    WebhookSettings,
    host_of,
    url_secrets,
)
from notifsvc.config import ConfigError, Settings
from notifsvc.model import Notification
from notifsvc.signing import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, SigningSecrets
from unit.channels.contract import Case

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the spec libraries' test secret
OLD_SECRET = "whsec_" + base64.b64encode(b"an older secret, 32 bytes long!!").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(bytes(32)).decode()
ALLOWED = frozenset({"hooks.example.com", "127.0.0.1:8443"})
SETTINGS = Settings().with_sections(
    WebhookSettings(allowed_hosts=ALLOWED, secret=SigningSecrets(SECRET))
)
CASE = Case(
    WebhookSettings(allowed_hosts=frozenset({"hooks.example.com"})),
    ("allowed_hosts",),
    "https://hooks.example.com/notify",
    ("ftp://hooks.example.com/x", "https://evil.example.net/", "not a url", ""),
)


def verify(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    """What a receiver does, with the spec's library."""
    try:
        standardwebhooks.Webhook(secret).verify(body, headers)
    except standardwebhooks.WebhookVerificationError:
        return False
    return True


def deploy_done() -> Notification:
    return Notification(uuid.uuid4(), "webhook", "https://hooks.example.com/", "deploy done")


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
    n = deploy_done()
    body, headers = WebhookChannel(SETTINGS)._request(n)
    assert orjson.loads(body)["uuid"] == str(n.uuid)
    assert headers["Idempotency-Key"] == headers[ID_HEADER] == str(n.uuid)
    assert abs(int(headers[TIMESTAMP_HEADER]) - time.time()) <= 2
    assert verify(SECRET, body, headers)
    assert not verify(OTHER_SECRET, body, headers)
    assert not verify(SECRET, body.replace(b"deploy", b"Deploy"), headers)
    assert not any(name.lower().startswith("x-notifsvc") for name in headers)  # the old scheme


def test_signature_matches_the_library_for_a_fixed_timestamp() -> None:
    n = Notification(uuid.UUID(int=1), "webhook", "https://hooks.example.com/", "x")
    body, headers = WebhookChannel(SETTINGS)._request(n, timestamp=1_614_265_330)
    assert headers[TIMESTAMP_HEADER] == "1614265330"
    expected = standardwebhooks.Webhook(SECRET).sign(
        str(n.uuid), datetime.fromtimestamp(1_614_265_330, UTC), body.decode()
    )
    assert headers[SIGNATURE_HEADER] == expected


def test_during_a_rotation_both_secrets_sign() -> None:
    settings = SETTINGS.configure(WebhookSettings, secret=SigningSecrets(f"{SECRET},{OLD_SECRET}"))
    body, headers = WebhookChannel(settings)._request(deploy_done())
    assert len(headers[SIGNATURE_HEADER].split(" ")) == 2
    assert verify(SECRET, body, headers)  # receivers already on the new secret
    assert verify(OLD_SECRET, body, headers)  # and those still on the old one
    assert not verify(OTHER_SECRET, body, headers)


def test_each_attempt_is_stamped_afresh_with_the_same_id(monkeypatch: pytest.MonkeyPatch) -> None:
    channel, n = WebhookChannel(SETTINGS), deploy_done()
    now = int(time.time())
    stamps = iter([now - 60, now])
    monkeypatch.setattr(webhook, "unix_now", lambda: next(stamps))
    first, retry = channel.request(n), channel.request(n)  # a send, then its retry
    assert first.headers[ID_HEADER] == retry.headers[ID_HEADER] == str(n.uuid)
    assert first.headers["Idempotency-Key"] == retry.headers["Idempotency-Key"]
    assert int(first.headers[TIMESTAMP_HEADER]) == now - 60
    assert int(retry.headers[TIMESTAMP_HEADER]) == now
    assert first.headers[SIGNATURE_HEADER] != retry.headers[SIGNATURE_HEADER]
    for request in (first, retry):
        assert verify(SECRET, request.body, dict(request.headers))


def test_no_signature_without_a_secret() -> None:
    settings = Settings().with_sections(
        WebhookSettings(allowed_hosts=frozenset({"hooks.example.com"}))
    )
    n = deploy_done()
    _, headers = WebhookChannel(settings)._request(n)
    assert SIGNATURE_HEADER not in headers
    assert headers[ID_HEADER] == str(n.uuid)  # still a de-duplication key
    assert TIMESTAMP_HEADER in headers


ENV = {"NOTIFSVC_WEBHOOK_ALLOWED_HOSTS": "hooks.example.com"}


def test_the_setting_reads_a_list_of_secrets_and_round_trips() -> None:
    settings = config.load(ENV | {"NOTIFSVC_WEBHOOK_SECRET": f" {SECRET} , {OLD_SECRET} "})
    secret = settings.section(WebhookSettings).secret
    assert isinstance(secret, SigningSecrets) and len(secret) == 2
    env = config.to_env(settings)
    assert env["NOTIFSVC_WEBHOOK_SECRET"] == f"{SECRET},{OLD_SECRET}"  # order kept
    assert config.load(env) == settings
    assert SECRET not in str(settings.redacted())


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("local-webhook-secret", "the secret: expected whsec_<base64"),  # raw: not a key
        ("whsec_not-base64!", "the secret: the part after whsec_ must be standard base64"),
        ("whsec_c2hvcnQ=", "the secret: the key must be 24 to 64 bytes"),  # 5 bytes
        (f"{SECRET},whsec_", "secret 2 of 2: nothing follows whsec_"),
    ],
)
def test_a_malformed_secret_is_a_config_error_naming_the_variable(value: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(ENV | {"NOTIFSVC_WEBHOOK_SECRET": value})
    assert f"NOTIFSVC_WEBHOOK_SECRET=(hidden): {why}" in str(caught.value)
    assert value.removeprefix("whsec_")[:8] not in str(caught.value)
