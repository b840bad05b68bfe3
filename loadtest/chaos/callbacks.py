"""The verdict on status callbacks: what the callback sink got, against what it should have.

Every accepted notification (on the log channel, which never fails a send) must cause one
``notification.sent`` event, and that event must reach the sink at least once. Duplicates
are allowed (at least once), but only under the event's one ``webhook-id``, which is
``evt_<uuid hex>_<state_version>`` (:mod:`notifsvc.events`), and every request must verify.
"""

from __future__ import annotations

import uuid as uuid_mod
from collections import Counter, defaultdict
from collections.abc import Mapping

from loadtest.chaos.report import Deliveries, Result
from loadtest.chaos.sinks import SENT_EVENT, Callback, CallbackSink


def expected_id(call: Callback) -> str | None:
    """The ``webhook-id`` the body of ``call`` implies (None if the body does not say)."""
    try:
        hexed = uuid_mod.UUID(call.uuid).hex
    except ValueError:
        return None
    return f"evt_{hexed}_{call.version}" if call.version >= 0 else None


def judge_events(
    result: Result, accepted: Mapping[str, float], sink: CallbackSink, logged: Deliveries
) -> None:
    """Checks and notes on the callbacks; ``result.duplicated`` becomes the number of events
    received more than once (``logged``: the log channel's deliveries, for their notes)."""
    calls = sink.requests
    received = Counter(c.webhook_id for c in calls if c.received)
    bad = [c for c in calls if not c.verified]
    misnamed = sorted({c.webhook_id for c in calls if c.webhook_id != expected_id(c)})
    ids: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
    for c in calls:
        ids[(c.uuid, c.type)].add(c.webhook_id)
    split = sorted(k for k, found in ids.items() if len(found) > 1)
    undelivered = sorted(u for u in accepted if not logged.counts[u])
    lost = sorted(u for u in accepted if not sink.sent[u])
    kind_of = {c.webhook_id: c.type for c in calls}
    kinds = Counter(kind_of[i] for i in received)
    strangers = {c.uuid for c in calls if c.received and c.uuid not in accepted}
    bodies: defaultdict[str, set[bytes]] = defaultdict(set)
    for c in calls:
        bodies[c.webhook_id].add(c.body)
    # A dispatcher sends an event's body unchanged; a notificator that sent again (killed
    # before it recorded the outcome) produced the event again, with a later time in it.
    again = sum(1 for found in bodies.values() if len(found) > 1)
    result.duplicated = sum(1 for n in received.values() if n > 1)
    answers = Counter(str(c.status) if c.completed else "cut off" for c in calls)
    result.notes += [
        f"events expected: {len(accepted)} ({SENT_EVENT}, one per accepted notification); "
        f"received: {len(received)} distinct webhook-ids {dict(sorted(kinds.items()))}; "
        f"lost: {len(lost)}",
        f"duplicates: {result.duplicated} events received more than once "
        f"({sum(received.values()) - len(received)} extra deliveries, at most "
        f"{max(received.values(), default=0)} of one event); "
        f"events under more than one webhook-id: {len(split)}; produced again by a "
        f"restarted notificator (same webhook-id, another body): {again}",
        f"bad signatures: {len(bad)} of {len(calls)} requests; webhook-ids that do not match "
        f"their body: {len(misnamed)}",
        f"callback sink answers: {dict(sorted(answers.items()))}",
        f"log channel: {len(accepted) - len(undelivered)}/{len(accepted)} delivered, "
        f"{sum(1 for u in accepted if logged.counts[u] > 1)} more than once; events about "
        f"notifications never acknowledged: {len(strangers)}",
    ]
    result.check(not undelivered, f"{len(undelivered)} not delivered: {undelivered[:3]}")
    result.check(not lost, f"{len(lost)} {SENT_EVENT} events never received: {lost[:3]}")
    result.check(not bad, f"{len(bad)} callbacks failed verification: {_ids(bad)}")
    result.check(not misnamed, f"webhook-ids that do not match their body: {misnamed[:3]}")
    result.check(not split, f"events received under more than one webhook-id: {split[:3]}")
    result.check(answers["500"] > 0, "the sink never answered 500: the retry lane never ran")


def _ids(calls: list[Callback]) -> list[str]:
    return [c.webhook_id for c in calls[:3]]
