"""A fake Vonage SMS API (``POST /sms/json``): checks the key, secret and form, records
messages, and answers as Vonage does: HTTP 200 with a ``messages`` array whose ``status``
is ``"0"`` for an accepted message, or an error code and ``error-text``.

A scripted :class:`Reply` whose body is a string of digits answers HTTP 200 with that
Vonage status code (``Reply(200, "1")``: throttled); any other scripted reply is sent as is.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from notifsvc.channels.vonage import VonageSettings
from notifsvc.config import Secret
from notifsvc.dev.fakes.captured import Delivery
from notifsvc.dev.fakes.http import HttpFake, remember, respond
from notifsvc.dev.fakes.script import Hang, Reply, Script

API_KEY = "vonage-test-key"
API_SECRET = "vonage-test-secret"  # noqa: S105 - the fake's own, not a secret
FROM_NUMBER = "+15005550007"
ERROR_TEXTS = {
    "1": "Throughput Rate Exceeded - please wait [ 1000 ] and retry",
    "2": "Missing Parameters",
    "3": "Invalid Parameters",
    "4": "Bad Credentials",
    "5": "Internal Error",
    "9": "Partner Quota Violation",
}


def vonage_error(code: str, text: str | None = None) -> dict[str, object]:
    """An answer body shaped like Vonage's for a refused message."""
    part = {"status": code, "error-text": text or ERROR_TEXTS.get(code, "Error")}
    return {"message-count": "1", "messages": [part]}


class FakeVonage(HttpFake):
    """``api_key=None``/``api_secret=None`` take any key and secret (a stand-in)."""

    def __init__(
        self,
        *,
        api_key: str | None = API_KEY,
        api_secret: str | None = API_SECRET,
        script: Script | None = None,
        keep: int | None = None,
    ) -> None:
        super().__init__(script, keep=keep)
        self.api_key = api_key
        self.api_secret = api_secret
        #: The form of every message accepted, and the answer's part for it.
        self.messages: list[dict[str, str]] = []
        self.answered: list[dict[str, str]] = []

    def config(self) -> VonageSettings:
        """The vonage provider's settings that point it at this fake."""
        return VonageSettings(
            api_url=self.url,
            api_key=self.api_key or API_KEY,
            api_secret=Secret(self.api_secret or API_SECRET),
            from_=FROM_NUMBER,
        )

    def recipient(self) -> str:
        return "+14155552671"

    def deliveries(self) -> list[Delivery]:
        """What was accepted, for the outbox of ``notifsvc dev``."""
        out = []
        for seen in self.delivered:
            form = seen.form()
            to, body = "+" + form.get("to", ""), form.get("text", "")
            details = {"from": form.get("from", ""), "provider": "vonage"}
            out.append(Delivery("sms", seen.wall, to, body, None, None, details))
        return out

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/sms/json", self._send)

    def _invalid(self, request: web.Request, form: dict[str, str]) -> dict[str, object] | None:
        if request.content_type != "application/x-www-form-urlencoded":
            return vonage_error("2", "Missing api_key")
        for name in ("api_key", "api_secret", "from", "to", "text"):
            if not form.get(name):
                return vonage_error("2", f"Missing {name}")
        key_ok = form["api_key"] == (self.api_key or form["api_key"])
        if not key_ok or form["api_secret"] != (self.api_secret or form["api_secret"]):
            return vonage_error("4")
        if not form["to"].isdigit():
            return vonage_error("3", "Invalid to address")
        return None

    async def _send(self, request: web.Request) -> web.StreamResponse:
        seen = await self.record(request)
        try:
            form = seen.form()
        except ValueError:
            form = {}
        invalid = self._invalid(request, form)
        if invalid is not None:
            return web.json_response(invalid)
        step = self.script.next()
        if isinstance(step, Hang):
            await self.script.hang()
            return web.Response(status=503, text="fake stopped while hanging")
        if isinstance(step, Reply) and isinstance(step.body, str) and step.body.isdigit():
            return web.json_response(vonage_error(step.body))
        if step is not None and not (200 <= step.status < 300 and step.body is None):
            return respond(step)
        remember(self.messages, form, self.keep)
        self.deliver(seen)
        part = {
            "to": form["to"],
            "message-id": uuid.uuid4().hex[:16].upper(),
            "status": "0",
            "remaining-balance": "15.53590000",
            "message-price": "0.03330000",
            "network": "23410",
        }
        if form.get("client-ref"):
            part["client-ref"] = form["client-ref"]
        remember(self.answered, part, self.keep)
        return web.json_response({"message-count": "1", "messages": [part]})
