"""The email channel's validation, message building and SMTP error classification."""

from __future__ import annotations

import uuid
from email.policy import SMTPUTF8
from email.utils import parsedate_to_datetime

import aiosmtplib
import pytest
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from notifsvc.channels import PermanentError, TransientError
from notifsvc.channels import email as email_channel
from notifsvc.channels.email import (
    DEFAULT_SUBJECT,
    MAX_SUBJECT_CHARS,
    EmailChannel,
    EmailSettings,
    build_message,
    classify,
)
from notifsvc.config import Secret, Settings
from notifsvc.model import MAX_ACCEPTED_AT, Notification
from unit.channels.contract import Case

CONFIG = EmailSettings(host="smtp.example.com", from_="Ops <ops@example.com>")
SETTINGS = Settings().with_sections(CONFIG)
CASE = Case(
    EmailSettings(host="smtp.example.com", from_="notifsvc@example.com"),
    ("host", "from_"),
    "alice@example.com",
    ("alice", "alice@", "@example.com", "a b@example.com", "Alice <alice@example.com>", ""),
)


def note(to: str = "alice@example.com", **kw: object) -> Notification:
    fields: dict[str, object] = {"txt": "disk almost full", "accepted_at": 1_700_000_000.5}
    fields.update(kw)
    return Notification(uuid.uuid4(), "email", to, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "to",
    ["alice@example.com", "a.b+tag@mail.example.org", "ü@example.de", "x@sub.example.co.uk"],
)
def test_accepts_addresses(to: str) -> None:
    assert EmailChannel(SETTINGS).validate_recipient(to) == []


@pytest.mark.parametrize(
    "to",
    [
        "alice",
        "alice@localhost",  # no DNS lookups, but a special-use name is still refused
        "alice@example.com\r\nBcc: eve@example.com",
        " alice@example.com",
        "alice@@example.com",
        "alice@example.com, bob@example.com",
    ],
)
def test_rejects_addresses(to: str) -> None:
    errors = EmailChannel(SETTINGS).validate_recipient(to)
    assert [e.field for e in errors] == ["to"]
    assert "valid email address" in errors[0].message


#: Every line break str.splitlines() knows, and control characters that are none.
UNSAFE = ["\r", "\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
UNSAFE += ["\t", "\x00", "\x07", "\x1b", "\x1f", "\x7f", "\x9f"]


@pytest.mark.parametrize("subject", ["hi\r\nBcc: eve@example.com", "a\nb", "x" * 999])
def test_rejects_unsafe_or_long_subjects(subject: str) -> None:
    errors = EmailChannel(SETTINGS).validate(note(subject=subject))
    assert [e.field for e in errors] == ["subject"]


@pytest.mark.parametrize("char", UNSAFE, ids=[f"U+{ord(c):04X}" for c in UNSAFE])
def test_rejects_subjects_with_line_breaks_or_control_characters(char: str) -> None:
    errors = EmailChannel(SETTINGS).validate(note(subject=f"Disk{char}Bcc: eve@example.com"))
    assert [e.field for e in errors] == ["subject"]
    assert "control characters" in errors[0].message


@pytest.mark.parametrize("subject", ["Ünïcødé ⚠", "bidi \u202e", "zero\u200bwidth"])
def test_accepts_other_subjects(subject: str) -> None:
    errors = EmailChannel(SETTINGS).validate(note(subject=subject))
    assert errors == []
    assert build_message(CONFIG, note(subject=subject))["Subject"] == subject


def test_accepts_a_subject_at_the_limit() -> None:
    assert EmailChannel(SETTINGS).validate(note(subject="x" * MAX_SUBJECT_CHARS)) == []


def test_message_has_id_from_uuid_subject_and_stable_date() -> None:
    n = note(subject="Disk", txt="90% full")
    message = build_message(CONFIG, n)
    assert message["Message-ID"] == f"<{n.uuid}@notifsvc>"
    assert message["Subject"] == "Disk"
    assert message["From"] == "Ops <ops@example.com>"
    assert message["To"] == "alice@example.com"
    assert parsedate_to_datetime(message["Date"]).timestamp() == 1_700_000_000
    assert message.get_content().strip() == "90% full"
    assert build_message(CONFIG, n).as_bytes() == message.as_bytes()


senders = (
    st.sampled_from(
        [
            "ops@example.com",
            "Ops <ops@example.com>",
            '"Ops, Team" <ops@example.com>',
            "ü@example.de",
        ]
    )
    | st.emails()
)
texts = st.text(min_size=1, max_size=300)
addresses = st.emails() | st.text(max_size=40) | st.builds(lambda a, b: f"{a}@{b}", texts, texts)


@hsettings(max_examples=300, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    sender=senders,
    to=addresses,
    txt=texts,
    subject=st.none() | st.text(max_size=MAX_SUBJECT_CHARS),
    accepted_at=st.floats(min_value=0, max_value=MAX_ACCEPTED_AT),
)
def test_every_notification_validate_accepts_builds_a_message(
    sender: str, to: str, txt: str, subject: str | None, accepted_at: float
) -> None:
    config = EmailSettings(host="smtp.example.com", from_=sender)
    settings = Settings().with_sections(config)
    assume(EmailChannel.disabled_reason(settings) is None)
    n = note(to, txt=txt, subject=subject, accepted_at=accepted_at)
    assume(EmailChannel(settings).validate(n) == [])
    message = build_message(config, n)
    assert message.as_bytes(policy=SMTPUTF8)  # what aiosmtplib sends, at the latest


async def test_a_message_that_cannot_be_built_is_a_permanent_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode(settings: EmailSettings, notification: Notification) -> None:
        raise LookupError("no such codec")

    monkeypatch.setattr(email_channel, "build_message", explode)
    channel = EmailChannel(SETTINGS)
    await channel.start()
    try:
        with pytest.raises(PermanentError, match="cannot build the message: LookupError"):
            await channel.send(note())
    finally:
        await channel.stop()


def test_message_without_subject_gets_the_default() -> None:
    assert build_message(CONFIG, note())["Subject"] == DEFAULT_SUBJECT


@pytest.mark.parametrize(
    ("config", "variable"),
    [
        (EmailSettings(from_="a@example.com"), "NOTIFSVC_EMAIL_HOST"),
        (EmailSettings(host="smtp.example.com"), "NOTIFSVC_EMAIL_FROM"),
        (EmailSettings(host="h.example.com", from_="not-an-address"), "NOTIFSVC_EMAIL_FROM"),
        (
            EmailSettings(host="h.example.com", from_="a@example.com", username="u"),
            "NOTIFSVC_EMAIL_PASSWORD",
        ),
    ],
)
def test_disabled_reasons(config: EmailSettings, variable: str) -> None:
    reason = EmailChannel.disabled_reason(Settings().with_sections(config))
    assert reason is not None
    assert variable in reason


def test_from_address_may_have_a_display_name() -> None:
    assert EmailChannel.disabled_reason(SETTINGS) is None


def test_enabled_with_credentials() -> None:
    config = EmailSettings(
        host="h.example.com", from_="a@example.com", username="u", password=Secret("p")
    )
    assert EmailChannel.disabled_reason(Settings().with_sections(config)) is None


@pytest.mark.parametrize(
    "exc",
    [
        aiosmtplib.SMTPDataError(451, "4.3.0 try again later"),
        aiosmtplib.SMTPSenderRefused(421, "4.7.0 too many connections", "a@example.com"),
        aiosmtplib.SMTPRecipientsRefused(
            [aiosmtplib.SMTPRecipientRefused(450, "4.2.1 mailbox busy", "b@example.com")]
        ),
        aiosmtplib.SMTPServerDisconnected("Connection lost"),
        aiosmtplib.SMTPConnectError("Error connecting to smtp.example.com on port 587"),
        aiosmtplib.SMTPConnectTimeoutError("Timed out connecting"),
        aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response"),
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError(),
    ],
)
def test_transient_smtp_failures(exc: Exception) -> None:
    assert isinstance(classify(exc), TransientError)


@pytest.mark.parametrize(
    "exc",
    [
        aiosmtplib.SMTPDataError(554, "5.7.1 message rejected as spam"),
        aiosmtplib.SMTPRecipientsRefused(
            [aiosmtplib.SMTPRecipientRefused(550, "5.1.1 mailbox unavailable", "b@example.com")]
        ),
        aiosmtplib.SMTPAuthenticationError(535, "5.7.8 authentication failed"),
        aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server"),
        aiosmtplib.SMTPException("SMTP STARTTLS extension not supported by server."),
    ],
)
def test_permanent_smtp_failures(exc: Exception) -> None:
    assert isinstance(classify(exc), PermanentError)


def test_classified_error_carries_the_reply() -> None:
    error = classify(aiosmtplib.SMTPDataError(550, "5.1.1 mailbox unavailable"))
    assert "550" in str(error)
    assert "mailbox unavailable" in str(error)
