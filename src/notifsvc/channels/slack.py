"""``slack``: a message through the Slack Web API ``chat.postMessage`` with a bot token.

``POST {NOTIFSVC_SLACK_API_URL}/chat.postMessage`` with ``Authorization: Bearer <token>`` and
the JSON body ``{"channel": to, "text": text}``; the subject, when given, is the first line
of the text, in bold. ``to`` is a channel ID (``C``/``G``/``D`` then upper-case letters and
digits), a user ID (``U``/``W`` ...) or ``#channel-name``.

Slack answers most failures with HTTP 200 and ``{"ok": false, "error": ...}``: ``ratelimited``
is :class:`Throttled` and Slack-side errors are :class:`TransientError` (both honouring
``Retry-After``), every other error (``channel_not_found``, ``invalid_auth``,
``msg_too_long``, ...) is :class:`PermanentError`. HTTP 429 is :class:`Throttled` too, and
5xx answers are transient.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import orjson

from notifsvc.channels.base import DeliveryError, PermanentError, Throttled, TransientError
from notifsvc.channels.http import (
    Answer,
    HttpChannel,
    Request,
    base_url_problem,
    classify_status,
    json_field,
    parse_retry_after,
)
from notifsvc.config import Secret, Section, setting
from notifsvc.model import FieldError, Notification

CONVERSATION_ID = re.compile(r"[CGD][A-Z0-9]{8,20}")
USER_ID = re.compile(r"[UW][A-Z0-9]{8,20}")
CHANNEL_NAME = re.compile(r"#[a-z0-9_-]{1,80}")
#: What ``to`` must be, exactly; also published in the OpenAPI document.
RECIPIENT = re.compile("|".join(p.pattern for p in (CONVERSATION_ID, USER_ID, CHANNEL_NAME)))

#: ``error`` values of an ``ok: false`` answer that may go away by themselves.
TRANSIENT_ERRORS = frozenset(
    {
        "internal_error",
        "service_unavailable",
        "request_timeout",
        "fatal_error",
        "team_added_to_org",
    }
)


def message_text(notification: Notification) -> str:
    if notification.subject:
        return f"*{notification.subject}*\n{notification.txt}"
    return notification.txt


def classify_error(error: str, headers: Mapping[str, str]) -> DeliveryError:
    """What an ``ok: false`` answer's ``error`` means."""
    message = f"slack API error: {error}"
    retry_after = parse_retry_after(headers.get("Retry-After"))
    if error == "ratelimited":
        return Throttled(message, retry_after=retry_after)
    if error in TRANSIENT_ERRORS:
        return TransientError(message, retry_after=retry_after)
    return PermanentError(message)


def classify_response(status: int, headers: Mapping[str, str], raw: bytes) -> DeliveryError | None:
    """None when Slack posted the message, otherwise the error its answer means."""
    text = raw.decode(errors="replace")
    error = classify_status("slack", status, headers, text)
    if error is not None:
        return error
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        return TransientError(f"slack answered HTTP {status} without a JSON object: {text[:200]}")
    if body.get("ok") is True:
        return None
    return classify_error(str(body.get("error") or "unknown_error"), headers)


@dataclass(frozen=True)
class SlackSettings(Section, prefix="slack"):
    api_url: str = setting("https://slack.com/api", str, doc="Slack Web API base URL")
    token: Secret | None = setting(
        None, Secret, secret=True, doc="bot token (`xoxb-...`) with the `chat:write` scope"
    )

    def disabled_reason(self) -> str | None:
        return self.missing("token") or base_url_problem(self.env_name("api_url"), self.api_url)


class SlackChannel(HttpChannel[SlackSettings]):
    name = "slack"
    Config = SlackSettings
    fake = "notifsvc.dev.fakes.slack:FakeSlack"
    max_body_chars = 40_000
    recipient_pattern: ClassVar[str] = f"^(?:{RECIPIENT.pattern})$"

    def validate_recipient(self, to: str) -> list[FieldError]:
        if RECIPIENT.fullmatch(to):
            return []
        return [
            FieldError(
                "to",
                "must be a Slack channel ID (C0123ABCD), a user ID (U0123ABCD) or "
                "#channel-name (lower case, digits, - and _, at most 80 characters)",
            )
        ]

    def validate(self, notification: Notification) -> list[FieldError]:
        errors = super().validate(notification)
        if not errors and len(message_text(notification)) > self.max_body_chars:
            errors.append(
                FieldError("subject", f"and txt together exceed {self.max_body_chars} characters")
            )
        return errors

    def _headers(self) -> dict[str, str]:
        token = self.config.token.reveal() if self.config.token else ""
        return {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json; charset=utf-8",
        }

    def request(self, notification: Notification) -> Request:
        url = f"{self.config.api_url.rstrip('/')}/chat.postMessage"
        body = orjson.dumps({"channel": notification.to, "text": message_text(notification)})
        return Request(url, body, self._headers(), "slack")

    def classify(self, answer: Answer, request: Request) -> DeliveryError | None:
        return classify_response(answer.status, answer.headers, answer.body)

    def message_id(self, answer: Answer) -> str | None:
        """The message's timestamp, Slack's id for it within the channel."""
        return json_field(answer.body, "ts")
