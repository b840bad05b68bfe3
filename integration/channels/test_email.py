"""The email channel against a real (fake) SMTP server."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

from integration.channels.support import SHORT_TIMEOUT_MS, note, started
from integration.helpers import eventually
from notifsvc.channels import PermanentError, TransientError
from notifsvc.channels.email import DEFAULT_SUBJECT, POOL_SIZE, EmailChannel, EmailSettings
from notifsvc.config import Secret, Settings
from notifsvc.dev.fakes.script import HANG, Reply, Script
from notifsvc.dev.fakes.smtp import FROM_ADDRESS, FakeSmtp
from notifsvc.process import free_port

TO = "alice@example.com"


@pytest.fixture
async def smtp() -> AsyncIterator[FakeSmtp]:
    async with FakeSmtp(username="notifier", password="hunter2") as fake:
        yield fake


def channel_for(fake: FakeSmtp, *, send_timeout_ms: int = 2000, **overrides: Any) -> EmailChannel:
    config = dataclasses.replace(fake.config(), **overrides)
    return EmailChannel(Settings(send_timeout_ms=send_timeout_ms).with_sections(config))


async def test_delivers_with_auth_subject_and_message_id(smtp: FakeSmtp) -> None:
    n = note("email", TO, "90% full", subject="Disk")
    async with started(channel_for(smtp)) as channel:
        await channel.send(n)
    [mail] = smtp.messages
    assert mail.login == "notifier"
    assert mail.mail_from == FROM_ADDRESS
    assert mail.rcpt_tos == (TO,)
    assert mail.message["Message-ID"] == f"<{n.uuid}@notifsvc>"
    assert mail.message["Subject"] == "Disk"
    assert mail.message["To"] == TO
    assert mail.message.get_content().strip() == "90% full"


async def test_default_subject_and_unicode_body(smtp: FakeSmtp) -> None:
    async with started(channel_for(smtp)) as channel:
        await channel.send(note("email", TO, "Plattenplatz fast voll: 95 % … ⚠"))
    [mail] = smtp.messages
    assert mail.message["Subject"] == DEFAULT_SUBJECT
    assert mail.message.get_content().strip() == "Plattenplatz fast voll: 95 % … ⚠"


async def test_wrong_password_is_permanent(smtp: FakeSmtp) -> None:
    channel = channel_for(smtp, password=Secret("wrong"))
    async with started(channel):
        with pytest.raises(PermanentError, match="535"):
            await channel.send(note("email", TO))
    assert smtp.messages == []


async def test_mailbox_unavailable_is_permanent() -> None:
    refused = {TO: "550 5.1.1 mailbox unavailable"}
    async with FakeSmtp(rejected_recipients=refused) as fake:
        async with started(channel_for(fake)) as channel:
            with pytest.raises(PermanentError, match=r"550: 5\.1\.1 mailbox unavailable"):
                await channel.send(note("email", TO))
            await channel.send(note("email", "bob@example.com"))
        assert [m.rcpt_tos for m in fake.messages] == [("bob@example.com",)]


async def test_4xx_is_transient_and_the_next_send_gets_through() -> None:
    async with FakeSmtp(script=Script(Reply(451, "4.3.0 try again later"))) as fake:
        async with started(channel_for(fake)) as channel:
            with pytest.raises(TransientError, match="451"):
                await channel.send(note("email", TO))
            await channel.send(note("email", TO))
        assert len(fake.messages) == 1


async def test_hanging_server_times_out_as_transient() -> None:
    async with FakeSmtp(script=Script(HANG)) as fake:
        channel = channel_for(fake, send_timeout_ms=SHORT_TIMEOUT_MS)
        async with started(channel):
            with pytest.raises(TransientError):
                await asyncio.wait_for(channel.send(note("email", TO)), 5)
        assert fake.messages == []


async def test_unvalidated_header_injection_is_refused(smtp: FakeSmtp) -> None:
    async with started(channel_for(smtp)) as channel:
        with pytest.raises(PermanentError, match="cannot build"):
            await channel.send(note("email", f"{TO}\r\nBcc: eve@example.com"))
    assert smtp.messages == []


async def test_no_server_is_transient() -> None:
    config = EmailSettings(host="127.0.0.1", port=free_port(), from_=FROM_ADDRESS)
    settings = Settings().with_sections(config)
    async with started(EmailChannel(settings)) as channel:
        with pytest.raises(TransientError):
            await channel.send(note("email", TO))


async def test_starttls_required_but_not_offered_never_sends_in_plain_text() -> None:
    async with FakeSmtp() as fake:
        async with started(channel_for(fake, tls="starttls")) as channel:
            with pytest.raises(PermanentError, match="STARTTLS"):
                await channel.send(note("email", TO))
        assert fake.messages == []


async def test_concurrent_sends_share_a_small_pool(smtp: FakeSmtp) -> None:
    notes = [note("email", f"user{i}@example.com", f"message {i}") for i in range(40)]
    async with started(channel_for(smtp)) as channel:
        await asyncio.gather(*(channel.send(n) for n in notes))
        await channel.send(note("email", TO))  # reuses an idle connection
    assert len(smtp.messages) == 41
    received = {m.message["Message-ID"]: m.rcpt_tos for m in smtp.messages}
    assert all(received[f"<{n.uuid}@notifsvc>"] == (n.to,) for n in notes)
    assert 1 <= smtp.connections <= POOL_SIZE


async def test_connections_dropped_by_the_server_are_replaced(smtp: FakeSmtp) -> None:
    async with started(channel_for(smtp)) as channel:
        await channel.send(note("email", TO))
        smtp.drop_connections()

        async def delivered_again() -> bool:
            try:
                await channel.send(note("email", TO))
            except TransientError:  # the pooled connection may fail once before it is noticed
                return False
            return True

        await eventually(delivered_again, within=5)
    assert len(smtp.messages) == 2
    assert smtp.connections == 2
