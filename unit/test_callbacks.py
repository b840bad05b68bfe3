"""The callback dispatcher's classification, backoff, failing-host circuit, next hops and
request headers, without a broker or a database (no I/O happens before start())."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import pytest
import standardwebhooks

from notifsvc import callbacks, deadletter, headers, topics
from notifsvc.batching import Postponed
from notifsvc.callbacks import (
    MAX_RETRY_DELAY,
    Circuit,
    Dispatcher,
    Outcome,
    Pending,
    Verdict,
    classify,
    retry_delay,
    settle,
)
from notifsvc.config import CallbackClients, Secret, Settings
from notifsvc.events import Event, EventType, event_id, iso
from notifsvc.kafka import Headers, Record
from notifsvc.signing import SigningSecrets, generate_secret

DEFAULT_SECRET = generate_secret()
CLIENT_SECRET = generate_secret()
CLIENT = "0123456789abcdef"
SETTINGS = Settings(
    kafka_bootstrap="127.0.0.1:9",
    database_url=Secret("postgresql://nowhere/x"),
    topic_prefix="t.",
    callback_allowed_hosts=frozenset({"hooks.example.com"}),
    callback_retry_delay_ms=10_000,
    callback_max_attempts=4,
    callback_secret=SigningSecrets(DEFAULT_SECRET),
    callback_clients=CallbackClients(f'{{"{CLIENT}": {{"secrets": "{CLIENT_SECRET}"}}}}'),
)
NOW = 1_700_000_000.0


def event(
    url: str = "https://hooks.example.com/cb?token=s3cret", client: str | None = None
) -> Event:
    uid = uuid.uuid4()
    data = {"uuid": str(uid), "channel": "log", "state": "sent", "state_version": 3, "at": iso(NOW)}
    return Event(event_id(uid, 3), EventType.SENT, url, client, data)


def record(
    value: bytes | None, hdrs: Headers = (), topic: str = "t.notifications.callbacks"
) -> Record:
    return Record(topic, 1, 42, b"key", value, hdrs, 0)


def pending(prior: int = 0, passes: int = 0) -> Pending:
    e = event()
    return Pending(record(e.encode()), e, e.body(), prior, passes)


def header(message: tuple[str, bytes, bytes | None, Headers], name: str) -> bytes | None:
    return dict(message[3]).get(name)


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_is_delivered(status: int) -> None:
    assert classify(status, {}, "", "cb").outcome is Outcome.DELIVERED


def test_410_means_the_url_is_gone() -> None:
    verdict = classify(410, {}, "unsubscribed", "callback to h")
    assert verdict.outcome is Outcome.GONE and "HTTP 410: unsubscribed" in verdict.reason


@pytest.mark.parametrize("status", [301, 302, 307, 308, 408, 425, 429, 500, 502, 503, 504, 599])
def test_redirects_timeouts_throttling_and_5xx_are_retried(status: int) -> None:
    assert classify(status, {}, "", "cb").outcome is Outcome.RETRIED


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 413, 422])
def test_other_4xx_fail_at_once(status: int) -> None:
    verdict = classify(status, {}, "x" * 1000, "callback to h")
    assert verdict.outcome is Outcome.FAILED
    assert verdict.reason.startswith(f"callback to h answered HTTP {status}: ")
    assert len(verdict.reason) < 300  # the answer is quoted, not all of it


def test_retry_after_is_honoured_and_capped() -> None:
    assert classify(429, {"Retry-After": "120"}, "", "cb").retry_after == 120.0
    assert classify(503, {"Retry-After": "999999"}, "", "cb").retry_after == MAX_RETRY_DELAY
    assert classify(503, {"Retry-After": "soon"}, "", "cb").retry_after == 0.0


def test_the_retry_delay_doubles_per_pass_and_is_capped() -> None:
    assert [retry_delay(SETTINGS, p) for p in range(4)] == [10.0, 20.0, 40.0, 80.0]
    assert retry_delay(SETTINGS, 60) == MAX_RETRY_DELAY
    assert retry_delay(SETTINGS, 0, retry_after=300.0) == 300.0  # the receiver's wish
    assert retry_delay(SETTINGS, 3, retry_after=5.0) == 80.0  # never sooner than the policy


def test_a_retry_lane_record_is_due_when_it_says_unless_absurdly_late() -> None:
    assert callbacks.due(record(b"", ((headers.NOT_BEFORE, b"%f" % (NOW + 30)),)), now=NOW) == (
        NOW + 30
    )
    far = NOW + MAX_RETRY_DELAY + 3600
    assert callbacks.due(record(b"", ((headers.NOT_BEFORE, b"%f" % far),)), now=NOW) == 0.0
    assert callbacks.due(record(b"", ((headers.NOT_BEFORE, b"nan"),)), now=NOW) == 0.0
    assert callbacks.due(record(b""), now=NOW) == 0.0


def test_a_retried_event_goes_to_the_retry_lane_due_later_with_its_pass_counted() -> None:
    item = pending(prior=1, passes=2)
    outcome, message = settle(SETTINGS, item, Verdict(Outcome.RETRIED, "HTTP 503"), now=NOW)
    assert outcome is Outcome.RETRIED and message is not None
    topic, value, key, _ = message
    assert topic == topics.callbacks(SETTINGS, "retry")
    assert value == item.record.value and key == b"key"
    assert header(message, headers.ATTEMPTS) == b"2"
    assert header(message, headers.PASSES) == b"3"
    assert float(header(message, headers.NOT_BEFORE) or 0) == pytest.approx(NOW + 40.0)


def test_retry_after_sets_the_due_time_when_longer() -> None:
    verdict = Verdict(Outcome.RETRIED, "HTTP 429", retry_after=600.0)
    _, message = settle(SETTINGS, pending(), verdict, now=NOW)
    assert message is not None
    assert float(header(message, headers.NOT_BEFORE) or 0) == pytest.approx(NOW + 600.0)


def test_the_last_attempt_gives_up_into_the_dlq() -> None:
    item = pending(prior=SETTINGS.callback_max_attempts - 1, passes=3)
    outcome, message = settle(SETTINGS, item, Verdict(Outcome.RETRIED, "HTTP 503"), now=NOW)
    assert outcome is Outcome.FAILED and message is not None
    assert message[0] == topics.callbacks_dlq(SETTINGS)
    assert header(message, deadletter.REASON) == b"gave up after 4 attempts: HTTP 503"
    assert header(message, headers.ATTEMPTS) == b"4"


def test_a_refused_event_goes_to_the_dlq_at_once_with_its_source() -> None:
    item = pending()
    outcome, message = settle(SETTINGS, item, Verdict(Outcome.FAILED, "HTTP 400: no"), now=NOW)
    assert outcome is Outcome.FAILED and message is not None
    assert message[0] == topics.callbacks_dlq(SETTINGS)
    assert header(message, deadletter.REASON) == b"HTTP 400: no"
    assert header(message, deadletter.STAGE) == b"callbacks"
    assert header(message, deadletter.SOURCE_OFFSET) == b"42"
    assert header(message, headers.ATTEMPTS) == b"1"


@pytest.mark.parametrize("outcome", [Outcome.DELIVERED, Outcome.GONE])
def test_delivered_and_gone_events_go_nowhere(outcome: Outcome) -> None:
    assert settle(SETTINGS, pending(), Verdict(outcome), now=NOW) == (outcome, None)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_host_fails_for_a_while_after_a_timeout_until_it_answers() -> None:
    clock = Clock()
    circuit = Circuit(30.0, clock=clock)
    assert not circuit.failing("h:1")
    circuit.trip("h:1")
    clock.now += 29.9
    assert circuit.failing("h:1") and not circuit.failing("other")
    clock.now += 0.2
    assert not circuit.failing("h:1")  # held long enough: tried again
    circuit.trip("h:1")
    circuit.heal("h:1")
    assert not circuit.failing("h:1")


def test_the_retry_lane_skips_a_host_only_once_it_failed_in_the_same_batch() -> None:
    clock = Clock()
    circuit = Circuit(30.0, clock=clock)
    circuit.trip("h:1")
    clock.now += 1
    batch_started = clock.now
    assert circuit.failing("h:1") and not circuit.failing("h:1", since=batch_started)
    circuit.trip("h:1")
    assert circuit.failing("h:1", since=batch_started)


def test_records_that_are_not_events_or_target_other_hosts_are_dead_lettered() -> None:
    dispatcher = Dispatcher(SETTINGS)
    good = event()
    elsewhere = event("http://169.254.169.254/latest/meta-data")
    no_timestamp = Event("evt_1", EventType.SENT, good.url, None, {"uuid": "u"})
    hdrs: Headers = ((headers.ATTEMPTS, b"2"), (headers.PASSES, b"x"))
    records = [
        record(b"{not json"),
        record(None),
        record(elsewhere.encode()),
        record(no_timestamp.encode()),
        record(good.encode(), hdrs),
    ]
    items, poison = dispatcher._decode(records)
    assert [(i.event, i.prior, i.passes) for i in items] == [(good, 2, 0)]
    assert {m[0] for m in poison} == {topics.callbacks_dlq(SETTINGS)}
    reasons = [header(m, deadletter.REASON) or b"" for m in poison]
    assert reasons[0].startswith(b"not a callback event") and len(reasons) == 4
    assert b"169.254.169.254" in reasons[2] and b"NOTIFSVC_CALLBACK_ALLOWED_HOSTS" in reasons[2]
    assert b"meta-data" not in reasons[2]


def verify(secret: str, e: Event, sent: dict[str, str]) -> None:
    standardwebhooks.Webhook(secret).verify(e.body(), sent)


def test_requests_are_signed_with_the_clients_secrets_else_the_default_ones() -> None:
    dispatcher = Dispatcher(SETTINGS)
    mine, anyone = event(client=CLIENT), event(client="fedcba9876543210")
    signed = dispatcher.request_headers(mine, mine.body())
    assert signed["webhook-id"] == mine.id and signed["Content-Type"] == "application/json"
    verify(CLIENT_SECRET, mine, signed)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        verify(DEFAULT_SECRET, mine, signed)
    verify(DEFAULT_SECRET, anyone, dispatcher.request_headers(anyone, anyone.body()))


def test_without_any_secret_requests_carry_id_and_timestamp_unsigned() -> None:
    plain = dataclasses.replace(SETTINGS, callback_secret=None, callback_clients=None)
    e = event()
    sent = Dispatcher(plain).request_headers(e, e.body())
    assert sent["webhook-id"] == e.id and "webhook-timestamp" in sent
    assert "webhook-signature" not in sent


async def test_fresh_events_to_a_failing_host_are_postponed_without_a_request() -> None:
    dispatcher = Dispatcher(SETTINGS)
    item = pending()
    dispatcher.circuit.trip(item.host)
    verdict = await dispatcher._try("normal", item, dispatcher.circuit.clock())
    assert verdict.outcome is Outcome.RETRIED and verdict.reason.startswith("not tried")
    # The retry lane probes it (here: the dispatcher is not started, so it cannot).
    probe = await dispatcher._try("retry", pending(), dispatcher.circuit.clock())
    assert "not started" in probe.reason


async def test_a_retry_batch_not_due_is_postponed_when_stopping() -> None:
    dispatcher = Dispatcher(SETTINGS, clock=lambda: NOW)
    stopping = asyncio.Event()
    stopping.set()
    dispatcher._stopping = stopping
    later = record(b"", ((headers.NOT_BEFORE, b"%f" % (NOW + 30)),))
    with pytest.raises(Postponed):
        await dispatcher._until_due([later])
    await dispatcher._until_due([record(b"", ((headers.NOT_BEFORE, b"%f" % (NOW - 1)),))])
