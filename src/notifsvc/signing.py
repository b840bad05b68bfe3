"""Signing and verifying HTTP callbacks by the Standard Webhooks specification (v1, symmetric).

Each request carries three headers:

- ``webhook-id``: the message's id, the same on every retry (a receiver de-duplicates by it);
- ``webhook-timestamp``: when this attempt was sent, in integer Unix seconds (every retry is
  signed afresh, so that a captured request is refused once it is older than the receiver's
  tolerance, :data:`DEFAULT_TOLERANCE_SECONDS` in the spec's libraries);
- ``webhook-signature``: ``v1,<base64 of HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``, one
  per secret, separated by spaces: during a rotation the old and the new secret both sign,
  and a receiver accepts the request when any signature matches a secret it knows.

A secret is written as the spec serializes it: ``whsec_`` followed by the standard base64 of
:data:`MIN_KEY_BYTES` to :data:`MAX_KEY_BYTES` random bytes (generate one with
:func:`generate_secret`, or ``echo "whsec_$(openssl rand -base64 32)"``). The decoded bytes
are the HMAC key, so a receiver passes the same string to the spec's libraries (e.g.
``standardwebhooks.Webhook("whsec_...")``). A value without the prefix is refused rather than
used as a raw key: the spec's libraries would base64-decode it into another key, and every
verification would fail without saying why.

:class:`SigningSecrets` holds the secrets of one endpoint (one setting, or later one API
key): it signs (:meth:`~SigningSecrets.headers`) and verifies (:meth:`~SigningSecrets.verify`,
for the fakes, the tests and receivers of ours).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping

from notifsvc.config import Secret

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
HEADERS = (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a password
#: The signature scheme of HMAC-SHA256 signatures (``v1a`` is the spec's ed25519 scheme).
VERSION = "v1"
#: Key sizes the spec allows for symmetric secrets (192 to 512 bits).
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64
#: How far a timestamp may be from the verifier's clock, either way (the spec's libraries: 5
#: minutes).
DEFAULT_TOLERANCE_SECONDS = 300.0

_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
#: A message id: printable ASCII without spaces, and without the ``.`` that delimits the
#: signed content (the spec: an id with a dot could make two messages sign the same bytes).
_MSG_ID = re.compile(r"[!-\-/-~]{1,256}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SEPARATORS = re.compile(r"[,\s]+")


class VerificationError(Exception):
    """A request's signature headers are missing, malformed, stale or match no secret."""


def unix_now() -> int:
    """The current time in integer Unix seconds (what ``webhook-timestamp`` carries)."""
    return int(time.time())


def generate_secret(key_bytes: int = 32) -> str:
    """A new random secret in the spec's form, ``whsec_<base64>``."""
    if not MIN_KEY_BYTES <= key_bytes <= MAX_KEY_BYTES:
        raise ValueError(f"a key has {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes")
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(key_bytes)).decode()


def decode_secret(text: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret. The ``ValueError`` for a malformed one
    says what is wrong without quoting the value (it is a secret)."""
    if not text.startswith(SECRET_PREFIX):
        raise ValueError(
            f"expected {SECRET_PREFIX}<base64 of {MIN_KEY_BYTES}-{MAX_KEY_BYTES} random bytes>"
            f' (generate one: echo "{SECRET_PREFIX}$(openssl rand -base64 32)")'
        )
    encoded = text.removeprefix(SECRET_PREFIX)
    if not encoded:
        raise ValueError(f"nothing follows {SECRET_PREFIX}")
    if not _BASE64.fullmatch(encoded):
        raise ValueError(
            f"the part after {SECRET_PREFIX} must be standard base64 (A-Z a-z 0-9 + /)"
        )
    unpadded = encoded.rstrip("=")
    try:  # unpadded base64 is accepted, as the spec's libraries do
        key = base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except binascii.Error:
        raise ValueError(f"the part after {SECRET_PREFIX} is not valid base64") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(
            f"the key must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes once base64-decoded,"
            f" not {len(key)}"
        )
    return key


def _check_id(msg_id: str) -> None:
    if not _MSG_ID.fullmatch(msg_id):
        raise ValueError("a webhook id is 1 to 256 printable ASCII characters without '.'")


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` of ``{msg_id}.{timestamp}.{body}`` with one key."""
    _check_id(msg_id)
    if timestamp < 0:
        raise ValueError("a webhook timestamp is a non-negative number of Unix seconds")
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return f"{VERSION},{base64.b64encode(digest).decode()}"


class SigningSecrets(Secret):
    """One endpoint's secrets: ``whsec_`` values separated by commas (or whitespace, e.g. one
    per line of a mounted file). The first is the current one; all of them sign, so that a
    receiver that still knows only an older one keeps accepting requests during a rotation.

    Like every :class:`~notifsvc.config.Secret` it never shows itself; :meth:`reveal` gives
    the normalized list back (for :func:`notifsvc.config.to_env`).
    """

    __slots__ = ("_keys",)

    def __init__(self, value: str) -> None:
        parts = [p for p in _SEPARATORS.split(value.strip()) if p]
        if not parts:
            raise ValueError(f"expected one or more comma-separated {SECRET_PREFIX} secrets")
        keys = []
        for number, part in enumerate(parts, 1):
            try:
                keys.append(decode_secret(part))
            except ValueError as exc:
                which = f"secret {number} of {len(parts)}" if len(parts) > 1 else "the secret"
                raise ValueError(f"{which}: {exc}") from None
        super().__init__(",".join(parts))
        self._keys = tuple(keys)

    def __len__(self) -> int:
        return len(self._keys)

    def sign(self, msg_id: str, timestamp: int, body: bytes) -> str:
        """The ``webhook-signature`` value: one signature per secret, current one first."""
        return " ".join(signature(key, msg_id, timestamp, body) for key in self._keys)

    def headers(self, msg_id: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
        """The three headers that sign ``body`` as message ``msg_id``, sent now (or at
        ``timestamp``). Call it for every attempt: a retry keeps the id, not the timestamp."""
        at = unix_now() if timestamp is None else timestamp
        return {
            ID_HEADER: msg_id,
            TIMESTAMP_HEADER: str(at),
            SIGNATURE_HEADER: self.sign(msg_id, at, body),
        }

    def verify(
        self,
        body: bytes,
        headers: Mapping[str, str],
        *,
        tolerance: float = DEFAULT_TOLERANCE_SECONDS,
        now: float | None = None,
    ) -> str:
        """The ``webhook-id`` of a request whose headers sign ``body`` with one of these
        secrets, at a timestamp at most ``tolerance`` seconds from ``now``; otherwise
        :class:`VerificationError`. Only ``v1`` signatures are considered; any of them may
        match (rotation)."""
        found = {name.lower(): value for name, value in headers.items()}
        msg_id, stamp, signatures = (found.get(name, "") for name in HEADERS)
        if not (msg_id and stamp and signatures):
            raise VerificationError(f"missing header(s): {', '.join(HEADERS)} are required")
        if not _MSG_ID.fullmatch(msg_id):
            raise VerificationError(f"malformed {ID_HEADER}")
        if not _TIMESTAMP.fullmatch(stamp):
            raise VerificationError(f"malformed {TIMESTAMP_HEADER}: expected Unix seconds")
        timestamp = int(stamp)
        drift = timestamp - (time.time() if now is None else now)
        if drift < -tolerance:
            raise VerificationError(f"{TIMESTAMP_HEADER} is too old (replayed or delayed)")
        if drift > tolerance:
            raise VerificationError(f"{TIMESTAMP_HEADER} is too far in the future")
        expected = [
            base64.b64decode(signature(key, msg_id, timestamp, body).partition(",")[2])
            for key in self._keys
        ]
        for entry in signatures.split():
            version, _, encoded = entry.partition(",")
            if version != VERSION:
                continue
            try:
                given = base64.b64decode(encoded, validate=True)
            except binascii.Error:
                continue
            # Compare with every key, without stopping early: constant time per request.
            if sum(hmac.compare_digest(given, e) for e in expected):
                return msg_id
        raise VerificationError("no signature matches")
