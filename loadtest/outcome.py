"""What a load test run achieved, from the requests made and the states stored (pure)."""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loadtest import stats

# One request made by Locust: (end unix time, latency ms, HTTP status (0: no answer), uuid,
# re-post 0/1).
Row = tuple[float, float, int, str, int]


@dataclass(frozen=True)
class Stored:
    """One notification's state, from the database or ``GET /notification/{uuid}``."""

    uuid: str
    state: str
    accepted_at: float | None  # unix seconds
    sent_at: float | None


def accepted(rows: Sequence[Row]) -> set[str]:
    """The UUIDs the receiver answered 202 for (at least once)."""
    return {r[3] for r in rows if r[2] == 202}


def summarize(
    rows: Sequence[Row],
    stored: dict[str, Stored],
    delivered: set[str],
    duplicates: int | None,
    checked: set[str] | None = None,
) -> dict[str, Any]:
    """The summary of a run: ``delivered`` holds the UUIDs seen delivered by any means.

    ``checked`` are the accepted UUIDs whose delivery was looked for (default: all of them).
    """
    ok = [r for r in rows if r[2] == 202]
    wanted = accepted(rows)
    sent = [s for u, s in stored.items() if u in wanted and s.state == "sent" and s.sent_at]
    e2e = [1000 * (s.sent_at - s.accepted_at) for s in sent if s.sent_at and s.accepted_at]
    sent_times = [s.sent_at for s in sent if s.sent_at]
    ends = [r[0] for r in rows]
    lost = sorted((wanted if checked is None else wanted & checked) - delivered)
    return {
        "requests": len(rows),
        "accepted": len(ok),
        "accepted_unique": len(wanted),
        "reposts": sum(r[4] for r in rows),
        "not_accepted": {
            str(k): v for k, v in sorted(Counter(r[2] for r in rows if r[2] != 202).items())
        },
        "accepted_per_s": stats.span_rate(len(ok), min(ends, default=0), max(ends, default=0)),
        "accept_latency_ms": stats.latency([r[1] for r in ok]).as_dict(),
        "delivered": len(wanted & delivered),
        "delivered_per_s": stats.span_rate(
            len(sent_times), min(sent_times, default=0), max(sent_times, default=0)
        ),
        "end_to_end_ms": stats.latency(e2e).as_dict(),
        "failed": sum(1 for u, s in stored.items() if u in wanted and s.state == "failed"),
        "checked": len(wanted) if checked is None else len(wanted & checked),
        "lost": len(lost),
        "lost_examples": lost[:10],
        "duplicates_delivered": duplicates,
    }


def series(
    rows: Sequence[Row],
    stored: dict[str, Stored],
    start: float,
    cpu: Sequence[tuple[float, float, float]] = (),
) -> dict[str, list[float]]:
    """Per-interval throughput, latency percentiles and CPU use (machine, own), for the chart."""
    ok = [(r[0], r[1]) for r in rows if r[2] == 202]
    sent = [
        (s.sent_at, 1000 * (s.sent_at - s.accepted_at))
        for s in stored.values()
        if s.sent_at and s.accepted_at
    ]
    end = max([t for t, _ in ok] + [t for t, _ in sent], default=start)
    span = max(1.0, end - start)
    width = 1.0 if span <= 300 else span / 300
    count = math.floor(span / width) + 1
    grid = stats.Grid(start, width, count)
    return {
        "t": [i * width for i in range(count)],
        "accepted_per_s": [n / width for n in stats.buckets((t for t, _ in ok), grid)],
        "delivered_per_s": [n / width for n in stats.buckets((t for t, _ in sent), grid)],
        "accept_p50_ms": stats.bucket_percentile(ok, grid, 50),
        "accept_p99_ms": stats.bucket_percentile(ok, grid, 99),
        "e2e_p50_ms": stats.bucket_percentile(sent, grid, 50),
        "e2e_p99_ms": stats.bucket_percentile(sent, grid, 99),
        "machine_cpu_pct": stats.bucket_percentile([(t, m) for t, m, _ in cpu], grid, 50),
        "others_cpu_pct": stats.bucket_percentile([(t, m - o) for t, m, o in cpu], grid, 50),
    }


def locust_totals(stats_csv: str) -> tuple[int, int]:
    """(requests, failures) so far from Locust's ``--csv`` ``*_stats.csv`` (0, 0 if not yet)."""
    for row in csv.DictReader(io.StringIO(stats_csv)):
        if row.get("Name") == "Aggregated":
            return int(row["Request Count"]), int(row["Failure Count"])
    return 0, 0


_DSN_LINE = re.compile(r"NOTIFSVC_DATABASE_URL=(\S+)|postgres ready at (postgresql://[^\s\"]+)")


def dev_dsn(output: str) -> str | None:
    """The database URL ``notifsvc dev`` printed (or logged) on start-up, if it did yet."""
    match = _DSN_LINE.search(output)
    return (match.group(1) or match.group(2)) if match else None
