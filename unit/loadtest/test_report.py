"""The single benchmark table."""

from __future__ import annotations

from loadtest import report


def _results() -> dict[str, object]:
    lat = {"count": 10, "p50": 4.0, "p95": 9.0, "p99": 12.5}
    side = {
        "latency_ms": lat,
        "server_cpu_ms_per_request": 0.2,
        "broker_db_cpu_ms_per_request": 0.1,
    }
    drain = {"queued": 200_000, "done": 200_000, "seconds": 10.0, "rate_per_s": 20_000.0}
    return {
        "machine": {"cpus": 2, "memory_gib": 23.5, "load_average_1m": 1.5},
        "receiver": {
            "setup": {"workers": 1, "users": 32},
            "receiver": side | {"accepted_per_s": 3000.0},
            "bare": side | {"accepted_per_s": 4000.0, "server_cpu_ms_per_request": 0.1},
            "ratio": 0.75,
        },
        "router": {
            "count": 200_000,
            "baseline": {"rate_per_s": 800.0, "done": 5000},
            "drains": [
                {"queued": 10_000, "done": 10_000, "seconds": 0.5, "rate_per_s": 20_000.0},
                drain | {"rss_mib": {"start": 120, "end": 126, "peak": 130, "relative": 0.05}},
            ],
        },
        "notificator": {
            "sink_delay_ms": 10.0,
            "main": {"concurrency": 64, "sends_per_s": 3000.0},
            "baseline": {"concurrency": 1, "sends_per_s": 100.0},
            "ratio": 30.0,
        },
    }


def test_bench_text_has_one_row_per_figure_and_the_growth_table() -> None:
    text = report.bench_text(_results())
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if "|" in line}
    assert "3,000" in rows["receiver accepted/s (1 worker(s), 32 users)"]
    assert "4,000 bare aiohttp" in rows["receiver accepted/s (1 worker(s), 32 users)"]
    assert "0.75x" in text and "25.0x (target >= 20)" in text and "30.0x" in text
    assert "12.5" in text and "2.00x" in text  # p99 and the CPU cost ratio
    assert "| 10,000  |" in text and "- (too short to sample)" in text
    assert "120 -> 126 (peak 130, +5%)" in text
    assert "load average 1.5 -> -" in text
