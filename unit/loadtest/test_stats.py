"""The benchmark arithmetic: percentiles, rates, windows, buckets, trends, tables."""

from __future__ import annotations

import math
import random

import pytest

from loadtest import stats


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert stats.percentile(values, 0) == 10.0
    assert stats.percentile(values, 100) == 40.0
    assert stats.percentile(values, 50) == 25.0
    assert stats.percentile(values, 25) == pytest.approx(17.5)


def test_percentile_does_not_depend_on_input_order() -> None:
    values = [float(v) for v in range(1, 1001)]
    shuffled = values[:]
    random.Random(7).shuffle(shuffled)
    assert stats.percentile(shuffled, 99) == pytest.approx(990.01)
    assert stats.percentile(shuffled, 50) == stats.percentile(values, 50) == 500.5


def test_percentile_of_nothing_is_nan_and_out_of_range_is_refused() -> None:
    assert math.isnan(stats.percentile([], 50))
    with pytest.raises(ValueError, match=r"0\.\.100"):
        stats.percentile([1.0], 101)


def test_latency_summary() -> None:
    lat = stats.latency([1.0] * 98 + [50.0, 100.0])
    assert (lat.count, lat.p50, lat.max) == (100, 1.0, 100.0)
    assert lat.p99 == pytest.approx(50.5)
    assert lat.as_dict()["p95"] == 1.0


def test_rate_and_ratio_guard_empty_inputs() -> None:
    assert stats.rate(300, 2.0) == 150.0
    assert math.isnan(stats.rate(10, 0.0))
    assert stats.ratio(30.0, 10.0) == 3.0
    assert math.isnan(stats.ratio(1.0, 0.0))
    assert math.isnan(stats.ratio(math.nan, 2.0))
    assert stats.span_rate(11, 100.0, 102.0) == 5.5


def test_window_drops_warm_up_and_tail() -> None:
    records = [(100.0 + i / 10, float(i)) for i in range(101)]  # 100.0 .. 110.0
    kept, seconds = stats.window(records, skip_first=2.0, skip_last=1.0)
    assert seconds == pytest.approx(7.0)
    assert min(kept) == 20.0 and max(kept) == 90.0
    assert stats.window([], skip_first=1.0) == ([], 0.0)


def test_buckets_and_bucket_percentiles() -> None:
    grid = stats.Grid(start=10.0, width=2.0, count=3)
    assert stats.buckets([9.9, 10.0, 11.9, 12.0, 15.9, 16.0], grid) == [2, 1, 1]
    samples = [(10.5, 1.0), (11.0, 3.0), (14.0, 8.0)]
    p50 = stats.bucket_percentile(samples, grid, 50)
    assert p50[0] == 2.0 and math.isnan(p50[1]) and p50[2] == 8.0


def test_growth_tells_flat_from_growing() -> None:
    flat = stats.growth([100.0, 101.0, 99.0, 100.0, 102.0, 101.0, 100.0, 103.0, 101.0])
    assert flat.flat and flat.first == 100.0 and flat.last == 101.0 and flat.peak == 103.0
    leaking = stats.growth([100.0 + 10 * i for i in range(30)])
    assert not leaking.flat and leaking.relative > 1.0
    shrinking = stats.growth([130.0, 125.0, 120.0, 110.0, 105.0, 100.0])
    assert shrinking.flat and shrinking.relative < -0.15
    with pytest.raises(ValueError, match="3 samples"):
        stats.growth([1.0, 2.0])


def test_table_aligns_columns_and_fmt_marks_missing() -> None:
    text = stats.table(("figure", "value"), [("a", "1"), ("longer", "1,000")])
    lines = text.splitlines()
    assert lines == [
        "| figure | value |",
        "|--------|-------|",
        "| a      |     1 |",
        "| longer | 1,000 |",
    ]
    assert stats.fmt(1234.4) == "1,234"
    assert stats.fmt(math.nan) == "-"
    assert stats.fmt(2.345, 1) == "2.3"
