"""Pure arithmetic of the benchmarks and the load test: percentiles, rates, tables, trends."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between closest ranks."""
    if not values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Latency:
    """Latency percentiles in milliseconds."""

    count: int
    p50: float
    p95: float
    p99: float
    max: float

    def as_dict(self) -> dict[str, float]:
        return {"count": self.count, "p50": self.p50, "p95": self.p95, "p99": self.p99}


def latency(values_ms: Sequence[float]) -> Latency:
    return Latency(
        count=len(values_ms),
        p50=percentile(values_ms, 50),
        p95=percentile(values_ms, 95),
        p99=percentile(values_ms, 99),
        max=max(values_ms) if values_ms else math.nan,
    )


def rate(count: int, seconds: float) -> float:
    """Events per second; NaN when the interval is empty."""
    return count / seconds if seconds > 0 else math.nan


def ratio(value: float, baseline: float) -> float:
    """``value / baseline``; NaN when either is missing or the baseline is zero."""
    if baseline == 0 or math.isnan(baseline) or math.isnan(value):
        return math.nan
    return value / baseline


def span_rate(count: int, first: float, last: float) -> float:
    """Rate of ``count`` events spread from ``first`` to ``last`` (seconds)."""
    return rate(count, last - first)


def window(
    records: Iterable[tuple[float, float]], *, skip_first: float, skip_last: float = 0.0
) -> tuple[list[float], float]:
    """The latencies of ``(end_time, latency)`` records inside the steady window, and its length.

    The first ``skip_first`` seconds (connections opening, users spawning) and the last
    ``skip_last`` seconds (users stopping) are left out.
    """
    items = sorted(records)
    if not items:
        return [], 0.0
    start = items[0][0] + skip_first
    end = items[-1][0] - skip_last
    kept = [lat for t, lat in items if start <= t <= end]
    return kept, max(0.0, end - start)


@dataclass(frozen=True)
class Grid:
    """``count`` consecutive intervals of ``width`` seconds from ``start``."""

    start: float
    width: float
    count: int

    def index(self, t: float) -> int | None:
        i = math.floor((t - self.start) / self.width)
        return i if 0 <= i < self.count else None


def buckets(times: Iterable[float], grid: Grid) -> list[int]:
    """How many ``times`` fall in each interval of ``grid``."""
    out = [0] * grid.count
    for t in times:
        i = grid.index(t)
        if i is not None:
            out[i] += 1
    return out


def bucket_percentile(samples: Iterable[tuple[float, float]], grid: Grid, q: float) -> list[float]:
    """Per interval of ``grid``, the ``q``-th percentile of the ``(time, value)`` samples' values
    (NaN where there are none)."""
    grouped: list[list[float]] = [[] for _ in range(grid.count)]
    for t, value in samples:
        i = grid.index(t)
        if i is not None:
            grouped[i].append(value)
    return [percentile(g, q) for g in grouped]


@dataclass(frozen=True)
class Growth:
    """How a sampled quantity (RSS) moved during a run."""

    first: float  # median of the first third of the samples
    last: float  # median of the last third
    peak: float
    relative: float  # last / first - 1

    @property
    def flat(self) -> bool:
        """Not more than 15 % higher at the end of the run than at its start."""
        return self.relative <= 0.15


def growth(values: Sequence[float]) -> Growth:
    """Compare the start and the end of a series of samples (at least 3 needed)."""
    if len(values) < 3:
        raise ValueError("need at least 3 samples to tell a trend")
    third = len(values) // 3
    first = percentile(values[:third], 50)
    last = percentile(values[-third:], 50)
    return Growth(first=first, last=last, peak=max(values), relative=last / first - 1)


def fmt(value: float, digits: int = 0) -> str:
    """A number for a table: thousands separators, ``-`` when missing."""
    if math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table; the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(parts) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])
