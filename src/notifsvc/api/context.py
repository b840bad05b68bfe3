"""What the receiver's application holds, under typed keys."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from notifsvc import topics, tracing
from notifsvc.api.recent import RecentlyAccepted
from notifsvc.api.validation import Validator
from notifsvc.auth import Gate
from notifsvc.config import Settings
from notifsvc.db.store import Store
from notifsvc.kafka import Producer

SETTINGS = web.AppKey("settings", Settings)
PRODUCER = web.AppKey("producer", Producer)
STORE = web.AppKey("store", Store)
VALIDATOR = web.AppKey("validator", Validator)
GATE = web.AppKey("gate", Gate)
DOCS = web.AppKey("docs", dict[str, bytes])
TRACING = web.AppKey("tracing", tracing.Tracing)
#: UUIDs this process accepted lately (GET tells "in flight" from "never seen").
RECENT = web.AppKey("recent", RecentlyAccepted)


@dataclass(frozen=True, slots=True)
class Ingress:
    """What ``POST /notification`` needs, looked up once per application instead of once
    per request (an ``app[KEY]`` is a Python-level look-up)."""

    producer: Producer
    validator: Validator
    recent: RecentlyAccepted
    tracing: tracing.Tracing
    topic: str
    #: Seconds a produce may wait for its acknowledgement.
    within: float
    max_body_bytes: int

    @classmethod
    def of(cls, app: web.Application) -> Ingress:
        """From what ``app`` holds (its producer, validator, recent list, tracer, settings)."""
        settings = app[SETTINGS]
        return cls(
            producer=app[PRODUCER],
            validator=app[VALIDATOR],
            recent=app[RECENT],
            tracing=app[TRACING],
            topic=topics.outstanding(settings),
            within=settings.produce_timeout_ms / 1000,
            max_body_bytes=settings.max_body_bytes,
        )


INGRESS = web.AppKey("ingress", Ingress)
#: The digest of the request's API key (only when keys are configured).
API_KEY = web.RequestKey("api_key", bytes)
