"""``webhook``: POST the notification as JSON to an allowed URL.

Every request carries the notification's uuid as ``Idempotency-Key`` and as ``webhook-id``
(the same on every retry), so that the receiving side can drop a repeated delivery, and the
attempt's ``webhook-timestamp`` (integer Unix seconds, fresh on every retry). When
``NOTIFSVC_WEBHOOK_SECRET`` is set (``whsec_`` secrets, comma-separated during a rotation),
``webhook-signature`` signs id, timestamp and body by the Standard Webhooks specification
(:mod:`notifsvc.signing`): a receiver verifies it with any of the spec's libraries, and a
captured request replayed later than the receiver's tolerance is refused.

URLs must be http(s), at most :data:`MAX_URL_CHARS` long, without credentials
(``user:pass@``) or backslashes, and on a host of ``NOTIFSVC_WEBHOOK_ALLOWED_HOSTS``;
redirects are not followed (they could lead off the allowed hosts), so a 3xx answer is a
:class:`~notifsvc.channels.base.PermanentError`.

A webhook URL may carry a secret in its path or query, so errors name the host only: the
URL's path, query and fragment are scrubbed from every answer and exception quoted in one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import SplitResult, parse_qsl, urlsplit

import orjson

from notifsvc.channels.base import DeliveryError, PermanentError
from notifsvc.channels.http import Answer, HttpChannel, Request, classify_status
from notifsvc.config import Section, as_csv, setting
from notifsvc.model import FieldError, Notification, uuid_text
from notifsvc.signing import ID_HEADER, TIMESTAMP_HEADER, SigningSecrets, unix_now

#: Longest accepted URL; what most servers and proxies accept.
MAX_URL_CHARS = 2_048
#: Shorter parts of a URL are not scrubbed from error text (they would mangle it).
MIN_SECRET_CHARS = 4
#: Distinct URLs whose checks, host and secret parts are kept: each is read per request and
#: per send (four URL parses per webhook sent), and a deployment targets few of them.
URLS_REMEMBERED = 1_024


def _split(to: str) -> tuple[SplitResult, int | None] | None:
    try:
        url = urlsplit(to)
        return url, url.port
    except ValueError:
        return None


def _text_problem(to: str) -> str | None:
    if len(to) > MAX_URL_CHARS:
        return f"must be at most {MAX_URL_CHARS} characters"
    if any(c.isspace() or not c.isprintable() for c in to):
        return "must not contain spaces or control characters"
    if "\\" in to:
        return "must not contain a backslash"
    return None


@functools.lru_cache(maxsize=URLS_REMEMBERED)
def url_problem(
    to: str, allowed: frozenset[str], *, variable: str = "NOTIFSVC_WEBHOOK_ALLOWED_HOSTS"
) -> str | None:
    """Why ``to`` is not a URL webhooks (or status callbacks: ``variable`` names their
    allowed hosts) may target, or None. Never quotes more than the host."""
    problem = _text_problem(to)
    if problem is not None:
        return problem
    split = _split(to)
    if split is None or split[0].scheme not in {"http", "https"} or not split[0].hostname:
        return "must be an http(s) URL"
    url, port = split
    if "@" in url.netloc:
        return "must not contain credentials (user:password@): requests are signed instead"
    host = url.hostname or ""
    if host not in allowed and f"{host}:{port}" not in allowed:
        return f"host {host!r} is not in {variable}"
    return None


@functools.lru_cache(maxsize=URLS_REMEMBERED)
def host_of(to: str) -> str:
    """``host`` or ``host:port`` of a webhook URL, lower case, or ``?`` when it has none."""
    split = _split(to)
    if split is None:
        return "?"
    url, port = split
    host = url.hostname or "?"
    return host if port is None else f"{host}:{port}"


@functools.lru_cache(maxsize=URLS_REMEMBERED)
def url_secrets(to: str) -> tuple[str, ...]:
    """The parts of a webhook URL that must never appear in an error message."""
    split = _split(to)
    if split is None:
        return (to,)
    url = split[0]
    parts = [to, url.netloc.rpartition("@")[0], url.path, url.query, url.fragment]
    parts += [f"{url.path}?{url.query}", *url.path.split("/")]
    parts += [value for _, value in parse_qsl(url.query, keep_blank_values=True)]
    return tuple(p for p in dict.fromkeys(parts) if len(p) >= MIN_SECRET_CHARS or p == to)


@dataclass(frozen=True)
class WebhookSettings(Section, prefix="webhook"):
    allowed_hosts: frozenset[str] = setting(
        frozenset(),
        as_csv,
        doc="comma-separated hosts (`host` or `host:port`) webhooks may "
        "target; none: the channel is off",
    )
    secret: SigningSecrets | None = setting(
        None,
        SigningSecrets,
        secret=True,
        doc="comma-separated `whsec_<base64>` secrets (the current one first; all sign during "
        "a rotation): `webhook-signature` by the Standard Webhooks spec; none: unsigned",
    )

    def disabled_reason(self) -> str | None:
        return None if self.allowed_hosts else f"{self.env_name('allowed_hosts')} is not set"


class WebhookChannel(HttpChannel[WebhookSettings]):
    name = "webhook"
    Config = WebhookSettings
    fake = "notifsvc.dev.fakes.webhook:WebhookSink"
    #: A necessary condition on ``to``, published in the OpenAPI document.
    recipient_pattern: ClassVar[str] = "^[Hh][Tt][Tt][Pp][Ss]?://[^\\\\@/?#]+([/?#].*)?$"

    def validate_recipient(self, to: str) -> list[FieldError]:
        problem = url_problem(to, self.config.allowed_hosts)
        return [] if problem is None else [FieldError("to", problem)]

    def _request(
        self, notification: Notification, *, timestamp: int | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """Body and headers of one attempt, signed at ``timestamp`` (default: now)."""
        msg_id = uuid_text(notification.uuid)
        body = orjson.dumps(
            {
                "uuid": msg_id,
                "txt": notification.txt,
                "subject": notification.subject,
                "priority": notification.priority.value,
                "accepted_at": notification.accepted_at,
            }
        )
        headers = {"Content-Type": "application/json", "Idempotency-Key": msg_id}
        at = unix_now() if timestamp is None else timestamp
        if self.config.secret is None:
            headers |= {ID_HEADER: msg_id, TIMESTAMP_HEADER: str(at)}
        else:
            headers |= self.config.secret.headers(msg_id, body, timestamp=at)
        return body, headers

    def request(self, notification: Notification) -> Request:
        label = f"webhook to {host_of(notification.to)}"
        problem = url_problem(notification.to, self.config.allowed_hosts)
        if problem is not None:  # accepted under other settings, or never validated
            raise PermanentError(f"{label}: the URL {problem}")
        body, headers = self._request(notification)
        return Request(notification.to, body, headers, label, url_secrets(notification.to))

    def classify(self, answer: Answer, request: Request) -> DeliveryError | None:
        return classify_status(request.label, answer.status, answer.headers, answer.text)
