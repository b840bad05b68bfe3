"""``webhook``: POST the notification as JSON to an allowed URL.

Every request carries ``Idempotency-Key: <uuid>`` so that the receiving side can drop a
repeated delivery, and, when ``NOTIFSVC_WEBHOOK_SECRET`` is set, an
``X-Notifsvc-Signature: sha256=<hex HMAC of the body>`` header. URLs must be http(s), at
most :data:`MAX_URL_CHARS` long and on a host of ``NOTIFSVC_WEBHOOK_ALLOWED_HOSTS``;
redirects are not followed (they could lead off the allowed hosts), so a 3xx answer is a
:class:`~notifsvc.channels.base.PermanentError`.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

import aiohttp
import orjson

from notifsvc.channels.base import TransientError
from notifsvc.channels.http import HttpChannel, classify_status
from notifsvc.config import Settings
from notifsvc.model import FieldError, Notification

SIGNATURE_HEADER = "X-Notifsvc-Signature"
#: Longest accepted URL; what most servers and proxies accept.
MAX_URL_CHARS = 2_048


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def url_problem(to: str, allowed: frozenset[str]) -> str | None:
    """Why ``to`` is not a URL webhooks may target, or None."""
    if len(to) > MAX_URL_CHARS:
        return f"must be at most {MAX_URL_CHARS} characters"
    if any(c.isspace() or not c.isprintable() for c in to):
        return "must not contain spaces or control characters"
    try:
        url = urlsplit(to)
        port = url.port
    except ValueError:
        return "must be an http(s) URL"
    if url.scheme not in {"http", "https"} or not url.hostname:
        return "must be an http(s) URL"
    host = url.hostname.lower()
    if host not in allowed and f"{host}:{port}" not in allowed:
        return f"host {host!r} is not in NOTIFSVC_WEBHOOK_ALLOWED_HOSTS"
    return None


class WebhookChannel(HttpChannel):
    name = "webhook"

    @classmethod
    def disabled_reason(cls, settings: Settings) -> str | None:
        if not settings.webhook_allowed_hosts:
            return "NOTIFSVC_WEBHOOK_ALLOWED_HOSTS is not set"
        return None

    def validate_recipient(self, to: str) -> list[FieldError]:
        problem = url_problem(to, self.settings.webhook_allowed_hosts)
        return [] if problem is None else [FieldError("to", problem)]

    def _request(self, notification: Notification) -> tuple[bytes, dict[str, str]]:
        body = orjson.dumps(
            {
                "uuid": str(notification.uuid),
                "txt": notification.txt,
                "subject": notification.subject,
                "priority": notification.priority.value,
                "accepted_at": notification.accepted_at,
            }
        )
        headers = {"Content-Type": "application/json", "Idempotency-Key": str(notification.uuid)}
        if self.settings.webhook_secret is not None:
            headers[SIGNATURE_HEADER] = sign(self.settings.webhook_secret.reveal(), body)
        return body, headers

    async def send(self, notification: Notification) -> None:
        if self._session is None:
            raise TransientError("webhook channel is not started")
        body, headers = self._request(notification)
        try:
            async with self._session.post(
                notification.to, data=body, headers=headers, allow_redirects=False
            ) as resp:
                detail = await resp.text(errors="replace")
                error = classify_status("webhook", resp.status, resp.headers, detail)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransientError(f"webhook request failed: {exc!r}") from exc
        if error is not None:
            raise error
