"""A fake Twilio Messages API: checks basic auth and form encoding, records messages."""

from __future__ import annotations

import base64
import uuid

from aiohttp import web

from notifsvc.channels.sms import SmsSettings
from notifsvc.config import Secret
from notifsvc.dev.fakes.captured import Delivery
from notifsvc.dev.fakes.http import HttpFake, remember
from notifsvc.dev.fakes.script import Reply, Script

ACCOUNT_SID = "AC00000000000000000000000000000001"
AUTH_TOKEN = "twilio-test-token"  # noqa: S105 - the fake's own, not a secret
FROM_NUMBER = "+15005550006"


def decode_basic_auth(header: str) -> tuple[str, str] | None:
    """(login, password) of an ``Authorization: Basic ...`` header, or None."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        login, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (login, password) if sep else None


def twilio_error(status: int, code: int, message: str) -> Reply:
    """A reply shaped like Twilio's error body."""
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return Reply(status, body)


class FakeTwilio(HttpFake):
    """``account_sid=None``/``auth_token=None`` take any account and token (a stand-in that
    must not know the real ones); the login must still name the account of the URL."""

    def __init__(
        self,
        *,
        account_sid: str | None = ACCOUNT_SID,
        auth_token: str | None = AUTH_TOKEN,
        script: Script | None = None,
        keep: int | None = None,
    ) -> None:
        super().__init__(script, keep=keep)
        self.account_sid = account_sid
        self.auth_token = auth_token
        #: The form of every message accepted (answered 201).
        self.messages: list[dict[str, str]] = []

    def config(self) -> SmsSettings:
        """The sms channel's settings that point it at this fake."""
        return SmsSettings(
            api_url=self.url,
            account_sid=self.account_sid or ACCOUNT_SID,
            auth_token=Secret(self.auth_token or AUTH_TOKEN),
            from_=FROM_NUMBER,
        )

    def recipient(self) -> str:
        """A recipient this fake delivers to (for the shared fake tests and benchmarks)."""
        return "+14155552671"

    def deliveries(self) -> list[Delivery]:
        """What was accepted, for the outbox of ``notifsvc dev``."""
        out = []
        for seen in self.delivered:
            form = seen.form()
            details = {"From": form.get("From", "")}
            out.append(
                Delivery(
                    "sms", seen.wall, form.get("To", ""), form.get("Body", ""), None, None, details
                )
            )
        return out

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._create)

    def _authorized(self, request: web.Request) -> bool:
        sid = request.match_info["sid"]
        login = decode_basic_auth(request.headers.get("Authorization", ""))
        if login is None or login[0] != sid or not login[1]:
            return False
        return sid == (self.account_sid or sid) and login[1] == (self.auth_token or login[1])

    def _invalid(self, request: web.Request, form: dict[str, str]) -> Reply | None:
        if not self._authorized(request):
            return twilio_error(401, 20003, "Authentication Error - invalid username")
        if request.content_type != "application/x-www-form-urlencoded":
            return twilio_error(400, 20001, "Expected a form-encoded body")
        for name in ("To", "From", "Body"):
            if not form.get(name):
                return twilio_error(400, 21604, f"A '{name}' parameter is required.")
        return None

    async def _create(self, request: web.Request) -> web.StreamResponse:
        seen = await self.record(request)
        try:
            form = seen.form()
        except ValueError:
            form = {}
        invalid = self._invalid(request, form)
        if invalid is not None:
            return web.json_response(invalid.body, status=invalid.status)
        scripted = await self.scripted()
        if scripted is not None:
            return scripted
        remember(self.messages, form, self.keep)
        self.deliver(seen)
        sid = "SM" + uuid.uuid4().hex
        body = {"sid": sid, "status": "queued", "to": form["To"], "from": form["From"]}
        return web.json_response(body | {"body": form["Body"]}, status=201)
