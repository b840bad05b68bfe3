"""A webhook sink: records every request's headers and body, answers as scripted.

Given ``secrets`` (``whsec_`` values), it verifies each request's Standard Webhooks signature
as a careful receiver does (:meth:`notifsvc.signing.SigningSecrets.verify`) and answers 401,
before any scripted answer, to one that is unsigned, signed with another secret, or stamped
more than ``tolerance`` seconds from its ``clock`` (a replay).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import orjson
from aiohttp import web

from notifsvc.channels.webhook import WebhookSettings
from notifsvc.dev.fakes.captured import Delivery, pretty
from notifsvc.dev.fakes.http import HttpFake, Seen
from notifsvc.dev.fakes.script import Script
from notifsvc.signing import (
    DEFAULT_TOLERANCE_SECONDS,
    ID_HEADER,
    TIMESTAMP_HEADER,
    SigningSecrets,
    VerificationError,
)


class WebhookSink(HttpFake):
    """Accepts POSTs on any path; ``seen`` holds them all, ``delivered`` those answered 200.

    Its route takes every ``POST``: on a server shared with other fakes, add it last."""

    def __init__(
        self,
        script: Script | None = None,
        *,
        keep: int | None = None,
        secrets: Iterable[str] | None = None,
        tolerance: float = DEFAULT_TOLERANCE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(script, keep=keep)
        listed = list(secrets or ())
        #: The secrets requests must be signed with; None: signatures are not checked.
        self.secrets = SigningSecrets(",".join(listed)) if listed else None
        self.tolerance = tolerance
        self.clock = clock

    def config(self) -> WebhookSettings:
        """The webhook channel's settings that let it target this fake (and sign with its
        secrets)."""
        return WebhookSettings(allowed_hosts=frozenset({"127.0.0.1"}), secret=self.secrets)

    def recipient(self) -> str:
        """A recipient this fake delivers to (for the shared fake tests and benchmarks)."""
        return self.hook_url()

    def deliveries(self) -> list[Delivery]:
        """What was posted, for the outbox of ``notifsvc dev``."""
        return [_delivery(seen, self.url, self.secrets is not None) for seen in self.delivered]

    def hook_url(self, path: str = "/hook") -> str:
        return f"{self.url}{path}"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/{tail:.*}", self._hook)

    def refusal(self, seen: Seen) -> str | None:
        """Why ``seen`` fails signature verification, or None (also when none is checked)."""
        if self.secrets is None:
            return None
        try:
            self.secrets.verify(seen.body, seen.headers, tolerance=self.tolerance, now=self.clock())
        except VerificationError as exc:
            return str(exc)
        return None

    async def _hook(self, request: web.Request) -> web.StreamResponse:
        seen = await self.record(request)
        refused = self.refusal(seen)
        if refused is not None:
            return web.json_response({"error": f"signature: {refused}"}, status=401)
        scripted = await self.scripted()
        if scripted is not None:
            return scripted
        self.deliver(seen)
        return web.json_response({"ok": True})


def _delivery(seen: Seen, base_url: str, verified: bool) -> Delivery:
    try:
        text = pretty(seen.json())
    except orjson.JSONDecodeError:
        text = seen.body.decode(errors="replace")
    uid = seen.headers.get("Idempotency-Key")
    details = {k: seen.headers[k] for k in (ID_HEADER, TIMESTAMP_HEADER) if k in seen.headers}
    if verified:
        details["signature"] = "verified"
    # A status callback (notifsvc/events.py: ids evt_...) is shown as one, not as a webhook.
    kind = "callback" if seen.headers.get(ID_HEADER, "").startswith("evt_") else "webhook"
    return Delivery(kind, seen.wall, base_url + seen.path, text, None, uid, details)
