"""``sms``: a text message through the Twilio Messages REST API.

``POST {NOTIFSVC_SMS_API_URL}/2010-04-01/Accounts/{sid}/Messages.json`` with the form
fields ``To``, ``From`` and ``Body`` and HTTP basic auth ``sid:token``. ``to`` must be an
E.164 number (``+`` and digits only) that :mod:`phonenumbers` considers valid; ``txt`` is
at most 1,600 characters (Twilio's limit); the subject is not sent. Twilio has no
idempotency key for messages, so a send whose answer was lost may be repeated.

HTTP 429 is :class:`Throttled` and 5xx answers are :class:`TransientError` (both honouring
``Retry-After``); other 4xx answers are :class:`PermanentError` carrying Twilio's error code
and message.

This class is provider ``twilio``; ``NOTIFSVC_SMS_PROVIDERS`` (default ``twilio``) orders it
with ``vonage`` (:mod:`notifsvc.channels.vonage`) for failover (:mod:`notifsvc.providers`).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import quote, urlencode

import orjson
import phonenumbers

from notifsvc.channels.base import DeliveryError, ProviderChoice, provider_list
from notifsvc.channels.http import (
    Answer,
    HttpChannel,
    Request,
    base_url_problem,
    classify_status,
    json_field,
)
from notifsvc.config import Secret, setting
from notifsvc.model import FieldError, Notification

E164 = re.compile(r"\+[1-9][0-9]{1,14}")


def twilio_detail(text: str) -> str:
    """``Twilio error <code>: <message>`` from an error body, else the body itself."""
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
    if isinstance(body, dict) and "code" in body and "message" in body:
        return f"Twilio error {body['code']}: {body['message']}"
    return text


def classify_response(status: int, headers: Mapping[str, str], text: str) -> DeliveryError | None:
    """None when Twilio accepted the message, otherwise the error its answer means."""
    return classify_status("twilio", status, headers, twilio_detail(text))


def basic_auth(login: str, password: Secret | None) -> str:
    secret = password.reveal() if password is not None else ""
    return "Basic " + base64.b64encode(f"{login}:{secret}".encode()).decode("ascii")


def recipient_problem(to: str) -> str | None:
    if not E164.fullmatch(to):
        return "must be an E.164 phone number such as +14155552671"
    try:
        number = phonenumbers.parse(to, None)
    except phonenumbers.NumberParseException:
        return "is not a phone number"
    if not phonenumbers.is_valid_number(number):
        return "is not a valid phone number"
    return None


@dataclass(frozen=True)
class SmsSettings(ProviderChoice, prefix="sms"):
    """The Twilio account that sends the messages (provider ``twilio``), and the sms
    channel's providers."""

    providers: str = setting(
        "twilio",
        provider_list("twilio", "vonage"),
        doc="sms providers in order: `twilio` (`NOTIFSVC_SMS_*`), `vonage`",
    )

    api_url: str = setting("https://api.twilio.com", str, doc="Twilio API base URL")
    account_sid: str | None = setting(None, str, doc="Twilio account SID")
    auth_token: Secret | None = setting(None, Secret, secret=True, doc="Twilio auth token")
    from_: str | None = setting(None, str, doc="sender number (E.164) or messaging service")

    def disabled_reason(self) -> str | None:
        missing = self.missing("account_sid", "auth_token", "from_")
        return missing or base_url_problem(self.env_name("api_url"), self.api_url)


class SmsRules:
    """What every SMS provider accepts: an E.164 recipient, at most 1,600 characters (put
    before the provider's channel class in its bases)."""

    max_body_chars: ClassVar[int] = 1_600
    #: A necessary condition on ``to``, published in the OpenAPI document.
    recipient_pattern: ClassVar[str] = f"^{E164.pattern}$"

    def validate_recipient(self, to: str) -> list[FieldError]:
        problem = recipient_problem(to)
        return [] if problem is None else [FieldError("to", problem)]


class SmsChannel(SmsRules, HttpChannel[SmsSettings]):
    name = "sms"
    provider = "twilio"
    Config = SmsSettings
    fake = "notifsvc.dev.fakes.twilio:FakeTwilio"

    def _url(self) -> str:
        sid = quote(self.config.account_sid or "", safe="")
        return f"{self.config.api_url.rstrip('/')}/2010-04-01/Accounts/{sid}/Messages.json"

    def _headers(self) -> dict[str, str]:
        token = self.config.auth_token
        return {"Authorization": basic_auth(self.config.account_sid or "", token)}

    def request(self, notification: Notification) -> Request:
        form = {
            "To": notification.to,
            "From": self.config.from_ or "",
            "Body": notification.txt,
        }
        headers = self._headers() | {"Content-Type": "application/x-www-form-urlencoded"}
        return Request(self._url(), urlencode(form).encode(), headers, "twilio")

    def classify(self, answer: Answer, request: Request) -> DeliveryError | None:
        return classify_response(answer.status, answer.headers, answer.text)

    def message_id(self, answer: Answer) -> str | None:
        """Twilio's message SID (``SM...``)."""
        return json_field(answer.body, "sid")
