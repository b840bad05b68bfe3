"""The fast paths decide nothing: what the validator's fast path accepts, and what a message's
plain decoding reads, the full paths give alike."""

from __future__ import annotations

import dataclasses
import uuid

import orjson
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
    assert dataclasses.replace(full, accepted_at=fast.accepted_at) == fast


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


@settings(max_examples=600)
@given(st.one_of(_WIRE, _ENCODED, _NEAR_PLAIN))
def test_a_plainly_decoded_message_is_what_parse_makes_of_it(data: dict[str, object]) -> None:
    plain = _decode_plain(data)
    if plain is None:
        return
    assert plain == parse(data, accepted_at=_accepted_at(data))


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
    assert _decode_plain(orjson.loads(n.encode())) == n == Notification.decode(n.encode())
