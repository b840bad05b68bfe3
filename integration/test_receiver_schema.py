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
import dataclasses
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hsettings

from notifsvc.api.validation import Validator
from notifsvc.config import Settings
from notifsvc.openapi import document
from notifsvc.receiver import ReceiverServer

#: Cases per operation and generation mode; the coverage phase adds its boundary cases. Not
#: more: Hypothesis draws no string longer than 8,192 characters, so once schemathesis's
#: random negation of the body picks ``txt``'s maxLength (65,536) it cannot build a strategy
#: and errors. The run is repeatable (fixed seed, derandomized), and 40 stays clear of it.
EXAMPLES = 40
#: How the receiver under test differs from the ``settings`` fixture's.
NARROW: dict[str, Any] = {
    "channels": frozenset({"log"}),
    "max_body_bytes": 4 * 1024 * 1024,
    "max_batch_items": 5,
}
DOCUMENT = document(Settings(**NARROW), Validator.from_settings(Settings(**NARROW)))

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
    case.call_and_validate(base_url=receiver)
