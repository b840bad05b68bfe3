"""``sms`` through Vonage's SMS API: provider ``vonage``, a second provider of the channel.

``POST {NOTIFSVC_VONAGE_API_URL}/sms/json`` with the form fields ``api_key``,
``api_secret``, ``from``, ``to`` (E.164 without the ``+``), ``text``, ``type=unicode`` (so
that any character survives) and ``client-ref`` (the notification's UUID, to find it in
Vonage's records). The answer is HTTP 200 whatever became of the message: a JSON object
whose ``messages`` array holds one entry per SMS part, each with ``status`` ``"0"`` for
accepted (and its ``message-id``) or an error code and ``error-text``. Every part must be
accepted; the first part's id is the receipt's.

Codes 1 (throttled) and 5 (internal error) mean Vonage did not take the message and trying
again can help: :class:`Throttled` and :class:`TransientError`, both ``failover``; so is 9
(the account's quota), which is the account's problem, not the recipient's. Every other
code is a :class:`PermanentError` naming it. An HTTP error status is classified as for
every HTTP provider (:func:`~notifsvc.channels.http.classify_status`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson

from notifsvc.channels.base import DeliveryError, PermanentError, Throttled, TransientError
from notifsvc.channels.http import (
    DETAIL_CHARS,
    Answer,
    HttpChannel,
    Request,
    base_url_problem,
    classify_status,
)
from notifsvc.channels.sms import SmsRules
from notifsvc.config import Secret, Section, setting
from notifsvc.model import Notification, uuid_text

#: Vonage status codes after which another provider may send the message.
THROTTLED = "1"
RETRIABLE = frozenset({"5", "9"})


@dataclass(frozen=True)
class VonageSettings(Section, prefix="vonage"):
    """The Vonage account that sends the sms channel's messages as provider ``vonage``."""

    api_url: str = setting("https://rest.nexmo.com", str, doc="Vonage SMS API base URL")
    api_key: str | None = setting(None, str, doc="Vonage API key")
    api_secret: Secret | None = setting(None, Secret, secret=True, doc="Vonage API secret")
    from_: str | None = setting(None, str, doc="sender: a number (E.164) or an alphanumeric id")

    def disabled_reason(self) -> str | None:
        missing = self.missing("api_key", "api_secret", "from_")
        return missing or base_url_problem(self.env_name("api_url"), self.api_url)


def _parts(body: bytes) -> list[dict[str, Any]] | None:
    """The ``messages`` entries of an answer, or None when it has none."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    parts = value.get("messages") if isinstance(value, dict) else None
    if not isinstance(parts, list) or not parts or not all(isinstance(p, dict) for p in parts):
        return None
    return parts


def classify_parts(parts: list[dict[str, Any]] | None) -> DeliveryError | None:
    """None when every part was accepted, otherwise the error of the first refused one."""
    if parts is None:
        return PermanentError("vonage answered without a messages array")
    for part in parts:
        code = str(part.get("status", ""))
        if code == "0":
            continue
        text = str(part.get("error-text", ""))[:DETAIL_CHARS]
        message = f"vonage status {code}: {text}"
        error: DeliveryError
        if code == THROTTLED:
            error = Throttled(message)
        elif code in RETRIABLE:
            error = TransientError(message)
        else:
            return PermanentError(message)
        error.failover = True
        return error
    return None


class VonageChannel(SmsRules, HttpChannel[VonageSettings]):
    name = "sms"
    provider = "vonage"
    Config = VonageSettings
    fake = "notifsvc.dev.fakes.vonage:FakeVonage"

    def request(self, notification: Notification) -> Request:
        c = self.config
        secret = c.api_secret.reveal() if c.api_secret is not None else ""
        form = {
            "api_key": c.api_key or "",
            "api_secret": secret,
            "from": (c.from_ or "").removeprefix("+"),
            "to": notification.to.removeprefix("+"),
            "text": notification.txt,
            "type": "unicode",
            "client-ref": uuid_text(notification.uuid),
        }
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        url = f"{c.api_url.rstrip('/')}/sms/json"
        secrets = (secret,) if secret else ()
        return Request(url, urlencode(form).encode(), headers, "vonage", secrets)

    def classify(self, answer: Answer, request: Request) -> DeliveryError | None:
        error = classify_status("vonage", answer.status, answer.headers, answer.text)
        return error if error is not None else classify_parts(_parts(answer.body))

    def message_id(self, answer: Answer) -> str | None:
        """The first part's ``message-id``."""
        parts = _parts(answer.body) or [{}]
        found = parts[0].get("message-id")
        return found if isinstance(found, str) else None
