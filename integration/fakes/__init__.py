"""Fake providers for tests: real servers on 127.0.0.1 (free ports) with scriptable failures.

Each is an async context manager (or ``start()``/``stop()``) and has ``settings()``: the
:class:`~notifsvc.config.Settings` fields that point its channel at it, for
``Settings(**fake.settings())`` or ``dataclasses.replace(settings, **fake.settings())``.
"""

from integration.fakes.http import HttpFake, Seen
from integration.fakes.script import HANG, Hang, Reply, Script
from integration.fakes.slack import FakeSlack, slack_error
from integration.fakes.smtp import FakeSmtp, Mail
from integration.fakes.twilio import FakeTwilio, twilio_error
from integration.fakes.webhook import WebhookSink

__all__ = [
    "HANG",
    "FakeSlack",
    "FakeSmtp",
    "FakeTwilio",
    "Hang",
    "HttpFake",
    "Mail",
    "Reply",
    "Script",
    "Seen",
    "WebhookSink",
    "slack_error",
    "twilio_error",
]
