"""The chaos harness's infrastructure: :class:`~notifsvc.dev.infra.LocalInfra`, whose broker
and database scenarios may stop and start again, and a :class:`Lane` per scenario (a fresh
database, a topic prefix, a folder for logs and the log channel's file), so that scenarios
never see each other's messages even though they share one broker and one server.
"""

from __future__ import annotations

from notifsvc.dev.infra import Lane, LocalInfra

ChaosInfra = LocalInfra

#: Every scenario's settings unless it says otherwise.
LANE_SETTINGS: dict[str, object] = {
    "topic_partitions": 4,
    "kafka_session_timeout_ms": 6000,
    "webhook_allowed_hosts": "127.0.0.1",
    "produce_timeout_ms": 2000,
    "max_attempts": 5,
    "send_timeout_ms": 2000,
}

__all__ = ["LANE_SETTINGS", "ChaosInfra", "Lane"]
