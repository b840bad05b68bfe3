"""A load test's verdict: accepted, delivered, lost, duplicates, latencies, chart series."""

from __future__ import annotations

import math

from loadtest import outcome, report
from loadtest.outcome import Stored


def _rows() -> list[outcome.Row]:
    return [
        (100.0, 2.0, 202, "a", 0),
        (100.5, 4.0, 202, "b", 0),
        (101.0, 3.0, 202, "a", 1),  # a client retry of "a"
        (101.5, 9.0, 503, "c", 0),  # not accepted: its delivery is not owed
        (102.0, 5.0, 202, "d", 0),
    ]


def _stored() -> dict[str, Stored]:
    return {
        "a": Stored("a", "sent", 100.0, 100.2),
        "b": Stored("b", "sent", 100.5, 101.0),
        "c": Stored("c", "sent", 101.5, 101.6),
        "d": Stored("d", "forwarded", 102.0, None),
    }


def test_summary_counts_lost_and_duplicates_against_accepted_uuids() -> None:
    s = outcome.summarize(_rows(), _stored(), delivered={"a", "b", "c"}, duplicates=1)
    assert (s["requests"], s["accepted"], s["accepted_unique"], s["reposts"]) == (5, 4, 3, 1)
    assert s["not_accepted"] == {"503": 1}
    assert s["accepted_per_s"] == 2.0  # 4 accepted over 100.0 .. 102.0
    assert s["delivered"] == 2 and s["lost"] == 1 and s["lost_examples"] == ["d"]
    assert s["duplicates_delivered"] == 1 and s["checked"] == 3
    assert s["end_to_end_ms"]["count"] == 2
    assert math.isclose(s["end_to_end_ms"]["p50"], 350.0)
    assert math.isclose(s["delivered_per_s"], 2 / 0.8)


def test_lost_only_counts_checked_uuids() -> None:
    s = outcome.summarize(_rows(), _stored(), {"a"}, None, checked={"a", "b"})
    assert (s["lost"], s["checked"], s["duplicates_delivered"]) == (1, 2, None)


def test_series_buckets_accepts_and_deliveries_per_second() -> None:
    series = outcome.series(_rows(), _stored(), start=100.0)
    assert series["t"] == [0.0, 1.0, 2.0]
    assert series["accepted_per_s"] == [2.0, 1.0, 1.0]
    assert series["delivered_per_s"] == [1.0, 2.0, 0.0]
    assert series["accept_p50_ms"][0] == 3.0
    assert math.isnan(series["e2e_p99_ms"][2])


def test_locust_totals_and_dev_dsn_parsing() -> None:
    csv_text = (
        "Type,Name,Request Count,Failure Count,Median Response Time\n"
        "POST,POST /notification,120,3,4\n"
        ",Aggregated,120,3,4\n"
    )
    assert outcome.locust_totals(csv_text) == (120, 3)
    assert outcome.locust_totals("") == (0, 0)
    logged = (
        "INFO 1 notifsvc.dev.postgres: postgres ready at postgresql://p@/n?host=/x&port=5 (pid 7)"
    )
    assert outcome.dev_dsn(logged) == "postgresql://p@/n?host=/x&port=5"
    assert outcome.dev_dsn("NOTIFSVC_DATABASE_URL=postgresql://u@h/db\n") == "postgresql://u@h/db"
    as_json = '{"level":"info","msg":"postgres ready at postgresql://p@/n?host=/x&port=5"}'
    assert outcome.dev_dsn(as_json) == "postgresql://p@/n?host=/x&port=5"
    assert outcome.dev_dsn("starting") is None


def test_load_text_names_every_figure() -> None:
    s = outcome.summarize(_rows(), _stored(), {"a", "b", "c"}, 1)
    config = {"users": 5, "user_rate": 0.0, "duration": 10, "mix": "log", "repost_share": 0.1}
    text = report.load_text({"mode": "local", "config": config, "summary": s})
    assert "unpaced" in text and "lost          1" in text and "503: 1" in text
    assert "duplicates    1" in text
