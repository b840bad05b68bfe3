"""``email``: one message per notification over SMTP (aiosmtplib).

``to`` is one address, checked with email-validator without DNS. The subject is the
notification's, or :data:`DEFAULT_SUBJECT`. Every message carries
``Message-ID: <uuid@notifsvc>`` and a ``Date`` taken from when the notification was accepted,
so a retried send is byte-for-byte the same message and a provider or mailbox can spot it.

Connections come from a small pool: an aiosmtplib client is not safe for concurrent use, so
each send holds one connection for itself, returns it after a success and discards it after
any error (the next send then opens a fresh one). Replies 4xx, connection errors and
timeouts are :class:`TransientError`; 5xx replies are :class:`PermanentError`; anything
unexpected while building or sending a message is a :class:`PermanentError` naming it.

Rate limits stay :class:`TransientError`, not
:class:`~notifsvc.channels.base.Throttled`: an SMTP reply (421, 450, 451, 452) carries no
time to wait, and the same codes also mean greylisting, a busy mailbox or a full disk, which
must spend attempts so that a notification cannot be retried forever.

Failover (:mod:`notifsvc.providers`): ``NOTIFSVC_EMAIL_PROVIDERS`` orders the relays,
``smtp`` (``NOTIFSVC_EMAIL_*``) and ``smtp_backup`` (``NOTIFSVC_SMTP_BACKUP_*``, the same
settings). An error proves that a relay did not take the message (``failover``) when the
connection could not be made (refused, DNS, TLS, greeting) or the relay answered 4xx: an
SMTP server that has not answered 250 to the end of ``DATA`` has not taken the message. A
timeout or a dropped connection during ``DATA`` is not one.

A subject is one header line: :data:`SUBJECT_PATTERN` refuses every control character and
line break (CR, LF, NEL, U+2028, U+2029, VT, FF, the file separators, NUL, ...) already at
the receiver, where it would otherwise be accepted and then fail for good here.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import ClassVar

import aiosmtplib
from email_validator import EmailNotValidError, validate_email

from notifsvc.channels.base import (
    Channel,
    DeliveryError,
    PermanentError,
    ProviderChoice,
    TransientError,
    provider_list,
)
from notifsvc.config import Secret, Section, as_port, one_of, setting
from notifsvc.model import FieldError, Notification

DEFAULT_SUBJECT = "Notification"
#: RFC 5322 line limit; longer subjects are almost certainly a client bug.
MAX_SUBJECT_CHARS = 998
#: A subject without control characters (Unicode Cc) or line and paragraph separators, in
#: the regex dialect Python and JSON Schema share; the OpenAPI document publishes it.
_FORBIDDEN = "\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029"
SUBJECT_PATTERN = f"^[^{_FORBIDDEN}]*$"
_UNSAFE = re.compile(f"[{_FORBIDDEN}]")
#: Most connections open at once (providers commonly allow around ten per client).
POOL_SIZE = 8
#: An idle connection older than this is closed rather than reused (servers drop them).
IDLE_SECONDS = 30.0

#: NOTIFSVC_EMAIL_TLS -> (use_tls, start_tls). ``start_tls=True`` fails rather than falling
#: back to plain text when the server does not offer STARTTLS.
_TLS_MODES = {"none": (False, False), "starttls": (False, True), "tls": (True, False)}


def message_id(notification: Notification) -> str:
    return f"<{notification.uuid}@notifsvc>"


@dataclass(frozen=True)
class SmtpRelay(Section):
    """An SMTP relay (``tls``: none, starttls or tls) and the sender address."""

    host: str | None = setting(None, str, doc="SMTP relay; none: the channel is off")
    port: int = setting(587, as_port, doc="SMTP port")
    username: str | None = setting(None, str, doc="SMTP AUTH user")
    password: Secret | None = setting(None, Secret, secret=True, doc="SMTP AUTH password")
    from_: str | None = setting(None, str, doc="sender, may be `Name <addr>`")
    tls: str = setting(
        "starttls",
        one_of("none", "starttls", "tls", upper=False),
        doc="`none`, `starttls` (required: never falls back to plain text) or `tls`",
    )

    def disabled_reason(self) -> str | None:
        missing = self.missing("host", "from_")
        if missing is not None:
            return missing
        if self.username is not None and self.password is None:
            return f"{self.env_name('password')} is not set but {self.env_name('username')} is"
        try:
            validate_email(self.from_ or "", check_deliverability=False, allow_display_name=True)
        except EmailNotValidError as exc:
            return f"{self.env_name('from_')} is not a valid address: {exc}"
        return None


@dataclass(frozen=True)
class EmailSettings(ProviderChoice, SmtpRelay, prefix="email"):
    """The primary SMTP relay (provider ``smtp``) and the email channel's providers."""

    providers: str = setting(
        "smtp",
        provider_list("smtp", "smtp_backup"),
        doc="email providers in order: `smtp` (`NOTIFSVC_EMAIL_*`), `smtp_backup`",
    )


@dataclass(frozen=True)
class SmtpBackupSettings(SmtpRelay, prefix="smtp_backup"):
    """A second SMTP relay (provider ``smtp_backup``), used after ``smtp`` as
    ``NOTIFSVC_EMAIL_PROVIDERS`` orders them."""


def build_message(settings: SmtpRelay, notification: Notification) -> EmailMessage:
    """The message for ``notification``; the same bytes every time it is built."""
    sent = notification.accepted_at or time.time()
    message = EmailMessage()
    message["From"] = settings.from_ or ""
    message["To"] = notification.to
    message["Subject"] = notification.subject or DEFAULT_SUBJECT
    message["Date"] = email.utils.format_datetime(datetime.fromtimestamp(sent, UTC))
    message["Message-ID"] = message_id(notification)
    message.set_content(notification.txt)
    return message


def _by_code(code: int, text: str) -> DeliveryError:
    message = f"SMTP server answered {code}: {text[:200]}"
    if code >= 500:
        return PermanentError(message)
    return TransientError(message)


def classify(exc: Exception, *, connecting: bool = False) -> DeliveryError:
    """The delivery error an aiosmtplib or socket exception means; ``connecting``: it came
    while the connection was being made (the message cannot have been taken)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        refused = exc.recipients[0]
        error = _by_code(refused.code, refused.message)
    elif isinstance(exc, aiosmtplib.SMTPResponseException):
        error = _by_code(exc.code, exc.message)
    elif isinstance(exc, OSError):  # timeouts, refused and dropped connections, TLS failures
        error = TransientError(f"SMTP connection failed: {exc!r}")
    else:  # No STARTTLS or AUTH where configured, SMTPUTF8 missing: retrying cannot help.
        error = PermanentError(f"SMTP session failed: {exc}")
    replied = isinstance(exc, aiosmtplib.SMTPResponseException)
    error.failover = error.retriable and (connecting or replied)
    return error


class _Pool:
    """At most ``size`` SMTP connections, each used by one send at a time."""

    def __init__(self, connect: Callable[[], aiosmtplib.SMTP], size: int) -> None:
        self._connect = connect
        self._slots = asyncio.Semaphore(size)
        self._idle: list[tuple[float, aiosmtplib.SMTP]] = []
        self._closed = False

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[aiosmtplib.SMTP]:
        async with self._slots:
            client = await self._take()
            reusable = False
            try:
                yield client
                reusable = True
            finally:
                if reusable and not self._closed and client.is_connected:
                    self._idle.append((time.monotonic(), client))
                else:
                    client.close()

    async def _take(self) -> aiosmtplib.SMTP:
        now = time.monotonic()
        while self._idle:
            since, client = self._idle.pop()
            if client.is_connected and now - since < IDLE_SECONDS:
                return client
            client.close()
        client = self._connect()
        try:
            await client.connect()
        except BaseException:
            client.close()
            raise
        return client

    def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for _, client in idle:
            client.close()


class EmailChannel(Channel[SmtpRelay]):
    name = "email"
    provider = "smtp"
    Config: ClassVar[type[SmtpRelay]] = EmailSettings
    fake = "notifsvc.dev.fakes.smtp:FakeSmtp"
    subject_pattern: ClassVar[str] = SUBJECT_PATTERN
    max_subject_chars: ClassVar[int] = MAX_SUBJECT_CHARS

    _pool: _Pool | None = None
    _local_hostname: str | None = None

    def validate_recipient(self, to: str) -> list[FieldError]:
        try:
            validate_email(to, check_deliverability=False)
        except EmailNotValidError as exc:
            return [FieldError("to", f"is not a valid email address: {exc}")]
        return []

    def validate(self, notification: Notification) -> list[FieldError]:
        errors = super().validate(notification)
        subject = notification.subject
        if subject is not None and _UNSAFE.search(subject):
            message = "must not contain line breaks or control characters"
            errors.append(FieldError("subject", message))
        elif subject is not None and len(subject) > MAX_SUBJECT_CHARS:
            errors.append(FieldError("subject", f"is longer than {MAX_SUBJECT_CHARS} characters"))
        return errors

    async def start(self) -> None:
        if self._pool is None:
            # aiosmtplib would otherwise look the name up on every new connection.
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
            size = min(POOL_SIZE, self.settings.send_concurrency)
            self._pool = _Pool(self._client, size)

    async def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def _client(self) -> aiosmtplib.SMTP:
        c = self.config
        use_tls, start_tls = _TLS_MODES[c.tls]
        return aiosmtplib.SMTP(
            hostname=c.host,
            port=c.port,
            username=c.username,
            password=c.password.reveal() if c.password is not None else None,
            local_hostname=self._local_hostname,
            use_tls=use_tls,
            start_tls=start_tls,
            timeout=self.settings.send_timeout_ms / 1000,
        )

    async def send(self, notification: Notification) -> None:
        pool = self._pool
        if pool is None:
            raise TransientError("email channel is not started")
        try:
            message = build_message(self.config, notification)
        except Exception as exc:  # whatever it is, this message can never be sent
            raise PermanentError(f"cannot build the message: {_describe(exc)}") from exc
        connecting = True
        try:
            async with pool.connection() as client:
                connecting = False
                await client.send_message(message)
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise classify(exc, connecting=connecting) from exc
        except Exception as exc:  # a surprise must not escape a send
            raise PermanentError(f"SMTP send failed unexpectedly: {_describe(exc)}") from exc


class SmtpBackupChannel(EmailChannel):
    """The second relay: the same channel, its own settings (``NOTIFSVC_SMTP_BACKUP_*``)."""

    name = "email"
    provider = "smtp_backup"
    Config = SmtpBackupSettings
    fake = "notifsvc.dev.fakes.smtp:FakeSmtpBackup"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]
