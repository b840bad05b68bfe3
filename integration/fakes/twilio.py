"""A fake Twilio Messages API: checks basic auth and form encoding, records messages."""

from __future__ import annotations

import base64
import uuid
from typing import Any

from aiohttp import web

from integration.fakes.http import HttpFake
from integration.fakes.script import Reply, Script
from notifsvc.config import Secret

ACCOUNT_SID = "AC00000000000000000000000000000001"
AUTH_TOKEN = "twilio-test-token"
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
    def __init__(
        self,
        *,
        account_sid: str = ACCOUNT_SID,
        auth_token: str = AUTH_TOKEN,
        script: Script | None = None,
    ) -> None:
        super().__init__(script)
        self.account_sid = account_sid
        self.auth_token = auth_token
        #: The form of every message accepted (answered 201).
        self.messages: list[dict[str, str]] = []

    def settings(self) -> dict[str, Any]:
        """``Settings`` fields that point the sms channel at this fake."""
        return {
            "twilio_api_url": self.url,
            "twilio_account_sid": self.account_sid,
            "twilio_auth_token": Secret(self.auth_token),
            "twilio_from": FROM_NUMBER,
        }

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._create)

    def _authorized(self, request: web.Request) -> bool:
        return decode_basic_auth(request.headers.get("Authorization", "")) == (
            self.account_sid,
            self.auth_token,
        )

    def _invalid(self, request: web.Request, form: dict[str, str]) -> Reply | None:
        if request.match_info["sid"] != self.account_sid or not self._authorized(request):
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
        self.messages.append(form)
        sid = "SM" + uuid.uuid4().hex
        body = {"sid": sid, "status": "queued", "to": form["To"], "from": form["From"]}
        return web.json_response(body | {"body": form["Body"]}, status=201)
