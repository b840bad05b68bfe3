"""The delay tiers' pure decisions: which tier, when a hop is taken up, never early."""

from __future__ import annotations

import itertools
import uuid

from hypothesis import given
from hypothesis import strategies as st

from notifsvc import headers, schedule, topics
from notifsvc.config import Settings
from notifsvc.deadletter import Message
from notifsvc.kafka import Record
from notifsvc.model import Notification
from notifsvc.schedule import Action

NOW = 1_800_000_000.0
SETTINGS = Settings()


def _n(send_at: float | None, expires_at: float | None = None) -> Notification:
    return Notification(
        uuid.uuid4(), "log", "ops", "hi", send_at=send_at, expires_at=expires_at, accepted_at=NOW
    )


def _record(message: Message) -> Record:
    topic, value, key, hop_headers = message
    return Record(topic, 0, 0, key, value, hop_headers, 0)


def test_tier_names_are_the_topics_tiers() -> None:
    assert [t.name for t in schedule.TIERS] == list(topics.DELAY_TIERS)
    assert all(a.delay < b.delay for a, b in itertools.pairwise(schedule.TIERS))


def test_tier_for_takes_the_longest_not_longer_than_the_time_left() -> None:
    assert schedule.tier_for(0.3).name == "1s"
    assert schedule.tier_for(-5).name == "1s"
    assert schedule.tier_for(10).name == "10s"
    assert schedule.tier_for(599).name == "1m"
    assert schedule.tier_for(86_399).name == "1h"
    assert schedule.tier_for(86_400 * 3).name == "1d"


def test_first_hop_parks_beyond_the_park_horizon() -> None:
    park = SETTINGS.schedule_park_after_seconds
    assert schedule.first_hop(SETTINGS, _n(NOW + park + 1), (), NOW) is None
    message = schedule.first_hop(SETTINGS, _n(NOW + park), (), NOW)
    assert message is not None
    assert message[0] == topics.delay(SETTINGS, "1d")


@given(st.floats(min_value=-10, max_value=7200), st.floats(min_value=0, max_value=30))
def test_a_hop_is_taken_up_no_later_than_due_and_never_released_early(
    remaining: float, late: float
) -> None:
    n = _n(NOW + remaining)
    message = schedule.hop(SETTINGS, n, (), NOW)
    tier = next(t for t in schedule.TIERS if message[0] == topics.delay(SETTINGS, t.name))
    hop_at = schedule.hop_at(_record(message), tier, NOW)
    assert hop_at <= max(NOW, n.send_at or NOW) + 0.001
    assert hop_at <= NOW + tier.delay + 0.001
    at = schedule.acts_at(n, hop_at) + late
    action = schedule.decide(n, hop_at, at)
    assert action is not Action.WAIT
    if action is Action.RELEASE:
        assert n.send_at is not None and n.send_at <= at


def test_wait_hop_release_expire() -> None:
    n = _n(NOW + 100)
    assert schedule.decide(n, NOW + 60, NOW) is Action.WAIT
    assert schedule.decide(n, NOW + 60, NOW + 60) is Action.HOP
    assert schedule.decide(n, NOW + 60, NOW + 100) is Action.RELEASE
    assert schedule.decide(_n(NOW + 100, NOW + 50), NOW + 60, NOW + 60) is Action.EXPIRE
    assert schedule.decide(_n(None), NOW + 60, NOW) is Action.RELEASE


def test_a_hop_header_from_a_clock_far_ahead_is_clamped() -> None:
    tier = schedule.TIERS[1]
    far = _record(("t", b"", None, ((headers.HOP_AT, b"9999999999"),)))
    assert schedule.hop_at(far, tier, NOW) == NOW + tier.delay + schedule.HOP_SLACK
    missing = _record(("t", b"", None, ()))
    assert schedule.hop_at(missing, tier, NOW) == NOW


def test_release_goes_to_the_lane_of_its_priority() -> None:
    n = _n(NOW)
    assert schedule.release(SETTINGS, n, ())[0] == topics.channel(SETTINGS, "log", "normal")
