"""``POST /notification`` without an API key or a span needs no ``Notification`` object
(``Validator.plain_record``): it answers and writes to the broker exactly what it does when
every request is validated in full."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast
from unittest import mock

import orjson
from aiohttp import streams, web
from aiohttp.test_utils import make_mocked_request
from hypothesis import example, given, settings
from hypothesis import strategies as st

from notifsvc import channels, topics, tracing
from notifsvc.api import handlers
from notifsvc.api.context import (
    API_KEY,
    GATE,
    INGRESS,
    PRODUCER,
    RECENT,
    SETTINGS,
    TRACING,
    VALIDATOR,
    Ingress,
)
from notifsvc.api.recent import RecentlyAccepted
from notifsvc.api.validation import Validator
from notifsvc.auth import Gate
from notifsvc.channels.email import EmailSettings
from notifsvc.config import Settings
from notifsvc.kafka import KafkaUnavailable, Producer
from unit import test_fast_paths

#: With the email channel on: it validates subjects beyond the base ``Channel.validate``.
SETTINGS_ = Settings(
    channels=frozenset({"log", "webhook", "email"}), max_body_bytes=2_000
).with_sections(EmailSettings(host="smtp.example.com", from_="ops@example.com"))


class FakeProducer:
    """Records each send; acknowledges it, or fails it as an unreachable broker would."""

    def __init__(self, *, down: bool = False) -> None:
        self.down = down
        self.sent: list[tuple[float, str, bytes, bytes | None, Any]] = []

    def send(
        self, topic: str, value: bytes, *, key: bytes | None = None, headers: Any = None
    ) -> asyncio.Future[None]:
        return self.send_within(0.0, topic, value, key=key, headers=headers)

    def send_within(
        self,
        within: float,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Any = None,
    ) -> asyncio.Future[None]:
        self.sent.append((within, topic, value, key, list(headers) if headers else None))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.down:
            future.set_exception(KafkaUnavailable("no acknowledgement within 5s"))
        else:
            future.set_result(None)
        return future


def _app(*, down: bool) -> tuple[web.Application, FakeProducer]:
    producer = FakeProducer(down=down)
    validator = Validator(
        channels.enabled(SETTINGS_), channels.disabled(SETTINGS_), clock=lambda: 1_765_000_000.25
    )
    app = web.Application()
    app[SETTINGS] = SETTINGS_
    app[PRODUCER] = cast(Producer, producer)
    app[VALIDATOR] = validator
    app[RECENT] = RecentlyAccepted(clock=lambda: 5.0)
    app[TRACING] = tracing.Tracing(SETTINGS_, "test")
    app[INGRESS] = Ingress.of(app)
    return app, producer


def _request(app: web.Application, body: bytes, headers: dict[str, str]) -> web.Request:
    protocol = mock.Mock(_reading_paused=False)
    payload = streams.StreamReader(protocol, 2**16, loop=asyncio.get_running_loop())
    payload.feed_data(body)
    payload.feed_eof()
    return make_mocked_request("POST", "/notification", headers=headers, app=app, payload=payload)


async def _answer(plain: bool, body: bytes, headers: dict[str, str], down: bool) -> tuple[Any, ...]:
    app, producer = _app(down=down)
    request = _request(app, body, headers)
    if plain:
        response = await handlers.post_notification(request)
    else:  # every request validated in full
        with mock.patch.object(app[VALIDATOR], "plain_record", return_value=None):
            response = await handlers.post_notification(request)
    assert isinstance(response.body, bytes)
    recent = sorted(app[RECENT]._accepted.items())
    return response.status, dict(response.headers), response.body, producer.sent, recent


#: Requests that mostly pass, with the edges of each rule (a body at the longest a channel
#: takes and one character over, an empty subject, one the email channel refuses, ...).
_NEAR_VALID = st.fixed_dictionaries(
    {
        "uuid": st.one_of(st.uuids().map(str), st.uuids().map(lambda u: str(u).upper())),
        "destination": st.sampled_from(["log", "LOG", "email", "Email", "webhook"]),
        "to": st.one_of(
            st.sampled_from(["ops", "x@example.com", " ", "", "https://hooks.example.com/x"]),
            st.text(max_size=5),
        ),
        "txt": st.one_of(
            st.sampled_from(["x", "x" * 65_536, "x" * 65_537, "é" * 65_537]),
            st.text(min_size=1, max_size=10),
        ),
    },
    optional={
        "subject": st.sampled_from(["", None, "s", "x" * 999, "a\nb", "\x00"]),
        "priority": st.sampled_from(["high", "LOW", "normal", None, "x"]),
    },
)


_UID = "0B5D7A4E-3F1C-4C39-9D3E-2F4D1C1B9A77"


def _dumps(data: object) -> bytes:
    """JSON as a client may send it (integers of any size, NaN written out)."""
    return json.dumps(data).encode()


_BODIES = st.one_of(
    _NEAR_VALID.map(_dumps),
    test_fast_paths._REQUESTS.map(_dumps),
    test_fast_paths._WIRE.map(_dumps),
    st.sampled_from([b"", b"{", b"[]", b"null", b'"x"', b"{}", b"[1]", b"\xff"]),
    st.binary(max_size=40),
    st.builds(lambda n: b'{"txt": "' + b"x" * n + b'"}', st.integers(1_900, 2_100)),
)
_HEADERS = st.one_of(
    st.just({"Content-Type": "application/json"}),
    st.sampled_from(
        [
            {"Content-Type": "application/json; charset=utf-8"},
            {"Content-Type": "text/plain"},
            {"Content-Type": "application/json", "Content-Encoding": "compress"},
            {},
        ]
    ),
)


@settings(max_examples=500, deadline=None)
@given(_BODIES, _HEADERS, st.booleans())
def test_the_plain_path_answers_and_writes_what_the_general_path_does(
    body: bytes, headers: dict[str, str], down: bool
) -> None:
    headers = headers | {"Content-Length": str(len(body))}

    async def both() -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        return (
            await _answer(True, body, headers, down),
            await _answer(False, body, headers, down),
        )

    plain, general = asyncio.run(both())
    assert plain == general


@settings(max_examples=500)
@given(st.one_of(_NEAR_VALID, test_fast_paths._REQUESTS, test_fast_paths._WIRE))
@example({"uuid": _UID, "destination": "log", "to": "ops", "txt": "x", "priority": "LOW"})
@example({"uuid": _UID, "destination": "log", "to": "ops", "txt": "x", "subject": ""})
@example({"uuid": _UID, "destination": "email", "to": "a@b.co", "txt": "x", "subject": "a\nb"})
@example({"uuid": _UID, "destination": "log", "to": "ops", "txt": "x" * 65_537})
def test_a_plain_record_is_what_the_fast_path_accepts_and_encodes(data: dict[str, object]) -> None:
    validator = _app(down=False)[0][VALIDATOR]
    record = validator.plain_record(data)
    n = validator._fast(data)
    if record is None:  # only where the fast path declines, or the channel validates itself
        assert n is None or n.channel == "email"
        return
    assert n is not None
    assert record == (str(n.uuid), n.uuid.int, n.encode())


@given(st.uuids(), st.sampled_from(["log", "LOG", "Log"]))
def test_an_ordinary_request_is_accepted_by_the_plain_path(uid: object, name: str) -> None:
    body = orjson.dumps({"uuid": str(uid), "destination": name, "to": "ops", "txt": "disk full"})
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    assert _app(down=False)[0][VALIDATOR].plain_record(orjson.loads(body)) is not None
    status, _, answer, sent, recent = asyncio.run(_answer(True, body, headers, False))
    assert status == 202 and orjson.loads(answer) == {"uuid": str(uid), "status": "accepted"}
    [(_, topic, value, key, _)] = sent
    assert topic == topics.outstanding(SETTINGS_) and key == str(uid).encode()
    assert orjson.loads(value)["uuid"] == str(uid) and len(recent) == 1


async def test_a_request_takes_the_plain_path_only_without_keys_and_tracing() -> None:
    app, producer = _app(down=False)
    uid = "0b5d7a4e-3f1c-4c39-9d3e-2f4d1c1b9a77"
    body = orjson.dumps({"uuid": uid, "destination": "log", "to": "o", "txt": "t"})
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    validator = app[VALIDATOR]
    with mock.patch.object(validator, "plain_record", wraps=validator.plain_record) as plain:
        response = await handlers.post_notification(_request(app, body, headers))
        assert response.status == 202 and plain.call_count == 1
        keyed = _request(app, body, headers)
        keyed[API_KEY] = bytes(range(32))  # authenticated: its key's id is stamped on it
        response = await handlers.post_notification(keyed)
        assert response.status == 202 and plain.call_count == 1
        span = mock.Mock()  # traced: the span is annotated with what was validated in full
        data = orjson.loads(body)
        traced = handlers._accepted(_request(app, body, headers), app[INGRESS], data, span, False)
    assert plain.call_count == 1 and traced[0] == uid
    span.set_attributes.assert_called_once()
    assert orjson.loads(producer.sent[1][2])["client"] == bytes(range(8)).hex()


class OpenGate:
    """Admits every batch (the key's budget is the gate's own unit tests' matter)."""

    async def admit(self, key: bytes, cost: int = 1, *, prepaid: int = 0) -> None:
        return None


async def test_a_batch_writes_what_single_requests_write_and_stamps_a_keys_items() -> None:
    headers = {"Content-Type": "application/json"}
    items: list[dict[str, object]] = [
        {
            "uuid": f"0b5d7a4e-3f1c-4c39-9d3e-2f4d1c1b9a7{i}",
            "destination": "log",
            "to": "o",
            "txt": f"t{i}",
        }
        for i in range(3)
    ]
    items.insert(1, {"destination": "carrier-pigeon", "to": "o", "txt": "t"})  # rejected
    single, one_by_one = _app(down=False)
    for item in items[:1] + items[2:]:
        await handlers.post_notification(_request(single, orjson.dumps(item), headers))
    app, producer = _app(down=False)
    with mock.patch.object(
        app[VALIDATOR], "plain_record", wraps=app[VALIDATOR].plain_record
    ) as plain:
        response = await handlers.post_notifications(_request(app, orjson.dumps(items), headers))
    assert plain.call_count == 4  # the rejected item, too, then validated in full
    answer = json.loads(cast(bytes, response.body))
    assert [r["status"] for r in answer["results"]] == [
        "accepted",
        "rejected",
        "accepted",
        "accepted",
    ]
    assert [s[1:4] for s in producer.sent] == [s[1:4] for s in one_by_one.sent]
    assert len(app[RECENT]) == 3
    keyed_app, keyed = _app(down=False)
    keyed_app[GATE] = cast(Gate, OpenGate())
    request = _request(keyed_app, orjson.dumps(items[2:]), headers)
    request[API_KEY] = bytes(range(32))
    with mock.patch.object(keyed_app[VALIDATOR], "plain_record") as never:
        await handlers.post_notifications(request)
    assert never.call_count == 0 and len(keyed.sent) == 2
    assert all(orjson.loads(s[2])["client"] == bytes(range(8)).hex() for s in keyed.sent)


async def test_a_batch_the_broker_never_acknowledged_is_unavailable_and_not_remembered() -> None:
    items = [
        {"uuid": f"0b5d7a4e-3f1c-4c39-9d3e-2f4d1c1b9a7{i}", "destination": "log", "to": "o"}
        | {"txt": "t"}
        for i in range(2)
    ]
    app, producer = _app(down=True)
    body = orjson.dumps(items)
    response = await handlers.post_notifications(
        _request(app, body, {"Content-Type": "application/json"})
    )
    answer = json.loads(cast(bytes, response.body))
    assert response.status == 503 and len(producer.sent) == 2
    assert [r["status"] for r in answer["results"]] == ["unavailable", "unavailable"]
    assert len(app[RECENT]) == 0  # a retry with the same uuids is not taken for a duplicate
