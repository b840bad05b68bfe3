"""A fake FCM HTTP v1 API and its OAuth2 token endpoint.

The fake makes a service account of its own (an RSA key; :meth:`FakeFcm.config` is its key
file's JSON, whose ``token_uri`` is the fake's ``POST /token``). The token endpoint takes the
JWT-bearer grant google-auth makes, checks the JWT's RS256 signature, issuer, key ID and
scope, and answers an access token that lasts ``token_lifetime`` seconds on ``clock``.
``POST /v1/projects/{project}/messages:send`` then wants one of those tokens (else 401
``UNAUTHENTICATED``), the fake's project (else 403), and a message of the API's shape: unknown
fields, a malformed registration token and a payload over 4,096 bytes are 400
``INVALID_ARGUMENT``; a token in :attr:`FakeFcm.unregistered` is 404 ``UNREGISTERED``.

``script`` scripts the sends (after those checks), ``token_script`` the token endpoint;
:func:`fcm_error` and its kin build FCM's error answers for them.
"""

from __future__ import annotations

import itertools
import math
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

import jwt
import orjson
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from multidict import CIMultiDict

from notifsvc.channels.fcm import SCOPE, FcmSettings
from notifsvc.config import Secret
from notifsvc.dev.fakes.captured import Delivery
from notifsvc.dev.fakes.http import HttpFake, Seen, remember, respond
from notifsvc.dev.fakes.script import Hang, Reply, Script

PROJECT_ID = "notifsvc-fake"
#: The audience google-auth writes into its grant JWTs, whatever the key's ``token_uri``.
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_LIFETIME = 3_600
MAX_PAYLOAD_BYTES = 4_096
#: A registration token of the shape FCM issues: an instance ID, ':', then ``APA91b...``.
RECIPIENT = "cXVpZXQtbW9vbi00Mg:APA91b" + "Hq3_x-Zr7kW9" * 11 + "Tw"
_REGISTRATION_TOKEN = re.compile(r"[A-Za-z0-9_:-]+")

#: The fields of a ``messages:send`` body and of the parts of a message the fake knows.
_SHAPES: dict[str, frozenset[str]] = {
    "": frozenset({"message", "validate_only"}),
    "message": frozenset(
        {
            "name",
            "data",
            "notification",
            "android",
            "webpush",
            "apns",
            "fcm_options",
            "token",
            "topic",
            "condition",
        }
    ),
    "message.notification": frozenset({"title", "body", "image"}),
    "message.android": frozenset(
        {
            "collapse_key",
            "priority",
            "ttl",
            "restricted_package_name",
            "data",
            "notification",
            "fcm_options",
            "direct_boot_ok",
        }
    ),
    "message.apns": frozenset({"headers", "payload", "fcm_options", "live_activity_token"}),
}
#: Parts of a message that map strings to strings.
_STRING_MAPS = ("message.data", "message.apns.headers", "message.notification")


def fcm_error(
    status: int,
    canonical: str,
    message: str,
    *,
    error_code: str | None = None,
    field: str | None = None,
    retry_after: int | None = None,
) -> Reply:
    """An error answer as FCM gives it: ``{"error": {code, message, status, details}}``, with
    an ``FcmError`` detail for ``error_code`` and a ``BadRequest`` one for ``field``."""
    details: list[dict[str, Any]] = []
    if error_code is not None:
        details.append({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError"})
        details[-1]["errorCode"] = error_code
    if field is not None:
        violation = {"field": field, "description": message}
        details.append(
            {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [violation]}
        )
    error: dict[str, Any] = {"code": status, "message": message, "status": canonical}
    if details:
        error["details"] = details
    headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
    return Reply(status, {"error": error}, headers)


def unregistered() -> Reply:
    return fcm_error(404, "NOT_FOUND", "Requested entity was not found.", error_code="UNREGISTERED")


def invalid_token() -> Reply:
    message = "The registration token is not a valid FCM registration token"
    return fcm_error(
        400, "INVALID_ARGUMENT", message, error_code="INVALID_ARGUMENT", field="message.token"
    )


def quota_exceeded(retry_after: int | None = None) -> Reply:
    message = "Quota exceeded for quota metric 'Send requests'."
    return fcm_error(
        429, "RESOURCE_EXHAUSTED", message, error_code="QUOTA_EXCEEDED", retry_after=retry_after
    )


def unauthenticated() -> Reply:
    message = (
        "Request had invalid authentication credentials. Expected OAuth 2 access token, "
        "login cookie or other valid authentication credential."
    )
    return fcm_error(401, "UNAUTHENTICATED", message)


def invalid_argument(field: str, message: str) -> Reply:
    return fcm_error(400, "INVALID_ARGUMENT", message, field=field)


def oauth_error(error: str, description: str, status: int = 400) -> Reply:
    """An answer of the token endpoint refusing a grant (RFC 6749, section 5.2)."""
    return Reply(status, {"error": error, "error_description": description})


def payload_bytes(message: dict[str, Any]) -> int:
    """What FCM's 4,096-byte limit counts: keys and values of ``notification`` and ``data``."""
    parts: dict[str, Any] = {**message.get("notification", {}), **message.get("data", {})}
    return sum(len(k.encode()) + len(str(v).encode()) for k, v in parts.items())


def _part(body: dict[str, Any], path: str) -> Any:
    value: Any = body
    for name in path.split(".") if path else ():
        value = value.get(name) if isinstance(value, dict) else None
    return value


def shape_problem(body: Any) -> Reply | None:
    """FCM's 400 for a body that is not a ``messages:send`` request, or None."""
    if not isinstance(body, dict) or not isinstance(body.get("message"), dict):
        return invalid_argument("message", "Invalid JSON payload received. Expected a message.")
    for path, known in _SHAPES.items():
        part = _part(body, path)
        if part is not None and not isinstance(part, dict):
            return invalid_argument(path, f"Invalid value at '{path}': expected an object.")
        unknown = sorted(set(part or {}) - known)
        if unknown:
            why = f"Invalid JSON payload received. Unknown name \"{unknown[0]}\" at '{path}'"
            return invalid_argument(path, why + ": Cannot find field.")
    for path in _STRING_MAPS:
        part = _part(body, path) or {}
        if not all(isinstance(v, str) for v in part.values()):
            return invalid_argument(path, f"Invalid value at '{path}' (TYPE_STRING)")
    priority = _part(body, "message.android.priority")
    if priority not in {None, "HIGH", "NORMAL"}:
        return invalid_argument("message.android.priority", "Invalid value at priority.")
    return None


def service_account_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


class FakeFcm(HttpFake):
    """``seen``/``delivered`` are the sends; ``messages`` the ``message`` of each delivered
    one; ``grants`` the JWT claims of each access token issued; ``tokens`` each issued access
    token with the ``clock`` time at which it expires."""

    def __init__(
        self,
        *,
        project_id: str = PROJECT_ID,
        script: Script | None = None,
        token_script: Script | None = None,
        token_lifetime: int = TOKEN_LIFETIME,
        clock: Callable[[], float] = time.monotonic,
        keep: int | None = None,
    ) -> None:
        super().__init__(script, keep=keep)
        self.project_id = project_id
        self.token_script = token_script if token_script is not None else Script()
        self.token_lifetime = token_lifetime
        self.clock = clock
        self.key = service_account_key()
        self.key_id = secrets.token_hex(20)
        self.client_email = f"notifsvc-sender@{project_id}.iam.gserviceaccount.com"
        #: Registration tokens the fake answers 404 ``UNREGISTERED``.
        self.unregistered: set[str] = set()
        self.messages: list[dict[str, Any]] = []
        self.grants: list[dict[str, Any]] = []
        self.tokens: dict[str, float] = {}
        self._ids = itertools.count(1)

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def key_file(self, key: rsa.RSAPrivateKey | None = None) -> dict[str, str]:
        """The service account's key file (with ``key``: another key, one the fake refuses)."""
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.key_id,
            "private_key": pem(key or self.key),
            "client_email": self.client_email,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
        }

    def config(self) -> FcmSettings:
        """The fcm channel's settings that point it at this fake."""
        credentials = Secret(orjson.dumps(self.key_file()).decode())
        return FcmSettings(credentials=credentials, api_url=self.url)

    def recipient(self) -> str:
        """A recipient this fake delivers to (for the shared fake tests and benchmarks)."""
        return RECIPIENT

    def expire_tokens(self) -> None:
        """Every access token issued so far is expired from now on (sends get 401)."""
        self.tokens = dict.fromkeys(self.tokens, -math.inf)

    def deliveries(self) -> list[Delivery]:
        """What was delivered, for the outbox of ``notifsvc dev``."""
        out = []
        for seen in self.delivered:
            message = seen.json().get("message", {})
            shown = message.get("notification", {})
            details = {"android.priority": str(message.get("android", {}).get("priority", ""))}
            out.append(
                Delivery(
                    "fcm",
                    seen.wall,
                    str(message.get("token", "")),
                    str(shown.get("body", "")),
                    shown.get("title"),
                    message.get("data", {}).get("uuid"),
                    details,
                )
            )
        return out

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/token", self._token)
        app.router.add_post("/v1/projects/{project}/messages:send", self._send)

    async def stop(self) -> None:
        self.token_script.release()
        await super().stop()

    # --- the token endpoint ---------------------------------------------------------------

    def _grant_problem(self, form: dict[str, str]) -> Reply | dict[str, Any]:
        """The claims of a valid JWT-bearer grant, or the endpoint's refusal."""
        if form.get("grant_type") != JWT_BEARER:
            return oauth_error("unsupported_grant_type", "Invalid grant_type.")
        assertion = form.get("assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            claims: dict[str, Any] = jwt.decode(
                assertion,
                self.key.public_key(),
                algorithms=["RS256"],
                audience=[GOOGLE_TOKEN_URI, self.token_uri],
                options={"require": ["iss", "aud", "iat", "exp", "scope"]},
            )
        except jwt.PyJWTError:
            return oauth_error("invalid_grant", "Invalid JWT Signature.")
        if header.get("kid") not in {None, self.key_id} or claims["iss"] != self.client_email:
            return oauth_error("invalid_grant", "Invalid grant: account not found")
        if claims["exp"] - claims["iat"] > 3600:
            return oauth_error("invalid_grant", "Invalid JWT: Token must be a short-lived token")
        if SCOPE not in str(claims["scope"]).split():
            return oauth_error("invalid_scope", "Invalid OAuth scope or ID token audience.")
        return claims

    async def _token(self, request: web.Request) -> web.StreamResponse:
        seen = Seen(
            request.method, request.path, CIMultiDict(request.headers), await request.read()
        )
        try:
            form = seen.form()
        except ValueError:
            form = {}
        checked = self._grant_problem(form)
        if isinstance(checked, Reply):
            return respond(checked)
        step = self.token_script.next()
        if isinstance(step, Hang):
            await self.token_script.hang()
            return web.Response(status=503, text="fake stopped while hanging")
        if step is not None and not 200 <= step.status < 300:
            return respond(step)
        return web.json_response(self._issue(checked))

    def _issue(self, claims: dict[str, Any]) -> dict[str, Any]:
        now = self.clock()
        self.tokens = {t: at for t, at in self.tokens.items() if at > now}
        token = "ya29.fake-" + secrets.token_urlsafe(32)
        self.tokens[token] = now + self.token_lifetime
        remember(self.grants, claims, self.keep)
        return {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}

    # --- messages:send --------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        expires = self.tokens.get(token) if scheme == "Bearer" else None
        return expires is not None and self.clock() < expires

    def _refusal(self, request: web.Request, seen: Seen) -> Reply | None:
        if not self._authorized(request):
            return unauthenticated()
        if request.match_info["project"] != self.project_id:
            message = "Permission 'cloudmessaging.messages.create' denied on resource"
            return fcm_error(403, "PERMISSION_DENIED", message)
        if request.content_type != "application/json":
            return invalid_argument("", "Invalid JSON payload received. Expected JSON.")
        try:
            body = seen.json()
        except orjson.JSONDecodeError:
            return invalid_argument("", "Invalid JSON payload received. Unexpected token.")
        return shape_problem(body) or self._message_problem(body["message"])

    def _message_problem(self, message: dict[str, Any]) -> Reply | None:
        token = message.get("token")
        if not isinstance(token, str) or not _REGISTRATION_TOKEN.fullmatch(token):
            return invalid_token()
        if token in self.unregistered:
            return unregistered()
        if payload_bytes(message) > MAX_PAYLOAD_BYTES:
            return fcm_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.")
        return None

    async def _send(self, request: web.Request) -> web.StreamResponse:
        seen = await self.record(request)
        refusal = self._refusal(request, seen)
        if refusal is not None:
            return respond(refusal)
        scripted = await self.scripted()
        if scripted is not None:
            return scripted
        remember(self.messages, seen.json()["message"], self.keep)
        self.deliver(seen)
        name = f"projects/{self.project_id}/messages/0:{next(self._ids)}%fake"
        return web.json_response({"name": name})
