"""Status-callback events: which ones a pass causes, and that their versions only grow."""

from __future__ import annotations

import uuid

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifsvc.attempts import Attempt, AttemptOutcome
from notifsvc.config import Settings
from notifsvc.delivery import Delivery
from notifsvc.events import Event, EventType, InvalidEvent, events_for, expired_event, messages
from notifsvc.model import Notification, State

URL = "https://cb.example/status"
T, P, S, H = (
    AttemptOutcome.TRANSIENT,
    AttemptOutcome.PERMANENT,
    AttemptOutcome.SENT,
    AttemptOutcome.THROTTLED,
)


def note(callback: str | None = URL) -> Notification:
    return Notification(
        uuid.uuid4(),
        "sms",
        "+14155552671",
        "x",
        accepted_at=1.8e9,
        callback_url=callback,
        client="0123456789abcdef",
    )


def delivery(
    n: Notification, state: State, outcomes: list[AttemptOutcome], prior: int = 0
) -> Delivery:
    log, number, seq = [], prior, 0
    for o in outcomes:
        if o is H:
            seq += 1
            log.append(Attempt(n.uuid, number + 1, seq, o, 1.8e9, 1.8e9 + 1, "sms"))
            continue
        number += 1
        log.append(Attempt(n.uuid, number, 0, o, 1.8e9, 1.8e9 + 1, "sms", status=500, error="boom"))
    counted = sum(o is not H for o in outcomes)
    error = None if state is State.SENT else "twilio answered HTTP 400: bad"
    return Delivery(n, state, counted, prior + counted, error, log=tuple(log))


def kinds(events: list[Event]) -> list[tuple[EventType, int]]:
    return [(e.type, e.data["state_version"]) for e in events]


def test_no_callback_url_no_events() -> None:
    assert events_for(delivery(note(None), State.SENT, [S]), max_attempts=5) == []


def test_failures_then_sent() -> None:
    events = events_for(delivery(note(), State.SENT, [T, H, T, S]), max_attempts=5)
    assert kinds(events) == [
        (EventType.ATTEMPT_FAILED, 2),
        (EventType.ATTEMPT_FAILED, 4),
        (EventType.SENT, 7),
    ]
    first = events[0].data
    assert first["attempt"] == 1 and first["max_attempts"] == 5 and first["retryable"]
    assert events[-1].data["state"] == "sent" and events[-1].data["attempts"] == 3


def test_a_permanent_failure_is_one_failed_event_with_its_reason() -> None:
    [event] = events_for(delivery(note(), State.FAILED, [P]), max_attempts=5)
    assert event.type is EventType.FAILED and event.data["reason"] == "error"
    assert event.data["state_version"] == 3 and "HTTP 400" in event.data["error"]


def test_a_pass_postponed_to_the_retry_lane_tells_its_failures_only() -> None:
    events = events_for(delivery(note(), State.FORWARDED, [T, T], prior=1), max_attempts=5)
    assert kinds(events) == [(EventType.ATTEMPT_FAILED, 4), (EventType.ATTEMPT_FAILED, 6)]


def test_an_event_survives_the_topic_and_a_bad_record_is_refused() -> None:
    [event] = events_for(delivery(note(), State.SENT, [S]), max_attempts=5)
    assert Event.decode(event.encode()) == event
    assert event.id == f"evt_{event.data['uuid'].replace('-', '')}_3"
    assert event.key == event.data["uuid"].encode()
    for raw in (None, b"", b"[]", b'{"id": "x"}', b'{"id":"x","type":"nope","url":"u","data":{}}'):
        with pytest.raises(InvalidEvent):
            Event.decode(raw)


passes = st.lists(
    st.tuples(
        st.lists(st.sampled_from([T, H]), max_size=4),
        st.sampled_from([State.FORWARDED, State.SENT, State.FAILED, State.EXPIRED]),
    ),
    min_size=1,
    max_size=4,
)


@given(passes)
def test_versions_only_grow_across_passes_and_the_end_is_last(
    plan: list[tuple[list[AttemptOutcome], State]],
) -> None:
    """Whatever the passes, a receiver ordering by state_version sees the end last, and no
    two events share an id (so its de-duplication by webhook-id never drops a real one)."""
    n, prior, seen = note(), 0, []
    for outcomes, state in plan:
        final = [*outcomes, S] if state is State.SENT else outcomes
        if state is State.FAILED:
            final = [*outcomes, P]
        d = delivery(n, state, final, prior)
        seen += events_for(d, max_attempts=99)
        prior = d.total
        if state is not State.FORWARDED:
            break
    versions = [e.data["state_version"] for e in seen]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert len({e.id for e in seen}) == len(seen)
    ends = [e for e in seen if e.type is not EventType.ATTEMPT_FAILED]
    assert len(ends) <= 1 and (not ends or seen[-1] is ends[0])


@given(passes, st.lists(st.sampled_from([T, H]), max_size=4))
def test_an_expiry_after_a_replayed_failure_still_has_a_newer_version(
    plan: list[tuple[list[AttemptOutcome], State]], later: list[AttemptOutcome]
) -> None:
    """A failed notification an operator requeued may then expire, with or without new
    attempts: its ``expired`` event comes after (and differs from) everything before."""
    n, prior, seen = note(), 0, []
    for outcomes, _ in plan:
        d = delivery(n, State.FORWARDED, outcomes, prior)
        seen += events_for(d, max_attempts=99)
        prior = d.total
    d = delivery(n, State.FAILED, [P], prior)
    seen += events_for(d, max_attempts=99)
    seen += events_for(delivery(n, State.EXPIRED, later, d.total), max_attempts=99)
    versions = [e.data["state_version"] for e in seen]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert len({e.id for e in seen}) == len(seen)
    assert seen[-1].type is EventType.EXPIRED


def test_an_expired_end_is_one_expired_event_after_the_attempts_failures() -> None:
    n = msgspec.structs.replace(note(), expires_at=1.8e9 + 60)
    events = events_for(delivery(n, State.EXPIRED, [T, T], prior=1), max_attempts=5)
    assert kinds(events) == [
        (EventType.ATTEMPT_FAILED, 4),
        (EventType.ATTEMPT_FAILED, 6),
        (EventType.EXPIRED, 8),
    ]
    end = events[-1].data
    assert end["state"] == "expired" and end["reason"] == "expired" and end["attempts"] == 3
    assert end["expires_at"] == "2027-01-15T08:01:00.000+00:00"


def test_the_expired_event_of_a_row_a_stage_expires() -> None:
    n = msgspec.structs.replace(note(), expires_at=1.8e9 + 60)
    event = expired_event(n, attempts=2, at=1.8e9 + 61)
    assert event is not None and event.type is EventType.EXPIRED
    assert event.id == f"evt_{n.uuid.hex}_6" and event.url == URL and event.client == n.client
    assert event.data["at"] == "2027-01-15T08:01:01.000+00:00"
    assert Event.decode(event.encode()) == event
    assert expired_event(note(None)) is None
    [(topic, value, key, hop)] = messages(Settings(), [event, None])
    assert topic == "notifications.callbacks" and key == str(n.uuid).encode() and hop == ()
    assert Event.decode(value) == event
