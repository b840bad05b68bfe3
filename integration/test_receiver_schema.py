"""The receiver against its own OpenAPI document: schemathesis with every check finds nothing.

The document is generated from the rules validation enforces (:mod:`notifsvc.openapi`), so a
schema-valid request must be accepted and a schema-violating one refused. The receiver runs
with the ``log`` channel only: JSON Schema can say its rules exactly, whereas an e-mail
address's syntax or a phone number's validity are only described (and answered 422). Its
body limit is raised so that a schema-valid body is never refused for its size in bytes,
which JSON Schema cannot say either.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hsettings

from notifsvc.api import console, operations, replays
from notifsvc.api.validation import Validator
from notifsvc.channels.log import LogChannel
from notifsvc.config import Settings
from notifsvc.openapi import document
from notifsvc.receiver import ReceiverServer

#: Cases per operation and generation mode; the coverage phase adds its boundary cases.
EXAMPLES = 40
#: The log channel's ``txt`` limit while this runs: Hypothesis draws no string longer than
#: 8,192 characters, so a negation of the real limit (65,536 + 1) cannot be generated and
#: schemathesis errors whenever its random negation of the body picks ``txt``'s maxLength.
SHORT_TXT = 4_096
#: How the receiver under test differs from the ``settings`` fixture's.
NARROW: dict[str, Any] = {
    "channels": frozenset({"log"}),
    "max_body_bytes": 4 * 1024 * 1024,
    "max_batch_items": 5,
}


@contextlib.contextmanager
def short_txt() -> Iterator[None]:
    real = LogChannel.max_body_chars
    LogChannel.max_body_chars = SHORT_TXT
    try:
        yield
    finally:
        LogChannel.max_body_chars = real


with short_txt():
    DOCUMENT = document(
        Settings(**NARROW),
        Validator.from_settings(Settings(**NARROW)),
        extra=(operations.openapi, replays.openapi, console.openapi),  # as the receiver's
    )

schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.config.generation.update(max_examples=EXAMPLES, deterministic=True)
schema.config.seed = 20261203


@pytest.fixture
def receiver(settings: Settings) -> Iterator[str]:
    """The base URL of a live receiver serving :data:`DOCUMENT`, on an event loop of its own
    (schemathesis calls it from a synchronous test)."""
    narrowed = dataclasses.replace(settings, **NARROW)
    base = f"http://127.0.0.1:{narrowed.http_port}"
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = ReceiverServer(narrowed)
    with short_txt():  # the validator is built at start-up
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(60)
    try:
        with urllib.request.urlopen(f"{base}/openapi.json", timeout=10) as resp:
            assert orjson.loads(resp.read()) == DOCUMENT, "the receiver serves another document"
        yield base
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@schema.parametrize()
@hsettings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_the_receiver_does_what_its_document_says(
    case: schemathesis.Case[Any], receiver: str
) -> None:
    response = case.call(base_url=receiver)
    excused = (
        [schemathesis.checks.positive_data_acceptance] if beyond_the_schema(case, response) else []
    )
    case.validate_response(response, excluded_checks=excused)


#: Refusals of schema-valid requests for rules JSON Schema cannot state, by the fields the
#: 422 names alone: which strings are cursors the API issued (GET /notifications), a
#: replay's ``until`` that is not later than its ``since`` (POST /replays), and a schedule
#: relative to the clock (a ``send_at`` past or beyond the horizon, an ``expires_at`` before
#: it: POST /notification and /notifications, where a batch names the item's field).
_SCHEDULE = frozenset({"send_at", "expires_at", "ttl_seconds"})
BEYOND_THE_SCHEMA = {
    ("GET", "/notifications"): frozenset({"cursor"}),
    ("POST", "/replays"): frozenset({"until"}),
    ("POST", "/notification"): _SCHEDULE,
    ("POST", "/notifications"): _SCHEDULE,
}


#: What a refusal of a schedule field must say to be excused: only the clock-relative
#: rules, the bounds of a time and the choice between ``expires_at`` and ``ttl_seconds``
#: (a refusal of every valid ``send_at`` would say something else, and fail the test).
_SCHEDULE_WHY = re.compile(r"in the past|ahead|later than|2100|together with")


def beyond_the_schema(case: schemathesis.Case[Any], response: Any) -> bool:
    fields = BEYOND_THE_SCHEMA.get((case.method.upper(), case.path))
    if response.status_code != 422 or fields is None:
        return False
    errors = response.json().get("errors", [])
    return bool(errors) and all(_excused(e, fields) for e in errors)


def _excused(error: dict[str, Any], fields: frozenset[str]) -> bool:
    field = re.split(r"[.\]]", str(error.get("field", "")))[-1]
    if field not in fields:
        return False
    return field not in _SCHEDULE or bool(_SCHEDULE_WHY.search(str(error.get("message", ""))))
