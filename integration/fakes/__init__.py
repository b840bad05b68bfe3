"""The provider fakes of the tests, which live in :mod:`notifsvc.dev.fakes` (one
implementation for the tests, ``notifsvc dev`` and the compose stack); re-exported here so
that ``from integration.fakes import ...`` keeps working.

Each is an async context manager (or ``start()``/``stop()``) and has ``config()``: its
channel's settings section pointed at it, for ``settings.with_sections(fake.config())``.
"""

from notifsvc.dev.fakes.http import HttpFake, Seen
from notifsvc.dev.fakes.script import HANG, Hang, Reply, Script
from notifsvc.dev.fakes.slack import FakeSlack, slack_error
from notifsvc.dev.fakes.smtp import FakeSmtp, Mail
from notifsvc.dev.fakes.twilio import FakeTwilio, twilio_error
from notifsvc.dev.fakes.webhook import WebhookSink

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
