"""What the receiver's application holds, under typed keys."""

from __future__ import annotations

from aiohttp import web

from notifsvc import tracing
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
#: The digest of the request's API key (only when keys are configured).
API_KEY = web.RequestKey("api_key", bytes)
