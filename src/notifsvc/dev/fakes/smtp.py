"""A fake SMTP server (aiosmtpd) on the running event loop that records what it accepts.

Optional AUTH with a username and password (over plain text: it is a test server).
``script`` answers ``DATA`` (``Script(Reply(451, "4.3.0 try later"))``, ``Script(HANG)``);
``rejected_recipients`` answers ``RCPT TO`` for given addresses (``"550 5.1.1 no such user"``).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
import warnings
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import ClassVar

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from notifsvc.channels.email import EmailSettings, SmtpBackupSettings, SmtpRelay
from notifsvc.config import Secret
from notifsvc.dev.fakes.base import Service
from notifsvc.dev.fakes.captured import Delivery
from notifsvc.dev.fakes.http import remember
from notifsvc.dev.fakes.script import Hang, Script

FROM_ADDRESS = "notifsvc@example.com"


@dataclass(frozen=True)
class Mail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    #: The user that authenticated on the connection, if any.
    login: str | None
    message: EmailMessage
    at: float = field(default_factory=time.time)  # when it was accepted (wall clock)


class FakeSmtp(Service):
    host = "127.0.0.1"
    #: The settings section :meth:`config` fills: the relay this fake stands in for.
    relay: ClassVar[type[SmtpRelay]] = EmailSettings

    def __init__(
        self,
        *,
        username: str | None = None,
        password: str | None = None,
        script: Script | None = None,
        rejected_recipients: dict[str, str] | None = None,
        keep: int | None = None,
    ) -> None:
        """``keep``: remember only the last ``keep`` messages (a server that runs for days)."""
        self.username = username
        self.keep = keep
        self.password = password
        self.script = script if script is not None else Script()
        self.rejected_recipients = rejected_recipients or {}
        self.port = 0
        self.messages: list[Mail] = []
        #: Connections opened to this server so far.
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._protocols: list[SMTP] = []

    def config(self) -> SmtpRelay:
        """The relay's settings that point it at this fake (no TLS)."""
        return self.relay(
            host=self.host,
            port=self.port,
            from_=FROM_ADDRESS,
            tls="none",
            username=self.username,
            password=Secret(self.password) if self.password is not None else None,
        )

    def recipient(self) -> str:
        """A recipient this fake delivers to (for the shared fake tests and benchmarks)."""
        return "alice@example.com"

    def deliveries(self) -> list[Delivery]:
        """What was accepted, for the outbox of ``notifsvc dev``."""
        return [_delivery(m.at, m.rcpt_tos, m.message) for m in self.messages]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.script.release()
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        self.drop_connections()
        await server.wait_closed()

    def drop_connections(self) -> None:
        """Close every open connection from the server side (as an idle timeout would)."""
        for protocol in self._protocols:
            if protocol.transport is not None:
                protocol.transport.close()

    def _protocol(self) -> SMTP:
        self.connections += 1
        if self.keep is not None:  # long-running: forget closed connections
            self._protocols = [p for p in self._protocols if p.transport is not None]
        with warnings.catch_warnings():  # "AUTH without TLS": intended, this is a test server
            warnings.simplefilter("ignore")
            protocol = SMTP(
                self,
                hostname="fake-smtp.test",
                enable_SMTPUTF8=True,
                auth_required=self.username is not None,
                auth_require_tls=False,
                authenticator=self._authenticate if self.username is not None else None,
            )
        self._protocols.append(protocol)
        return protocol

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object
    ) -> AuthResult:
        wanted = ((self.username or "").encode(), (self.password or "").encode())
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == wanted
        return AuthResult(success=ok, handled=False, auth_data=self.username if ok else None)

    # aiosmtpd handler hooks

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        refusal = self.rejected_recipients.get(address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        step = self.script.next()
        if isinstance(step, Hang):
            await self.script.hang()
            return "421 4.3.0 fake server stopping"
        if step is not None and not 200 <= step.status < 300:
            return f"{step.status} {step.body or 'scripted failure'}"
        content = envelope.original_content or envelope.content or b""
        assert isinstance(content, bytes)
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        login = session.auth_data if isinstance(session.auth_data, str) else None
        mail = Mail(envelope.mail_from or "", tuple(envelope.rcpt_tos), login, message)
        remember(self.messages, mail, self.keep)
        return "250 2.0.0 OK: queued"


class FakeSmtpBackup(FakeSmtp):
    """The same fake, pointing the second relay (``smtp_backup``) at itself."""

    relay = SmtpBackupSettings


def _delivery(at: float, rcpt_tos: tuple[str, ...], message: EmailMessage) -> Delivery:
    body = message.get_body(preferencelist=("plain", "html"))
    text = body.get_content() if isinstance(body, EmailMessage) else message.as_string()
    message_id = str(message.get("Message-ID", ""))
    uid = message_id.strip("<>").partition("@")[0] or None
    headers = {k: str(message[k]) for k in ("From", "To", "Date", "Message-ID") if k in message}
    subject = str(message["Subject"]) if "Subject" in message else None
    return Delivery("email", at, ", ".join(rcpt_tos), str(text), subject, uid, headers)
