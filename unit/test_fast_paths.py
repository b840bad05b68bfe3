"""The fast paths decide nothing: what the validator's fast path accepts, and what a message's
plain decoding reads, the full paths give alike."""

from __future__ import annotations

import json
import uuid

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifsvc import model
from notifsvc.api.validation import Validator
from notifsvc.config import Settings
from notifsvc.model import InvalidNotification, Notification, _accepted_at, _decode_plain, parse

VALIDATOR = Validator.from_settings(Settings(channels=frozenset({"log", "webhook", "email"})))

_UUIDS = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    st.uuids().map(lambda u: f"{{{u}}}"),
    st.uuids().map(lambda u: u.hex),
    st.text(max_size=40),
)
_NAMES = st.sampled_from(
    ["log", "LOG", "Log", " log", "log\n", "webhook", "sms", "l\u043eg", "ema\u0130l"]
)
_TEXT = st.one_of(
    st.sampled_from(["ops-team", "", "a\x00b", "https://hooks.example.com/x", "x@example.com"]),
    st.text(max_size=30),
)
_VALUES = st.one_of(_TEXT, st.none(), st.integers(), st.booleans(), st.lists(st.integers()))
_PRIORITIES = st.one_of(
    st.sampled_from(["high", "LOW", "Normal", " high", "urgent", "hİgh", "\u017fow"]), _VALUES
)
_REQUESTS = st.fixed_dictionaries(
    {"uuid": _UUIDS, "destination": _NAMES, "to": _TEXT, "txt": _TEXT},
    optional={
        "subject": _VALUES,
        "priority": _PRIORITIES,
        "callback_url": _VALUES,
        "accepted_at": st.floats(),
        "other": _VALUES,
    },
)


def _full(data: object) -> Notification | None:
    try:
        return VALIDATOR._validate(data)
    except InvalidNotification:
        return None


@settings(max_examples=400)
@given(_REQUESTS)
def test_what_the_fast_path_accepts_the_full_path_accepts_alike(data: dict[str, object]) -> None:
    fast = VALIDATOR._fast(data)
    if fast is None:
        return
    full = _full(data)
    assert full is not None
    assert msgspec.structs.replace(full, accepted_at=fast.accepted_at) == fast


@given(st.uuids(), st.sampled_from(["log", "LOG"]), st.sampled_from([None, "high", "LOW"]))
def test_an_ordinary_request_takes_the_fast_path(
    uid: uuid.UUID, name: str, priority: str | None
) -> None:
    data = {"uuid": str(uid), "destination": name, "to": "ops", "txt": "disk full"}
    if priority is not None:
        data["priority"] = priority
    assert VALIDATOR._fast(data) is not None
    assert VALIDATOR.validate(data).channel == "log"


_WIRE = st.fixed_dictionaries(
    {"uuid": _UUIDS, "destination": _NAMES, "to": _TEXT, "txt": _TEXT},
    optional={
        "subject": _VALUES,
        "priority": _PRIORITIES,
        "callback_url": _VALUES,
        "accepted_at": st.one_of(st.floats(), st.integers(), st.none(), st.booleans()),
        "send_at": st.one_of(st.floats(), st.integers(), st.none(), st.booleans(), _TEXT),
        "expires_at": st.one_of(st.floats(), st.integers(), st.none(), st.lists(st.integers())),
        "client": _VALUES,
        "other": _VALUES,
    },
)


#: What ``encode`` writes (a valid uuid, a usable ``accepted_at`` and priority), and the
#: same with one field set to any value: these reach the end of the plain path's checks.
_ENCODED = st.fixed_dictionaries(
    {
        "uuid": st.uuids().map(str),
        "destination": st.sampled_from(["log", "webhook"]),
        "to": _TEXT,
        "txt": _TEXT,
        "priority": st.sampled_from(["high", "normal", "low"]),
        "accepted_at": st.floats(0, 5e9),
    },
    optional={
        "subject": _TEXT,
        "callback_url": _TEXT,
        "client": _TEXT,
        "send_at": st.floats(0, 5e9),
        "expires_at": st.floats(0, 5e9),
    },
)
_ANY_VALUE = st.one_of(_VALUES, _PRIORITIES, st.floats(), st.integers(0, 5))
_NEAR_PLAIN = st.tuples(_ENCODED, st.sampled_from(sorted(model._WIRE)), _ANY_VALUE).map(
    lambda t: {**t[0], t[1]: t[2]}
)


def _json(data: dict[str, object]) -> bytes | None:
    """``data`` as JSON (the standard library's encoder writes any int); None for NaN."""
    try:
        return json.dumps(data, allow_nan=False).encode()
    except ValueError:
        return None


@settings(max_examples=600)
@given(st.one_of(_WIRE, _ENCODED, _NEAR_PLAIN))
def test_a_plainly_decoded_message_is_what_parse_makes_of_it(data: dict[str, object]) -> None:
    raw = _json(data)
    plain = None if raw is None else _decode_plain(raw)
    if raw is None or plain is None:
        return
    read = orjson.loads(raw)  # what the full path reads: it must read the same message
    assert plain == parse(read, accepted_at=_accepted_at(read))


@given(
    st.uuids(),
    st.sampled_from([None, "https://hooks.example.com/x"]),
    st.sampled_from([None, "ab12"]),
)
def test_what_encode_writes_is_decoded_plainly(
    uid: uuid.UUID, callback: str | None, client: str | None
) -> None:
    n = Notification(
        uid, "log", "ops", "disk full", "s", accepted_at=1.5, callback_url=callback, client=client
    )
    assert _decode_plain(n.encode()) == n == Notification.decode(n.encode())


def _read_in_full(raw: bytes) -> Notification | str:
    """What the full path (orjson, then :func:`parse`) makes of a message: the notification,
    or "invalid"."""
    try:
        data = orjson.loads(raw)
        return parse(data, accepted_at=_accepted_at(data))
    except (orjson.JSONDecodeError, InvalidNotification):
        return "invalid"


def _decoded(raw: bytes) -> Notification | str:
    try:
        return Notification.decode(raw)
    except InvalidNotification:
        return "invalid"


#: Messages as ``encode`` writes them, and with one field set to any value.
_MESSAGES = st.one_of(
    st.builds(
        lambda u, s, c: Notification(u, "log", "ops", "disk \u00e9", s, accepted_at=1.5, client=c),
        st.uuids(),
        st.none() | st.just("s"),
        st.none() | st.just("ab12"),
    ).map(Notification.encode),
    st.one_of(_ENCODED, _NEAR_PLAIN).map(_json).filter(lambda raw: raw is not None),
)
_JUNK = st.sampled_from(
    [
        *(b"\xff", b"\xc3", b"\\ud800", b"\xef\xbb\xbf", b" x", b",", b"\x00", b"1", b"-0", b"e9"),
        *(b',"to":"again"', b',"accepted_at":1', b',"priority":"HIGH"', b',"uuid":"x"'),
    ]
) | st.binary(max_size=3)


@settings(max_examples=600)
@given(_MESSAGES, st.integers(0, 200), _JUNK)
def test_any_bytes_spliced_into_a_message_decode_as_the_full_path_reads_them(
    raw: bytes, at: int, junk: bytes
) -> None:
    """msgspec reads a message's bytes itself: whatever it takes, orjson and parse take alike
    (invalid UTF-8, a lone surrogate, a byte-order mark, trailing bytes, a repeated key), to
    the type and sign of every value (compared by repr: -0.0 is not 0.0 there)."""
    spliced = raw[:at] + junk + raw[at:]
    assert repr(_decoded(spliced)) == repr(_read_in_full(spliced))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"uuid":"%s","destination":"log","to":"a","txt":"\xff"}',
        b'{"uuid":"%s","destination":"log","to":"a\\ud800","txt":"b"}',
        b'\xef\xbb\xbf{"uuid":"%s","destination":"log","to":"a","txt":"b"}',
        b'{"uuid":"%s","destination":"log","to":"a","txt":"b"} x',
        b'{"uuid":"%s","destination":"log","to":"a","to":"c","txt":"b"}',
        b'{"uuid":"%s","destination":"log","to":"a","txt":"b","accepted_at":1e400}',
    ],
)
def test_odd_bytes_decode_as_the_full_path_reads_them(raw: bytes) -> None:
    message = raw % str(uuid.uuid4()).encode()
    assert _decoded(message) == _read_in_full(message)
